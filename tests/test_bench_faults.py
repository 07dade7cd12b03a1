"""bench under faults, against the virtual device through the real adb server: interrupts that keep every
figure, resume, device states, runner failures, two runs on one phone (issue 17 items 1-5)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cli
from bench.adb_server import adb_binary
from bench.device_lock import LOCK
from bench.virtual_device import VirtualDevice
from bench_adb_fixtures import (FAST, REPO, PrivateAdbServer, adb_server, report, run_cli,  # noqa: F401
                                sandbox_run_dirs, tiny_models, vdev, vdev_module)

RUN_DIR = re.compile(r"coronetgan-bench-\d{8}-\d{6}-[0-9a-f]{6}")


def _script(adb_server, out: Path, models: list[str], *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "bench" / "run_adb.py"), "--device", "sm8450", "--adb-port",
            str(adb_server.port), "--models", *models, "--out", str(out), *FAST, *extra]


def _wait(cond, timeout: float = 60.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(what)
        time.sleep(0.05)


def _runner_running(vdev) -> bool:
    return any((vdev.sandbox / "data/local/tmp").glob("coronetgan-bench-*/out/runner.pid"))


def _rows_done(out: Path, n: int) -> bool:
    try:
        return sum(r["status"] == "ok" for r in report(out)["rows"]) >= n
    except (OSError, ValueError, KeyError):
        return False


def _runner_invocations(vdev) -> int:
    f = vdev.sandbox / ".vdev" / "runner_invocations"
    return int(f.read_text()) if f.exists() else 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_keeps_every_figure_then_resume_measures_the_rest(adb_server, vdev, tiny_models, tmp_path, sig,
                                                                    capsys):
    m = tiny_models["pruned"]
    models = [str(m["fp32"]), str(m["fp16"]), str(m["int8"])]
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    (out / "latency.png").write_bytes(b"stale chart of an earlier run")
    (out / "logs" / "m07_old_fp32.log").write_text("stale log")
    vdev.set_faults("slow=m01_:60")
    p = subprocess.Popen(_script(adb_server, out, models), cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _rows_done(out, 1) and _runner_running(vdev), what="the second model's runner")
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    name = "SIGINT (Ctrl-C)" if sig == signal.SIGINT else "SIGTERM"
    what = f"interrupted by {name} after 1 of 3 rows"
    assert p.returncode == 128 + sig
    assert err.splitlines()[-1] == f"{what}; the tables in {out} hold them; rerun the same command to measure the other 2"
    assert "Traceback" not in err
    rep = report(out)
    assert rep["aborted"] == what and rep["interrupted"] == name.split()[0] and not rep["complete"]
    assert [(r["dtype"], r["status"]) for r in rep["rows"]] == [("fp32", "ok"), ("fp16", "not-run"), ("int8", "not-run")]
    assert rep["rows"][1]["problem"] == f"not measured: {what}" and rep["rows"][1]["flags"] == ["virtual", "not-run"]
    md = (out / "latency.md").read_text()
    assert f"**Interrupted:** {what}. The rows below marked not-run were not measured" in md
    assert md.count("| pruned | fp16 | - |") == 1
    csv_lines = (out / "latency.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[2].endswith(f",virtual;not-run,not-run,not measured: {what},fp16")
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"  # this run's chart, not the stale one
    assert sorted(f.name for f in (out / "logs").iterdir()) == ["m00_pruned_fp32.log"]
    assert sandbox_run_dirs(vdev.sandbox) == [] and not (vdev.sandbox / LOCK.lstrip("/")).exists()
    # the same command again: only the two missing rows are measured, and it says which row it reused
    vdev.set_faults(None)
    capsys.readouterr()
    assert cli.main(_script(adb_server, out, models, "--macs", "pruned=12345")[2:]) == 0
    rep = report(out)
    assert rep["complete"] and rep["reused"] == ["pruned:fp32"] and _runner_invocations(vdev) == 2
    assert [r.get("reused", False) for r in rep["rows"]] == [True, False, False]
    # what a reused row says of the model is this run's input (--macs), and its runner time is the earlier run's:
    # this run's runner time and overhead count only the two rows it measured
    assert [r["macs"] for r in rep["rows"]] == [12345] * 3
    assert [r["model"]["macs"] for r in rep["results"]] == [12345] * 3
    t = rep["timings"]
    assert t["runner_wall_s"] == pytest.approx(sum(rep_["wall_s"] for r in rep["results"][1:]
                                                   for rep_ in r["repeats"]))
    assert t["overhead_s"] >= 0
    assert ("reusing 1 row(s) it measured (pruned:fp32); measuring 2 (pruned:fp16, pruned:int8)"
            in (out / "log.txt").read_text())
    assert "Resumed: 1 row(s) reused from the interrupted run of " in (out / "latency.md").read_text()
    # a complete run is not resumed: the same command measures everything again
    vdev.set_faults(None)
    assert cli.main(_script(adb_server, out, models)[2:]) == 0
    assert report(out)["reused"] == [] and _runner_invocations(vdev) == 3


def test_device_states_are_named_with_what_to_do(tiny_models, tmp_path, capsys):
    """unauthorized, offline, recovery and sideload phones: listed with their state and the one thing to do."""
    srv = PrivateAdbServer().start()
    devs, connects = [], []
    try:
        for state in ("unauthorized", "offline", "recovery", "sideload"):
            d = VirtualDevice("sm8450", faults=f"state={state}", adb_key=srv.key_path).start()
            devs.append(d)
            # `adb connect` blocks until its handshake gives up for some states: the state is there before
            connects.append(subprocess.Popen([adb_binary(), "-P", str(srv.port), "connect", d.serial], env=srv.env,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait(lambda: any(x.serial == d.serial and x.state == state for x in srv.client().list()),
                  what=f"state {state}")
        rc = cli.main(["--device", "sm8450", "--adb-port", str(srv.port), "--models", str(tiny_models["pruned"]["fp32"]),
                       "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
        s = {state: d.serial for state, d in zip(("unauthorized", "offline", "recovery", "sideload"), devs)}
        assert err.startswith("error: --device sm8450: no attached device is a usable SM8450 (Snapdragon 8 Gen 1); "
                              f"the adb server on 127.0.0.1:{srv.port} lists: ")
        for fragment in (
                f"{s['unauthorized']} unauthorized (unlock the phone and accept its 'Allow USB debugging?' prompt; no "
                "prompt: revoke USB debugging authorisations in Developer options and replug)",
                f"{s['offline']} offline (replug the cable or run `adb reconnect offline`; still offline: `adb "
                "kill-server`, then replug)",
                f"{s['recovery']} recovery (it is in recovery mode: reboot it into Android (`adb -s {s['recovery']} "
                "reboot`))",
                f"{s['sideload']} sideload (it is in sideload mode: finish or cancel the sideload, then reboot it into "
                "Android)"):
            assert fragment in err
        assert err.endswith("; or measure without a phone: --virtual (a simulated SM8450 on this machine's CPU) or "
                            "--device host\n")
        rc = cli.main(["--device", "sm8450", "--adb-port", str(srv.port), "--serial", s["unauthorized"], "--models",
                       str(tiny_models["pruned"]["fp32"]), "--out", str(tmp_path / "out")])
        assert rc == 2 and capsys.readouterr().err == (
            f"error: --serial {s['unauthorized']} is unauthorized: unlock the phone and accept its 'Allow USB "
            "debugging?' prompt; no prompt: revoke USB debugging authorisations in Developer options and replug\n")
        assert not (tmp_path / "out").exists()
    finally:
        for p in connects:
            p.kill()
            p.wait()
        for d in devs:
            d.stop()
        srv.stop()


def test_runner_failures_are_diagnosed_once_per_row(adb_server, vdev, tiny_models, tmp_path):
    m = tiny_models["pruned"]
    vdev.set_faults("delegate_fail=m00_,oom=m01_")
    out = tmp_path / "a"
    assert run_cli(adb_server, out, [str(m["fp32"]), str(m["fp16"]), str(m["int8"])], "--repeats", "2") == 1
    rows = report(out)["rows"]
    assert rows[0]["problem"] == "repeats 1-2: runner exited 1: ERROR: Failed to apply GPU delegate."
    assert rows[0]["flags"] == ["virtual", "runner-error", "delegate-failed"] and rows[0]["status"] == "failed"
    assert rows[1]["problem"] == ("repeats 1-2: runner killed by signal 6 (SIGABRT): libc++abi: terminating due to "
                                  "uncaught exception of type std::bad_alloc: std::bad_alloc")
    assert rows[1]["flags"] == ["virtual", "crashed", "out-of-memory"]
    assert rows[2]["status"] == "ok" and rows[2]["flags"] == ["virtual"]
    md = (out / "latency.md").read_text()
    assert md.count("Failed to apply GPU delegate") == 1 and md.count("std::bad\\_alloc: std::bad\\_alloc") == 1
    vdev.set_faults("missing_lib")
    out = tmp_path / "b"
    assert run_cli(adb_server, out, [str(m["fp32"])]) == 1
    problem = RUN_DIR.sub("RUN", report(out)["rows"][0]["problem"])
    assert problem == ('runner exited 1: CANNOT LINK EXECUTABLE "/data/local/tmp/RUN/benchmark_model": library '
                       '"libOpenCL.so" not found: needed by main executable')
    assert report(out)["rows"][0]["flags"] == ["virtual", "runner-error", "missing-library"]


def test_a_second_run_on_a_busy_phone_refuses_or_waits(adb_server, vdev, tiny_models, tmp_path, capsys):
    m = tiny_models["pruned"]
    vdev.set_faults("slow=m00_:4")
    first = subprocess.Popen(_script(adb_server, tmp_path / "first", [str(m["fp32"])]), cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _runner_running(vdev), what="the first run's runner")
        live = sandbox_run_dirs(vdev.sandbox)
        assert run_cli(adb_server, tmp_path / "second", [str(m["int8"])]) == 3
        err = RUN_DIR.sub("RUN", capsys.readouterr().err)
        assert re.fullmatch(
            rf"error: device {re.escape(vdev.serial)} is busy: bench run RUN \(host {re.escape(os.uname().nodename)}, "
            rf"pid {first.pid}\) holds /data/local/tmp/coronetgan-bench.lock, last active \d+ s ago; wait for it to "
            r"finish or pass --wait-busy SECONDS \(a lock without heartbeat for 600 s and no live runner is taken "
            r"over\)\n", err), err
        assert sandbox_run_dirs(vdev.sandbox) == live  # the live run's folder is untouched
        assert not (tmp_path / "second" / "latency.json").exists()
        # with --wait-busy the second run waits for the first and then runs
        assert run_cli(adb_server, tmp_path / "third", [str(m["int8"])], "--wait-busy", "60") == 0
        assert first.wait(timeout=60) == 0, first.stderr.read()
    finally:
        first.kill()
    assert report(tmp_path / "first")["complete"] and report(tmp_path / "third")["complete"]
    assert sandbox_run_dirs(vdev.sandbox) == []


def test_a_half_written_lock_is_taken_over_once_old(adb_server, vdev, tiny_models, tmp_path, caplog):
    """A lock folder without owner or heartbeat (a run cut off between mkdir and writing them) would refuse every
    run for ever; once older than HALF_WRITTEN_S with no runner alive it is stale."""
    lock = vdev.sandbox / LOCK.lstrip("/")
    lock.mkdir()
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    with caplog.at_level("WARNING"):
        assert run_cli(adb_server, tmp_path / "out", [str(tiny_models["pruned"]["fp32"])]) == 0
    assert re.search(r"half-written lock \(no owner or heartbeat\) 36\d\d s old and no runner alive", caplog.text)
    assert not lock.exists()


def test_a_stale_lock_is_taken_over_only_if_it_is_still_the_one_judged(tmp_path, monkeypatch):
    """Two runs judging the same stale lock: the one that moves second finds the first's fresh lock (another
    owner, another heartbeat) and leaves it alone."""
    import bench.device_lock as dl

    monkeypatch.setattr(dl, "LOCK", str(tmp_path / "coronetgan-bench.lock"))
    monkeypatch.setattr(dl, "REMOTE_ROOT", str(tmp_path))

    def sh(cmd: str) -> tuple[int, str]:
        r = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True)
        return r.returncode, r.stdout

    lock = tmp_path / "coronetgan-bench.lock"
    lock.mkdir()
    (lock / "owner").write_text("run=coronetgan-bench-old\nhost=other\npid=1\nstale_after=60\n")
    (lock / "heartbeat").write_text("100\n")
    a, b = (dl.DeviceLock(sh, f"{tmp_path}/coronetgan-bench-{x}", "S", 60) for x in "ab")
    seen_by_b = b._try()
    assert b._stale(seen_by_b) and a._stale(a._try())
    assert a._take_over(a._try()) and a._try() is None  # a took it over and holds a fresh lock
    assert not b._take_over(seen_by_b)  # b's judgement is about the old lock: a's live lock stays
    assert (lock / "owner").read_text().startswith("run=coronetgan-bench-a")


def test_a_stale_lock_and_folders_are_taken_over(adb_server, vdev, tiny_models, tmp_path, caplog):
    lock = vdev.sandbox / LOCK.lstrip("/")
    lock.mkdir()
    (lock / "owner").write_text("run=coronetgan-bench-20200101-000000-abcdef\nhost=another-host\npid=1\n"
                                "stale_after=600\n")
    (lock / "heartbeat").write_text(f"{int(time.time()) - 3600}\n")
    old = vdev.sandbox / "data/local/tmp/coronetgan-bench-20200101-000000-abcdef"
    (old / "out").mkdir(parents=True)
    with caplog.at_level("WARNING"):
        assert run_cli(adb_server, tmp_path / "out", [str(tiny_models["pruned"]["fp32"])]) == 0
    assert re.search(r"took over the lock of bench run coronetgan-bench-20200101-000000-abcdef \(host another-host, "
                     r"pid 1\): no heartbeat for 36\d\d s \(limit 600 s\) and no runner alive", caplog.text)
    assert not old.exists() and not lock.exists()
