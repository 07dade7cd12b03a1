"""Statistics that mean their names, the columns phone teams read, more phones, escaping, and runners that are
not Android binaries (issue 17 items 6-9), against the virtual device through the real adb server."""
from __future__ import annotations

import csv
import io
import json
import re
import struct

import pytest

from bench import measure, profiles, tables
from bench.adb_server import adb_connect
from bench.virtual_device import VirtualDevice
from bench.virtual_device.benchmark_model import write_runner
from bench_adb_fixtures import (adb_key, adb_server, report, run_cli, tiny_models, vdev, vdev_module)  # noqa: F401


def _md_row(md: str, model: str, dtype: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {model} | {dtype} |"))
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_rows_carry_the_fields_phone_teams_read(adb_server, vdev, tiny_models, tmp_path):
    m = tiny_models
    vdev.set_faults("gpu_unsupported=TRANSPOSE_CONV")
    out = tmp_path / "out"
    assert run_cli(adb_server, out, [str(m["unpruned"]["fp32"].parent), f"pruned:fp16={m['pruned']['fp16']}"],
                   "--repeats", "2") == 0
    rep = report(out)
    rows = {(r["model"], r["dtype"]): r for r in rep["rows"]}
    r32, r16 = rows[("unpruned", "fp32")], rows[("unpruned", "fp16")]
    for r in rows.values():
        assert set(tables.COLUMNS) <= set(r)
        assert r["inferences"] == 10 and r["stats_form"] == "newer" and r["repeats_ok"] == "2/2"
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["p95_ms"] and r["repeat_spread_ms"] >= 0
        assert r["init_ms"] > 0 and r["first_ms"] > 0 and r["warmup_ms"] > 0 and r["peak_mem_mb"] > 0
        assert re.fullmatch(r"\d+\.\d+\.\d+\S*", r["runner_version"]), r["runner_version"]
        assert r["cpu_ops"] == "TRANSPOSE_CONV×1 (1 of 6 nodes)" or r["dtype"] != "fp32"
    assert r32["gpu_precision"] == "fp32" and r16["gpu_precision"] == "fp16"
    assert rows[("unpruned", "int8")]["cpu_ops"] == "TRANSPOSE_CONV×1 (1 of 8 nodes)"
    assert rows[("pruned", "fp16")]["speedup"] > 0 and rows[("pruned", "fp16")]["speedup_basis"] == "median"
    # CSV: exactly the COLUMNS; Markdown: the same per-row values, per-run ones in the header
    lines = list(csv.DictReader(io.StringIO((out / "latency.csv").read_text())))
    assert list(lines[0]) == tables.COLUMNS and len(lines) == 4
    md = (out / "latency.md").read_text()
    cells = _md_row(md, "unpruned", "fp32")
    assert cells[tables.MD_HEADER.index("inferences")] == "10"
    assert cells[tables.MD_HEADER.index("CPU ops")] == "TRANSPOSE\\_CONV×1 (1 of 6 nodes)"
    assert cells[tables.MD_HEADER.index("GPU precision")] == "fp32"
    assert cells[tables.MD_HEADER.index("peak MB")] == f"{r32['peak_mem_mb']:.1f}"
    assert cells[tables.MD_HEADER.index("first ms")] == f"{r32['first_ms']:.2f}"
    assert f"- runner version: {r32['runner_version']}" in md and "VIRTUAL DEVICE" in md


def test_the_older_output_form_has_no_median(adb_server, vdev, tiny_models, tmp_path):
    """The older form prints no percentiles: no median/p95, the mean and the spread of repeat means instead."""
    m = tiny_models
    vdev.set_faults("older_output")
    out = tmp_path / "out"
    assert run_cli(adb_server, out, [f"unpruned:fp32={m['unpruned']['fp32']}", f"pruned:fp32={m['pruned']['fp32']}"],
                   "--repeats", "2") == 0
    rows = report(out)["rows"]
    for r in rows:
        assert r["stats_form"] == "older" and r["median_ms"] is None and r["p95_ms"] is None
        assert r["mean_ms"] > 0 and r["repeat_spread_ms"] >= 0 and r["gpu_precision"] == "fp32"
    assert rows[1]["speedup_basis"] == "mean" and rows[1]["speedup"] > 0
    md = (out / "latency.md").read_text()
    assert _md_row(md, "pruned", "fp32")[2:4] == ["-", "-"]
    assert ("Older benchmark_model output form (no per-inference percentiles, so no median/p95; spread over repeat "
            "means): unpruned fp32, pruned fp32.") in md
    assert "× (mean)" in md and (out / "latency.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("spelling", ["SM8450", "Snapdragon 8 Gen 1", "taro-file"])
def test_device_accepts_any_case_an_soc_name_or_a_profile_file(adb_server, vdev, tiny_models, tmp_path, spelling):
    if spelling == "taro-file":
        spelling = str(tmp_path / "my phone.json")
        (tmp_path / "my phone.json").write_text(json.dumps({"name": "My phone", "soc": "SM8450",
                                                            "match": {"ro.board.platform": ["TARO"]}}))
    out = tmp_path / "out"
    assert run_cli(adb_server, out, [str(tiny_models["pruned"]["fp32"])], device=spelling) == 0
    assert report(out)["device"]["profile"] == ("my phone" if spelling.endswith(".json") else "sm8450")


@pytest.mark.parametrize("name,spellings", [
    ("sm8550", ["SM8550", "snapdragon 8 gen 2"]), ("sm8650", ["Snapdragon-8-Gen-3", "sm8650"]),
    ("dimensity9200", ["MT6985", "Dimensity 9200"]), ("dimensity9300", ["mt6989", "DIMENSITY9300"]),
    ("tensor_g3", ["Tensor G3", "zuma", "tensor-g3"])])
def test_new_phone_profiles(adb_server, tiny_models, tmp_path, name, spellings):
    assert {profiles.check_device(s) for s in spellings} == {name}
    dev = VirtualDevice(name, adb_key=adb_server.key_path).start()
    try:
        assert profiles.identify(dev.props()) == name
        if name == "sm8550":  # one end-to-end run on a new profile (the others share the code path)
            adb_connect(dev.serial, adb_client=adb_server.client())
            out = tmp_path / "out"
            assert run_cli(adb_server, out, [str(tiny_models["pruned"]["fp32"])], "--serial", dev.serial,
                           device="SM8550") == 0
            f = report(out)["device"]
            assert f["soc"] == "QTI SM8550" and f["gpu_renderer"] == "Adreno (TM) 740"
            adb_server.client().disconnect(dev.serial)
    finally:
        dev.stop()


def test_profile_file_errors(tmp_path):
    (tmp_path / "two.json").write_text(json.dumps({"profiles": {"a": {"match": {"x": ["y"]}},
                                                                "b": {"match": {"x": ["y"]}}}}))
    (tmp_path / "bad.json").write_text(json.dumps({"soc": "X"}))
    from compress.errors import InputError

    with pytest.raises(InputError) as e:
        profiles.check_device(str(tmp_path / "two.json"))
    assert str(e.value) == (f"--device {tmp_path / 'two.json'}: the file holds 2 profiles; expected one (add phones "
                            "to bench/profiles.json instead)")
    with pytest.raises(InputError) as e:
        profiles.check_device(str(tmp_path / "bad.json"))
    assert str(e.value).startswith(f"--device {tmp_path / 'bad.json'}: expected a profile object with a 'match' object")
    with pytest.raises(InputError, match=r"^--device profile file .*none\.json not found$"):
        profiles.check_device(str(tmp_path / "none.json"))


def test_labels_are_escaped_in_markdown(adb_server, vdev, tiny_models, tmp_path):
    odd = tmp_path / "p|q*r_[s]`t`_fp32.tflite"
    odd.write_bytes(tiny_models["pruned"]["fp32"].read_bytes())
    out = tmp_path / "out"
    assert run_cli(adb_server, out, [str(odd), str(tiny_models["unpruned"]["fp32"])]) == 0
    md = (out / "latency.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len({len(re.findall(r"(?<!\\)\|", ln)) for ln in table}) == 1  # every row has the header's cells
    assert "| p\\|q\\*r\\_\\[s\\]\\`t\\` | fp32 |" in md
    assert report(out)["rows"][0]["model"] == "p|q*r_[s]`t`"


def _fake_elf(machine: int, interp: bytes | None) -> bytes:
    """A 64-bit little-endian ELF header for ``machine``, with a PT_INTERP of ``interp`` if given."""
    e = bytearray(64)
    e[0:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<HHI", e, 16, 3, machine, 1)
    if interp is None:
        return bytes(e)
    struct.pack_into("<Q", e, 32, 64)
    struct.pack_into("<HHH", e, 52, 64, 56, 1)
    ph = bytearray(56)
    struct.pack_into("<I", ph, 0, 3)
    struct.pack_into("<Q", ph, 8, 120)
    struct.pack_into("<Q", ph, 32, len(interp) + 1)
    return bytes(e) + bytes(ph) + interp + b"\0"


def test_a_runner_that_is_not_an_android_binary(adb_server, vdev, tiny_models, tmp_path, capsys):
    model = [str(tiny_models["pruned"]["fp32"])]
    script = write_runner(tmp_path / "runner.py")
    assert run_cli(adb_server, tmp_path / "a", model, "--runner", str(script)) == 2
    assert capsys.readouterr().err == (
        f"error: runner {script} (from --runner) is not an Android arm64-v8a executable: it is a script "
        f"(#!{__import__('sys').executable}). Its figures would pass for phone figures; use TFLite's benchmark_model "
        "for Android (android_harness/README.md), or pass --runner-kind host to mark every figure as a host figure\n")
    linux = tmp_path / "linux_benchmark_model"
    linux.write_bytes(_fake_elf(183, b"/lib/ld-linux-aarch64.so.1"))
    assert run_cli(adb_server, tmp_path / "b", model, "--runner", str(linux)) == 2
    assert ("is not an Android arm64-v8a executable: it is a Linux build: its interpreter is "
            "/lib/ld-linux-aarch64.so.1, Android's is /system/bin/linker64.") in capsys.readouterr().err
    android = tmp_path / "android_benchmark_model"
    android.write_bytes(_fake_elf(183, b"/system/bin/linker64"))
    assert run_cli(adb_server, tmp_path / "c", model, "--runner", str(android)) == 1  # accepted; cannot run here
    row = report(tmp_path / "c")["rows"][0]
    assert row["status"] == "failed" and row["problem"].startswith("runner exited 126")
    # --runner-kind host: the script runs and every figure says it is a host figure
    out = tmp_path / "d"
    assert run_cli(adb_server, out, model, "--runner", str(script), "--runner-kind", "host") == 0
    rep = report(out)
    assert rep["figures"] == "host" and rep["runner"]["kind"] == "host" and rep["device_label"].endswith(" HOST RUNNER")
    assert rep["rows"][0]["flags"] == ["host"] and rep["rows"][0]["figures"] == "host"
    assert "**HOST FIGURES**" in (out / "latency.md").read_text()
    assert ",host," in (out / "latency.csv").read_text().splitlines()[1]


def test_host_peak_memory_is_the_runs_own(tiny_models):
    """``--device host`` runs each repeat in a process of its own, as benchmark_model runs on a phone: the peak
    memory it reports is that run's, whatever bench itself holds, and the "delta" line holds deltas."""
    import numpy as np

    from bench.host_backend import run_runner
    from bench.parse import parse_benchmark_output

    args = [f"--graph={tiny_models['unpruned']['fp32']}", "--num_runs=2", "--warmup_runs=1", "--min_secs=0",
            "--report_peak_memory_footprint=true"]
    rc, first = run_runner(args)
    held = np.ones(300 * 2**20 // 8)  # 300 MB resident in the bench process
    rc2, again = run_runner(args)
    assert rc == rc2 == 0 and held.sum() > 0
    peak1, peak2 = (parse_benchmark_output(t).peak_memory_mb for t in (first, again))
    assert 0 < peak1 < 250 and abs(peak2 - peak1) < 0.1 * peak1
    init, overall = map(float, re.search(r"delta from the start of the tool \(MB\): init=(\S+) overall=(\S+)",
                                         first).groups())
    assert 0 <= init < peak1 and 0 <= overall < peak1


def test_host_timeout_runner_flags_and_a_foreign_out_folder(tiny_models, tmp_path, capsys):
    """``--timeout`` stops a host model as it does a phone's (its row failed, the reason in the table); a
    ``--runner-arg`` that sets a flag bench sets itself is refused (the row would time another file or setting
    than its labels say); an ``--out`` holding files bench did not write is refused, nothing in it touched."""
    from bench import cli

    fp32 = str(tiny_models["unpruned"]["fp32"])
    host = ["--device", "host", "--models", fp32, "--warmup", "0", "--repeats", "2", "--cooldown", "0"]
    out = tmp_path / "t"
    assert cli.main([*host, "--runs", "100000000", "--max-secs", "60", "--timeout", "3", "--out", str(out)]) == 1
    rep = report(out)
    row, res = rep["rows"][0], rep["results"][0]
    assert row["status"] != "ok" and "error" in row["flags"]
    assert res["error"] == "timed out: 2 repeat(s) did not finish within --timeout 3 s (stopped in repeat 1)"
    assert rep["timings"]["bench_total_s"] < 30
    assert "timed out: 2 repeat(s)" in (out / "latency.md").read_text()
    capsys.readouterr()

    for flag in ("--graph=other.tflite", "--use_gpu=true", "--num_threads=1", "--num_runs=3"):
        assert cli.main([*host, f"--runner-arg={flag}", "--out", str(tmp_path / "r")]) == 2
        name = flag[2:].split("=")[0]
        assert f"error: --runner-arg '{flag}': bench sets --{name} itself" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()

    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "log.txt").write_text("the compress log")
    (run / "logs" / "notes.txt").write_text("mine")
    assert cli.main([*host, "--out", str(run)]) == 2
    assert f"error: --out {run}: holds a log.txt of another command, which a bench run did not write" in \
        capsys.readouterr().err
    (run / "generator.pt").write_bytes(b"")
    assert cli.main([*host, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"error: --out {run}: holds a log.txt of another command, generator.pt, which a bench run" in err
    assert (run / "log.txt").read_text() == "the compress log" and (run / "logs" / "notes.txt").exists()
    (run / "generator.pt").unlink()  # another command's log that mentions bench is still not bench's
    (run / "log.txt").write_text("2026-11-30 10:00:00 INFO coronetgan: bench: host, 3 rows\n")
    assert cli.main([*host, "--out", str(run)]) == 2
    assert "holds a log.txt of another command" in capsys.readouterr().err
    # in a bench folder, only runner logs (*.log) of an earlier run are removed from logs/
    assert cli.main([*host, "--runs", "2", "--out", str(out)]) == 0
    (out / "logs" / "notes.txt").write_text("mine")
    assert cli.main([*host, "--runs", "2", "--out", str(out)]) == 0
    assert (out / "logs" / "notes.txt").read_text() == "mine"
    (out / "latency.json").unlink()  # a bench folder is known by its log.txt's first line, too
    assert (out / "log.txt").read_text().startswith(measure.LOG_HEADER + "\n")
    assert cli.main([*host, "--runs", "2", "--out", str(out)]) == 0
    (out / "latency.json").unlink()  # and an interrupted run of the code before LOG_HEADER (its first record)
    (out / "log.txt").write_text("2026-11-30 10:05:15,088 INFO bench: device: host CPU (LiteRT), serial host\n")
    assert cli.main([*host, "--runs", "2", "--out", str(out)]) == 0


def test_a_profile_file_without_virtual_props_makes_a_virtual_phone_bench_recognises(tmp_path, adb_key):
    """A profile written for a real phone (``match`` only, no ``virtual`` section) started with --virtual: the
    virtual device reports the plain values of the match patterns, so bench selects it as that phone."""
    path = tmp_path / "myphone.json"
    path.write_text(json.dumps({"name": "My Phone", "soc": "SM8450",
                                "match": {"ro.soc.model": ["SM8450"], "ro.board.platform": ["taro*"]}}))
    dev = VirtualDevice(profile=str(path), adb_key=adb_key)
    try:
        props = dev.props()
    finally:
        dev.stop()
    assert props["ro.soc.model"] == "SM8450" and "ro.board.platform" not in props   # a glob is no value
    assert profiles.matches(profiles.get_profile(str(path)), props)


def test_virtual_device_and_overhead_commands_name_bad_input(tmp_path, adb_key):
    """``python -m bench.virtual_device`` and ``python -m bench.overhead`` (documented in docs/bench.md): a port
    out of range or taken, a sandbox that is a file, an unknown profile, no trials, a model bench refuses: one
    line naming the flag, exit 2, no traceback."""
    import socket
    import subprocess
    import sys

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    (tmp_path / "afile").write_text("x")
    cases = [
        (["bench.virtual_device", "--port", "99999"], "error: --port 99999: expected a TCP port 0-65535"),
        (["bench.virtual_device", "--port", str(taken.getsockname()[1]), "--adb-key", adb_key],
         f"error: --port {taken.getsockname()[1]}: already in use on 127.0.0.1; expected a free port"),
        (["bench.virtual_device", "--sandbox", str(tmp_path / "afile")], "error: --sandbox"),
        (["bench.virtual_device", "--profile", "nope"], "error: --profile 'nope': unknown device profile"),
        (["bench.overhead", "--models", "x.tflite", "--trials", "0"], "error: --trials 0: expected an integer >= 1"),
        (["bench.overhead", "--models", str(tmp_path / "nope.tflite"), "--trials", "1"],
         f"error: bench refused the input: --models {tmp_path / 'nope.tflite'}: model file"),
    ]
    try:
        for argv, line in cases:
            r = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=120,
                               cwd=tmp_path)
            assert r.returncode == 2 and r.stderr.startswith(line), (argv, r.stderr)
            assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        taken.close()
