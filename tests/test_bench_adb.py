"""bench against the virtual Android device through the real adb server (127.0.0.1 only).

The adb server is the one bundled with adbutils, started on a private port with a private HOME; the
virtual device (bench/virtual_device) speaks adb's device-side wire protocol and runs commands in a
sandbox folder. The .tflite files are tiny conv models made with TensorFlow (tests/bench_models.py).
"""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bench.adb_server import adb_connect
from bench.virtual_device import VirtualDevice
from compress.io import sha256_file

import bench_models
from bench_adb_fixtures import (FAST, REPO, RawHost, adb_server, report, run_cli, sandbox_run_dirs,  # noqa: F401
                                tiny_models, vdev, vdev_module)


# ---------------------------------------------------------------------------------------------------------
def test_wire_protocol_through_real_adb(adb_server, vdev, tmp_path):
    d = adb_server.client().device(vdev.serial)
    r = d.shell2("echo out; echo err >&2; exit 7", v2=True)
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    assert d.shell("getprop ro.soc.model") == "SM8450"
    assert "[ro.board.platform]: [taro]" in d.shell("getprop")
    assert "Thermal Status: 0" in d.shell("dumpsys thermalservice")
    payload = bytes(range(256)) * 2000  # 512 kB: several WRTE packets each way
    d.sync.push(payload, "/data/local/tmp/t/blob.bin")
    assert d.sync.read_bytes("/data/local/tmp/t/blob.bin") == payload
    assert (vdev.sandbox / "data/local/tmp/t/blob.bin").read_bytes() == payload  # inside the sandbox
    # the adb command-line client: push/pull (STA2/SEND/RECV), shell_v2 exit codes
    src = tmp_path / "f.txt"
    src.write_text("hello")
    assert adb_server.adb("-s", vdev.serial, "push", str(src), "/data/local/tmp/t/sub/f.txt").returncode == 0
    r = adb_server.adb("-s", vdev.serial, "shell", "cat /data/local/tmp/t/sub/f.txt; exit 5")
    assert (r.returncode, r.stdout) == (5, "hello")
    assert adb_server.adb("-s", vdev.serial, "pull", "/data/local/tmp/t/sub/f.txt", str(tmp_path / "g")).returncode == 0
    assert (tmp_path / "g").read_text() == "hello"
    # paths outside the sandbox's mapped folders are refused
    r = adb_server.adb("-s", vdev.serial, "push", str(src), "/system/f.txt")
    assert r.returncode != 0
    d.shell("rm -rf /data/local/tmp/t")


def test_sync_requests_split_across_packets(vdev, adb_server):
    """SEND/DATA/DONE and STAT/RECV requests cut into 1..5-byte WRTE packets still work."""
    h = RawHost(vdev.port)
    try:
        assert h.connect(adb_server.key_path[:-len(".pub")]).startswith("device::ro.product.name=coronetgan_vsm8450;")
        remote = h.open("sync:")
        body = b"split payload " * 10
        path = b"/data/local/tmp/split/x.bin,33188"
        msg = (b"SEND" + struct.pack("<I", len(path)) + path + b"DATA" + struct.pack("<I", len(body)) + body
               + b"DONE" + struct.pack("<I", 1700000000))
        i, step = 0, 1
        while i < len(msg):
            h.send(h.WRTE, h.local, remote, msg[i:i + step])
            assert h.recv()[0] == h.OKAY
            i, step = i + step, step % 5 + 1
        cmd, _, _, data = h.recv()
        assert cmd == h.WRTE and data == b"OKAY\0\0\0\0"
        h.send(h.OKAY, h.local, remote)
        rpath = b"/data/local/tmp/split/x.bin"
        req = b"RECV" + struct.pack("<I", len(rpath)) + rpath
        for j in range(len(req)):
            h.send(h.WRTE, h.local, remote, req[j:j + 1])
            assert h.recv()[0] == h.OKAY
        reply = b""  # the file read back: its bytes may come in several WRTE packets, each acknowledged
        while not reply.endswith(b"DONE\0\0\0\0"):
            cmd, _, _, data = h.recv()
            assert cmd == h.WRTE
            reply += data
            h.send(h.OKAY, h.local, remote)
        assert reply == b"DATA" + struct.pack("<I", len(body)) + body + b"DONE\0\0\0\0"
        h.send(h.CLSE, h.local, remote)  # host closes: the device must answer CLSE
        while True:
            cmd, a0, a1, _ = h.recv()
            if cmd == h.CLSE:
                assert a1 == h.local
                break
            h.send(h.OKAY, h.local, a0)
        # shell v2 exit code over the raw protocol
        remote = h.open("shell,v2,raw:exit 42")
        raw = h.read_until_close(remote)
        assert raw.endswith(bytes([3]) + struct.pack("<I", 1) + bytes([42]))
    finally:
        h.close()
    assert (vdev.sandbox / "data/local/tmp/split/x.bin").read_bytes() == body


def test_three_dtypes_with_comparison_rows(adb_server, vdev, tiny_models, tmp_path):
    out = tmp_path / "out"
    m = tiny_models
    rc = run_cli(adb_server, out, [str(m["unpruned"]["fp32"].parent / "manifest.json"),
                                   f"pruned:fp32={m['pruned']['fp32']}", f"baseline:fp32={m['unpruned']['fp32']}"],
                 "--macs", "baseline=1000")
    assert rc == 0
    rep = report(out)
    rows = {(r["model"], r["dtype"]): r for r in rep["rows"]}
    assert set(rows) == {("unpruned", "fp32"), ("unpruned", "fp16"), ("unpruned", "int8"), ("pruned", "fp32"),
                         ("baseline", "fp32")}
    for r in rows.values():
        assert r["status"] == "ok" and r["flags"] == ["virtual"]
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["p95_ms"] and r["mean_ms"] > 0 and r["init_ms"] > 0
        assert r["delegate"].startswith("full ") and r["thermal"].startswith("0→0")
    assert rows[("unpruned", "fp32")]["macs"] == bench_models.macs_of(16)
    assert rows[("baseline", "fp32")]["macs"] == 1000
    assert rows[("pruned", "fp32")]["speedup"] > 0 and rep["reference"] == "unpruned"
    f = rep["device"]
    assert f["kind"] == "virtual" and f["soc"] == "QTI SM8450" and f["android"] == "13"
    assert f["gpu_renderer"] == "Adreno (TM) 730" and f["gpu_driver"].startswith("OpenGL ES 3.2 V@0615")
    assert rep["runner"]["sha256"] == sha256_file(rep["runner"]["path"]) and rep["runner"]["virtual"]
    assert rep["results"][0]["runner_sha256_device"] == rep["runner"]["sha256"]
    assert rep["complete"] and rep["device_cleaned"] and sandbox_run_dirs(vdev.sandbox) == []
    # fp32 runs disallow precision loss; fp16 allows it; OpenCL backend
    log32 = Path(rep["results"][0]["log_file"]).read_text()
    assert "--gpu_precision_loss_allowed=false" in log32 and "--gpu_backend=cl" in log32
    assert "--gpu_precision_loss_allowed=true" in Path(rep["results"][1]["log_file"]).read_text()
    md = (out / "latency.md").read_text()
    assert "VIRTUAL DEVICE" in md and "| pruned | fp32 |" in md and "×" in md
    assert (out / "latency.csv").read_text().splitlines()[0].startswith("model,dtype,device,figures,median_ms,p95_ms")
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
    assert rep["timings"]["runner_wall_s"] > 0 and rep["timings"]["overhead_s"] > 0


def test_device_selection(adb_server, vdev, tiny_models, tmp_path, capsys):
    model = [f"p:fp32={tiny_models['pruned']['fp32']}"]
    assert run_cli(adb_server, tmp_path / "a", model, device="dimensity1200") == 2
    assert (f"--device dimensity1200: no attached device is a usable MT6893 (Dimensity 1200-Max); the adb server on "
            f"127.0.0.1:{adb_server.port} lists: {vdev.serial} device, a SM8450 (not a MT6893); or measure without a "
            "phone: --virtual (a simulated MT6893 on this machine's CPU) or --device host\n") in capsys.readouterr().err
    assert run_cli(adb_server, tmp_path / "b", model, "--serial", "127.0.0.1:1") == 2
    assert "--serial 127.0.0.1:1: no such device" in capsys.readouterr().err
    other = VirtualDevice("sm8450", adb_key=adb_server.key_path).start()
    try:
        adb_connect(other.serial, adb_client=adb_server.client())
        assert run_cli(adb_server, tmp_path / "c", model) == 2
        assert "2 attached devices match" in capsys.readouterr().err
        assert run_cli(adb_server, tmp_path / "d", model, "--serial", other.serial) == 0
        assert report(tmp_path / "d")["device"]["serial"] == other.serial
    finally:
        adb_server.client().disconnect(other.serial)
        other.stop()
    mt = VirtualDevice("dimensity1200", adb_key=adb_server.key_path).start()
    try:
        adb_connect(mt.serial, adb_client=adb_server.client())
        assert run_cli(adb_server, tmp_path / "e", model, "--serial", vdev.serial, device="dimensity1200") == 2
        assert "not --device dimensity1200" in capsys.readouterr().err
        assert run_cli(adb_server, tmp_path / "f", model, device="dimensity1200") == 0
        f = report(tmp_path / "f")["device"]
        assert f["soc"] == "Mediatek MT6893" and f["gpu_renderer"] == "Mali-G77 MC9"
    finally:
        adb_server.client().disconnect(mt.serial)
        mt.stop()


def test_faulty_rows_are_flagged_and_kept(adb_server, vdev, tiny_models, tmp_path):
    broken = tmp_path / "broken_fp32.tflite"
    broken.write_bytes(b"this is not a flatbuffer" * 10)
    m = tiny_models
    vdev.set_faults("gpu_unsupported=TRANSPOSE_CONV,crash=m01_,throttle_after=2")
    out = tmp_path / "out"
    rc = run_cli(adb_server, out, [f"unpruned:fp32={m['unpruned']['fp32']}", f"unpruned:fp16={m['unpruned']['fp16']}",
                                   f"broken:fp32={broken}", f"pruned:fp32={m['pruned']['fp32']}"])
    assert rc == 1  # some rows failed
    rows = {(r["model"], r["dtype"]): r for r in report(out)["rows"]}
    r = rows[("unpruned", "fp32")]
    assert r["status"] == "ok" and "partial-delegate" in r["flags"] and r["delegate"] == "PARTIAL 5/6 (2 partitions)"
    assert r["cpu_ops"] == "TRANSPOSE_CONV×1 (1 of 6 nodes)"
    r = rows[("unpruned", "fp16")]
    assert r["status"] == "failed" and "crashed" in r["flags"] and "signal 11" in r["problem"]
    r = rows[("broken", "fp32")]
    assert r["status"] == "failed" and "load-failed" in r["flags"]
    assert r["problem"] == ("broken_fp32.tflite does not load on the host (LiteRT): ValueError: Model provided has "
                            "model identifier ' is ', should be 'TFL3'; not timed")
    r = rows[("pruned", "fp32")]
    assert r["status"] == "ok" and "throttled" in r["flags"] and "THROTTLED (severe)" in r["thermal"]
    md = (out / "latency.md").read_text()
    for word in ("**crashed**", "**load-failed**", "**throttled**", "**partial-delegate**", "PARTIAL 5/6"):
        assert word in md
    assert sandbox_run_dirs(vdev.sandbox) == []


def test_garbage_output_and_older_form(adb_server, vdev, tiny_models, tmp_path):
    vdev.set_faults("garbage=m00_,older_output")
    out = tmp_path / "out"
    m = tiny_models
    assert run_cli(adb_server, out, [str(m["pruned"]["fp32"]), str(m["pruned"]["int8"])]) == 1
    rep = report(out)
    assert rep["rows"][0]["status"] == "failed" and "unparseable" in rep["rows"][0]["flags"]
    assert rep["rows"][1]["status"] == "ok" and rep["results"][1]["repeats"][0]["output"]["form"] == "older"


@pytest.mark.parametrize("fault,message", [
    ("noexec", "the runner cannot be executed on the device: {remote} has no exec permission after chmod 755 (is "
               "/data/local/tmp mounted noexec?); pushed from {local} (after 0 of 1 rows)"),
    ("drop_push=benchmark_model", "the runner is missing on the device: {remote} is not there after the push of "
                                  "{local} (after 0 of 1 rows)")])
def test_unusable_runner_is_a_clear_error(adb_server, vdev, tiny_models, tmp_path, capsys, fault, message):
    vdev.set_faults(fault)
    out = tmp_path / "out"
    assert run_cli(adb_server, out, [str(tiny_models["pruned"]["fp32"])]) == 3
    rep = report(out)
    aborted = re.sub(r"coronetgan-bench-\d{8}-\d{6}-[0-9a-f]{6}", "RUN", rep["aborted"])
    assert aborted == message.format(remote="/data/local/tmp/RUN/benchmark_model", local=rep["runner"]["path"])
    assert "@@" not in rep["aborted"] and "@@" not in capsys.readouterr().err
    assert [r["status"] for r in rep["rows"]] == ["not-run"]
    assert sandbox_run_dirs(vdev.sandbox) == []  # cleaned


def test_bad_runner_inputs(adb_server, vdev, tiny_models, tmp_path, capsys):
    model = [str(tiny_models["pruned"]["fp32"])]
    assert run_cli(adb_server, tmp_path / "a", model, "--runner", str(tmp_path / "nope")) == 2
    assert "not found" in capsys.readouterr().err
    # an x86-64 ELF (this Python) is refused for an arm64 phone
    assert run_cli(adb_server, tmp_path / "b", model, "--runner", str(Path(sys.executable).resolve())) == 2
    assert "not aarch64" in capsys.readouterr().err


def test_device_vanishes_mid_run(adb_server, vdev, tiny_models, tmp_path, capsys):
    m = tiny_models
    vdev.set_faults("vanish_on=m01_")
    out = tmp_path / "out"
    rc = run_cli(adb_server, out, [str(m["pruned"]["fp32"]), str(m["pruned"]["fp16"]), str(m["pruned"]["int8"])])
    assert rc == 3
    rep = report(out)
    assert "disconnected" in rep["aborted"] and rep["aborted"].endswith(" (after 1 of 3 rows)")
    assert [(r["dtype"], r["status"]) for r in rep["rows"]] == [("fp32", "ok"), ("fp16", "not-run"), ("int8", "not-run")]
    assert rep["rows"][1]["problem"] == f"not measured: {rep['aborted']}" and not rep["complete"]
    assert "Run aborted" in (out / "latency.md").read_text()
    stale = sandbox_run_dirs(vdev.sandbox)
    assert len(stale) == 1  # could not be removed while the phone was gone...
    vdev.revive()
    adb_connect(vdev.serial, adb_client=adb_server.client())
    # the same command again: the measured row is kept, the two others are measured
    assert run_cli(adb_server, out, [str(m["pruned"]["fp32"]), str(m["pruned"]["fp16"]), str(m["pruned"]["int8"])]) == 0
    rep = report(out)
    assert rep["complete"] and rep["reused"] == ["pruned:fp32"] and [r["status"] for r in rep["rows"]] == ["ok"] * 3
    assert sandbox_run_dirs(vdev.sandbox) == []  # ...and the next run removed it


def test_script_form_and_host_backend(tiny_models, tmp_path):
    """`python bench/run_adb.py --device host` from another folder (repo root not on sys.path)."""
    m = tiny_models
    out = tmp_path / "host"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "run_adb.py"), "--device", "host", "--models",
                        f"unpruned:fp32={m['unpruned']['fp32']}", f"unpruned:int8={m['unpruned']['int8']}",
                        f"pruned:fp32={m['pruned']['fp32']}", "--out", str(out), *FAST],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = report(out)
    assert rep["device"]["kind"] == "host" and rep["device_label"].startswith("host")
    assert all(row["flags"] == ["host"] and row["delegate"] == "none (CPU)" for row in rep["rows"])
    assert rep["rows"][2]["speedup"] > 0
    assert "HOST CPU" in (out / "latency.md").read_text()
    r = subprocess.run([sys.executable, str(REPO / "bench" / "run_adb.py"), "--device", "nokia3310", "--models",
                        str(m["pruned"]["fp32"]), "--out", str(tmp_path / "x")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "unknown device profile" in r.stderr and "Traceback" not in r.stderr


def test_bench_models_api_on_the_host(tiny_models, tmp_path):
    """`from bench import bench_models`: the CLI's run as a function; settings are BenchSettings' fields."""
    from bench import bench_models

    out = tmp_path / "api"
    rep = bench_models(tiny_models["unpruned"]["fp32"].parent, out=out, warmup=1, runs=5, repeats=1, cooldown_s=0,
                       threads=1, runner_args=["--warmup_min_secs=0"])
    assert rep == report(out) and rep["complete"] and rep["argv"] is None
    assert {r["dtype"] for r in rep["rows"]} == {"fp32", "fp16", "int8"}
    assert all(r["status"] == "ok" and r["flags"] == ["host"] and r["median_ms"] > 0 for r in rep["rows"])
    assert rep["config"]["runs"] == 5 and rep["device"]["kind"] == "host"


def test_script_virtual_flag_uses_a_private_adb_server(tiny_models, tmp_path):
    """`--virtual` starts its own adb server on a free port and a virtual device; rows are marked virtual."""
    out = tmp_path / "virtual"
    env = {**os.environ, "HOME": str(tmp_path), "ANDROID_ADB_SERVER_PORT": "1"}  # 5037 is never touched
    r = subprocess.run([sys.executable, str(REPO / "bench" / "run_adb.py"), "--device", "sm8450", "--virtual",
                        "--models", f"pruned:fp32={tiny_models['pruned']['fp32']}", "--out", str(out), *FAST],
                       cwd=tmp_path, capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = report(out)
    assert "VIRTUAL" in rep["device_label"] and all("virtual" in row["flags"] for row in rep["rows"])
    assert "private adb server" in (out / "log.txt").read_text()
