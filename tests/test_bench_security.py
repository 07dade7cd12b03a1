"""Who may drive the virtual device, quoting on the device side and in the harness, and model files checked
before they are pushed or timed (issue 14 items 2 and 7)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.adb_server import adb_connect
from bench.virtual_device import VirtualDevice
from bench.virtual_device.adb_auth import PublicKey
from compress.errors import InputError
from compress.io import sha256_file
from bench_adb_fixtures import (FAST, REPO, PrivateAdbServer, RawHost, adb_server, private_key, report,  # noqa: F401
                                run_cli, sign_token, tiny_models, vdev, vdev_module)

HARNESS = REPO / "android_harness" / "run_models.sh"


def test_only_the_adb_server_it_was_started_for_gets_in(adb_server, vdev, tmp_path):
    assert vdev._listener.getsockname()[0] == "127.0.0.1"
    # a raw client that skips AUTH: its OPEN is refused and the connection dropped; nothing runs
    h = RawHost(vdev.port)
    try:
        h.hello()
        h.send(h.OPEN, 1, 0, f"shell:touch {tmp_path}/pwned\0".encode())
        with pytest.raises((EOFError, ConnectionError)):
            h.recv()
    finally:
        h.close()
    # a raw client signing with another key gets a new token, never the CNXN banner
    other = PrivateAdbServer().start()
    try:
        h = RawHost(vdev.port)
        try:
            token = h.hello()
            h.send(h.AUTH, 2, 0, sign_token(token, private_key(other.key_path[:-len(".pub")])))
            cmd, kind, _, new_token = h.recv()
            assert (cmd, kind, len(new_token)) == (h.AUTH, 1, 20) and new_token != token
        finally:
            h.close()
        # another adb server (its own key) sees the device as unauthorized and cannot run anything on it
        other.adb("connect", vdev.serial)
        end = time.monotonic() + 20
        while not any(d.serial == vdev.serial and d.state == "unauthorized" for d in other.client().list()):
            assert time.monotonic() < end
            time.sleep(0.05)
        r = other.adb("-s", vdev.serial, "shell", f"touch {tmp_path}/pwned")
        assert r.returncode != 0 and "unauthorized" in r.stderr
    finally:
        other.stop()
    assert not (tmp_path / "pwned").exists()
    # the server it was started for still works
    assert adb_server.client().device(vdev.serial).shell("echo ok") == "ok"


def test_adb_key_is_required_and_checked(tmp_path):
    with pytest.raises(InputError) as e:
        VirtualDevice("sm8450", adb_key=tmp_path / "none.pub")
    assert str(e.value) == (f"adb public key {tmp_path / 'none.pub'}: cannot read it (No such file or directory); "
                            "start the adb server once (adb start-server) so that it creates its key, or pass "
                            "--adb-key PATH")
    with pytest.raises(InputError, match=r"^adb key: not an adb RSA-2048 public key \(3 bytes decoded, expected 524\)$"):
        PublicKey.parse("QUJD user@host")


def test_sandbox_path_with_shell_metacharacters_changes_no_command(adb_server, tiny_models, tmp_path, monkeypatch):
    """A sandbox folder named with spaces, quotes, $( ), ; and backticks: commands keep their words."""
    monkeypatch.chdir(tmp_path)
    sandbox = tmp_path / "sb dir 'q' \"d\" $(touch PWNED1) ; `touch PWNED2` x"
    dev = VirtualDevice("sm8450", sandbox=sandbox, adb_key=adb_server.key_path).start()
    try:
        assert str(dev.root) != str(sandbox) and dev.root.resolve() == sandbox.resolve()
        adb_connect(dev.serial, adb_client=adb_server.client())
        d = adb_server.client().device(dev.serial)
        out = d.shell("echo hi > /data/local/tmp/a; cat '/data/local/tmp/a' \"/data/local/tmp/a\"; "
                      "echo /x/data/local/tmp /sdcard2 /data/local/tmpx")
        assert out.splitlines() == ["hi", "hi", "/x/data/local/tmp /sdcard2 /data/local/tmpx"]
        assert (sandbox / "data/local/tmp/a").read_text() == "hi\n"
        assert dev.rewrite("ls /data/local/tmp/x '/sdcard/y'") == f"ls {dev.root}/data/local/tmp/x '{dev.root}/sdcard/y'"
        out_dir = tmp_path / "out"
        assert run_cli(adb_server, out_dir, [str(tiny_models["pruned"]["fp32"])], "--serial", dev.serial) == 0
        assert report(out_dir)["complete"]
    finally:
        adb_server.client().disconnect(dev.serial)
        dev.stop()
    assert not list(tmp_path.rglob("PWNED*")) and not dev.root.parent.exists()


def test_harness_passes_each_runner_arg_as_one_word(tmp_path):
    """run_models.sh: --arg values reach the runner verbatim, no splitting, globbing or substitution."""
    runner = tmp_path / "runner"
    runner.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '<%s>\\n' \"$a\"; done\n")
    runner.chmod(0o755)
    (tmp_path / "a.txt").write_text("")
    model = tmp_path / "m x.tflite"
    model.write_bytes(b"")
    weird = ["--x=*.txt", "--y=it's $(touch PWNED) `touch PWNED2`; a b", '--z="q"\\']
    cmd = ["sh", str(HARNESS), "--runner", str(runner), "--outdir", str(tmp_path / "out"), "--repeats", "1",
           "--cooldown", "0", "--heartbeat", str(tmp_path / "hb")]
    for w in weird:
        cmd += ["--arg", w]
    r = subprocess.run(cmd + [str(model)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    args = [ln[1:-1] for ln in r.stdout.splitlines() if ln.startswith("<")]
    assert args[0] == f"--graph={model}" and args[-3:] == weird
    assert not list(tmp_path.glob("PWNED*")) and (tmp_path / "hb").read_text().strip().isdigit()


def test_runner_args_reach_the_device_runner_verbatim(adb_server, vdev, tiny_models, tmp_path):
    out = tmp_path / "out"
    assert run_cli(adb_server, out, [str(tiny_models["pruned"]["fp32"])],
                   "--runner-arg=--benchmark_name=$(touch${IFS}PWNED);`touch${IFS}PWNED2`*") == 0
    log = Path(report(out)["results"][0]["log_file"]).read_text()
    assert " --benchmark_name=$(touch${IFS}PWNED);`touch${IFS}PWNED2`*" in log
    assert not list(vdev.sandbox.rglob("PWNED*"))


def _manifest_copy(tiny_models, dest: Path) -> Path:
    shutil.copytree(tiny_models["pruned"]["fp32"].parent, dest)
    man = json.loads((dest / "manifest.json").read_text())
    for f in man["files"]:
        f["sha256"] = sha256_file(dest / f["path"])
    (dest / "manifest.json").write_text(json.dumps(man))
    return dest / "manifest.json"


def test_files_that_differ_from_their_manifest_are_refused(tiny_models, tmp_path, capsys):
    from bench import cli

    manifest = _manifest_copy(tiny_models, tmp_path / "export")
    a, b = tmp_path / "export" / "pruned_fp32.tflite", tmp_path / "export" / "pruned_int8.tflite"
    sha_fp32, sha_int8 = sha256_file(a), sha256_file(b)
    tmp = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(tmp)
    assert cli.main(["--device", "host", "--models", str(manifest), "--out", str(tmp_path / "out"), *FAST]) == 2
    assert capsys.readouterr().err == (
        f"error: manifest {manifest}: {a} has sha256 {sha_int8[:12]}… but the manifest records {sha_fp32[:12]}… for "
        "pruned fp32: the file changed after export; re-export the run (or fix the manifest)\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["host", "virtual"])
def test_a_truncated_model_is_a_flagged_row(adb_server, vdev, tiny_models, tmp_path, where):
    good = tiny_models["pruned"]["fp32"]
    cut = tmp_path / "cut_fp32.tflite"
    cut.write_bytes(good.read_bytes()[:1000])  # LiteRT segfaults while loading this
    out = tmp_path / "out"
    models = [f"cut:fp32={cut}", f"good:fp32={good}"]
    if where == "host":
        r = subprocess.run([sys.executable, str(REPO / "bench" / "run_adb.py"), "--device", "host", "--models",
                            *models, "--out", str(out), *FAST], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
        rc = r.returncode
        assert "Traceback" not in r.stderr
    else:
        rc = run_cli(adb_server, out, models)
    assert rc == 1
    rows = report(out)["rows"]
    assert rows[0]["status"] == "failed" and rows[0]["flags"] == [where, "load-failed"]
    assert rows[0]["problem"] == ("cut_fp32.tflite does not load on the host (LiteRT): LiteRT was killed by signal 11 "
                                  "(SIGSEGV) while loading it (a truncated or corrupt file); not timed")
    assert rows[1]["status"] == "ok"
    assert "cut fp32 flagged: " in (out / "log.txt").read_text()


def test_a_file_that_changes_during_the_run_is_not_pushed(adb_server, vdev, tiny_models, tmp_path, monkeypatch):
    """The sha256 is checked again right before each push: a file changed since bench read it is a failed row."""
    import bench.measure
    from bench.models import parse_model_args

    def read_then_change(args, macs=None):
        specs = parse_model_args(args, macs)
        specs[0].sha256 = "0" * 64  # as if the file had been rewritten after bench read it
        return specs

    monkeypatch.setattr(bench.measure, "parse_model_args", read_then_change)
    out = tmp_path / "out"
    m = tiny_models["pruned"]
    assert run_cli(adb_server, out, [str(m["fp32"]), str(m["int8"])]) == 1
    rows = report(out)["rows"]
    assert rows[0]["problem"] == (f"{m['fp32']} changed during the run (sha256 {sha256_file(m['fp32'])[:12]}…, read "
                                  "as 000000000000…); not timed")
    assert rows[0]["flags"] == ["virtual", "file-changed"] and rows[1]["status"] == "ok"
    assert _runner_count(vdev) == 1


def _runner_count(vdev) -> int:
    f = vdev.sandbox / ".vdev" / "runner_invocations"
    return int(f.read_text()) if f.exists() else 0
