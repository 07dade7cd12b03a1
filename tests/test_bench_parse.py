"""benchmark_model output parsing (both forms), harness logs, profiles, model specs, table statistics."""
from __future__ import annotations

import json

import pytest

from bench import profiles, tables
from bench.rows import summarise
from bench.models import ModelSpec, parse_model_args, read_manifest
from bench.parse import UnparseableOutput, is_load_failure, parse_benchmark_output
from bench.results import parse_harness_log
from compress.errors import InputError

import bench_samples as S


def test_newer_form_full_delegation():
    out = parse_benchmark_output(S.NEWER_FULL)
    assert out.form == "newer"
    assert len(out.blocks) == 2
    t = out.timed
    assert (t.count, t.min, t.max, t.avg, t.std, t.median, t.p95) == (50, 8932, 9544, 9120.3, 110, 9090, 9400)
    assert out.init_us == 512374 and out.init_ms == pytest.approx(512.374)
    assert out.first_us == 28345 and out.warmup_avg_us == 9800.5 and out.inference_avg_us == 9120.3
    assert out.init_session_ms == pytest.approx(512.374)
    assert (out.mem_init_mb, out.mem_overall_mb, out.mem_peak_mb) == (120.5, 135.2, 140.3)
    assert out.model_size_mb == pytest.approx(2.13421)
    d = out.delegate
    assert d.requested and d.coverage == "full" and d.name == "GPU"
    assert (d.nodes_delegated, d.nodes_total, d.partitions, d.kernel) == (58, 58, 1, "TfLiteGpuDelegateV2")
    assert d.describe() == "full 58/58"


def test_newer_form_partial_delegation_is_reported():
    out = parse_benchmark_output(S.NEWER_PARTIAL)
    d = out.delegate
    assert d.coverage == "partial"
    assert (d.nodes_delegated, d.nodes_total, d.partitions) == (40, 58, 3)
    assert d.unsupported_ops == ["MIRROR_PAD", "SQUARED_DIFFERENCE"]
    assert d.describe() == "PARTIAL 40/58 (3 partitions)"
    assert out.timed.median == 25010


def test_older_form():
    out = parse_benchmark_output(S.OLDER)
    assert out.form == "older"
    assert out.timed.count == 102 and out.timed.avg == 9780.42 and out.timed.median is None
    assert out.init_session_ms == pytest.approx(402.2) and out.init_ms == pytest.approx(402.2)
    assert (out.mem_init_mb, out.mem_overall_mb, out.mem_peak_mb) == (64.3, 71.9, None)
    # older builds: "Replacing 58 node(s) ... yielding 1 partitions." + "Applied GPU delegate."
    assert out.delegate.coverage == "full" and out.delegate.nodes_total is None
    assert out.delegate.describe() == "full 58/?"


def test_op_profiling_lines_do_not_replace_the_timed_block():
    out = parse_benchmark_output(S.OP_PROFILING_TAIL)
    assert len(out.blocks) == 1 and out.timed.avg == 9120.3


def test_unparseable_and_load_failure():
    with pytest.raises(UnparseableOutput):
        parse_benchmark_output("Segmentation fault\n#$%^ garbage 0x1234\n")
    with pytest.raises(UnparseableOutput, match="Failed to mmap"):
        parse_benchmark_output(S.LOAD_FAIL)
    assert is_load_failure(S.LOAD_FAIL) and not is_load_failure(S.NEWER_FULL)


def _spec(tmp_path, label="pruned", dtype="fp32"):
    p = tmp_path / f"{label}_{dtype}.tflite"
    p.write_bytes(b"x" * 1000)
    return ModelSpec(label=label, dtype=dtype, path=p, macs=123_000_000, size_bytes=1000, sha256="0" * 64)


def _log(body: str, k: int, before: int, after: int, rc: int = 0) -> str:
    return (f"@@ repeat={k} thermal_before status={before} temp_mC=40000\n@@ cmd=/x/benchmark_model --graph=m\n"
            f"{body}@@ repeat={k} exit={rc} t_start_ns=1000000000 t_end_ns=3500000000\n"
            f"@@ repeat={k} thermal_after status={after} temp_mC=52000\n")


def test_harness_log_and_row_statistics(tmp_path):
    def repeat(median: int, p95: int, avg: float, std: int, low: int, peak: float) -> str:
        return (S.NEWER_FULL.replace("min=8932 max=9544 avg=9120.3 std=110 p5=8950 median=9090 p95=9400",
                                     f"min={low} max=9544 avg={avg} std={std} p5=8950 median={median} p95={p95}")
                .replace("Inference (avg): 9120.3", f"Inference (avg): {avg}")
                .replace("periodic monitoring: 140.3", f"periodic monitoring: {peak}"))

    # three repeats of 50 inferences that differ in every figure the row pools
    text = ("@@ model=/d/m.tflite precision=fp32 repeats=3 runner_sha256=" + "a" * 64 + "\n"
            + _log(repeat(9090, 9400, 9120.3, 110, 8932, 140.3), 1, 0, 0)
            + _log(repeat(9500, 9500, 10120.3, 210, 8800, 150.0), 2, 0, 1)
            + _log(repeat(9700, 10400, 9120.3, 110, 8932, 145.0), 3, 1, 3) + "@@ done\n")
    res = parse_harness_log(text, _spec(tmp_path))
    assert res.runner_sha256_device == "a" * 64
    assert [r.ok for r in res.repeats] == [True, True, True]
    assert res.repeats[0].wall_s == pytest.approx(2.5)
    row = summarise(res, "sm8450", "phone")
    assert row["median_ms"] == pytest.approx(9.5)           # per-inference medians 9.09, 9.5, 9.7: their median
    assert row["p95_ms"] == pytest.approx(9.5)               # p95s 9.4, 9.5, 10.4: their median (not 9.77, 10.4)
    assert row["repeat_spread_ms"] == pytest.approx(0.61)    # 9.7 - 9.09
    assert row["mean_ms"] == pytest.approx(9.453633, abs=1e-4)  # (9120.3 + 10120.3 + 9120.3) / 3 (equal counts)
    # pooled over all 150 inferences: sqrt(mean_i(std_i^2 + (avg_i - mean)^2)) = sqrt((123211.1 + 488544.4 +
    # 123211.1) / 3) us, not the repeats' std 110 / 210
    assert row["std_ms"] == pytest.approx(0.494963, abs=1e-4)
    assert row["min_ms"] == pytest.approx(8.8)
    assert row["inferences"] == 150 and row["stats_form"] == "newer"
    assert row["init_ms"] == pytest.approx(512.374)
    assert row["first_ms"] == pytest.approx(28.345) and row["warmup_ms"] == pytest.approx(9.8005)
    assert row["peak_mem_mb"] == pytest.approx(150.0) and row["gpu_precision"] == "fp32"  # the largest peak
    assert row["delegate"] == "full 58/58" and row["cpu_ops"] == "-" and row["flags"][:1] == ["throttled"]
    assert "throttled" in row["flags"] and "THROTTLED" in row["thermal"] and row["thermal"].startswith("0→3")
    assert row["status"] == "ok"


def test_harness_log_problems(tmp_path):
    text = (_log(S.NEWER_PARTIAL, 1, 0, 0) + _log("INFO: STARTING!\n", 2, 0, 0, rc=139)
            + _log(S.LOAD_FAIL, 3, 0, 0, rc=1) + _log("#### nonsense\n", 4, 0, 0))
    res = parse_harness_log(text, _spec(tmp_path))
    assert [r.problem for r in res.repeats] == [None, "crashed", "load-failed", "unparseable"]
    row = summarise(res, "sm8450", "virtual")
    for flag in ("virtual", "partial-delegate", "crashed", "load-failed", "unparseable", "some-repeats-failed"):
        assert flag in row["flags"]
    assert row["delegate"].startswith("PARTIAL") and row["status"] == "ok"
    md = tables.to_markdown({"device_label": "x", "device": {"kind": "virtual"}, "rows": [row], "runner": None,
                             "config": {"warmup": 1, "runs": 2, "repeats": 4, "cooldown_s": 0, "use_gpu": True,
                                        "gpu_backend": "cl", "threads": 1},
                             "started": "now", "timings": {}, "reference": None})
    assert "**partial-delegate**" in md and "VIRTUAL DEVICE" in md and "PARTIAL 40/58" in md


def test_profiles_recognise_phones():
    assert profiles.identify({"ro.soc.model": "SM8450", "ro.hardware": "qcom"}) == "sm8450"
    assert profiles.identify({"ro.board.platform": "taro", "ro.hardware": "qcom"}) == "sm8450"
    assert profiles.identify({"ro.soc.model": "MT6893Z/CZA", "ro.hardware": "mt6893"}) == "dimensity1200"
    assert profiles.identify({"ro.board.platform": "mt6893"}) == "dimensity1200"
    assert profiles.identify({"ro.hardware": "qcom"}) is None          # every Snapdragon says qcom
    assert profiles.identify({"ro.soc.model": "SM8550", "ro.board.platform": "taro"}) == "sm8550"  # soc.model first
    assert profiles.identify({"ro.soc.model": "SM7325", "ro.board.platform": "taro"}) is None
    with pytest.raises(InputError, match="unknown device profile"):
        profiles.get_profile("pixel9")
    data = profiles.load_profiles()
    for name in ("sm8450", "sm8550", "sm8650", "dimensity1200", "dimensity9200", "dimensity9300", "tensor_g3"):
        p = data["profiles"][name]
        assert p["gpu"] and p["soc"] and p["match"] and p["virtual"]["props"]


def test_model_args_and_tolerant_manifest(tmp_path):
    for n in ("g_fp32.tflite", "g_fp16.tflite", "g_int8.tflite", "other.tflite"):
        (tmp_path / n).write_bytes(b"\0" * 64)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "model": "pruned", "macs": 1.5e9,
        "files": [{"path": "g_fp32.tflite", "dtype": "fp32"}, {"path": "g_fp16.tflite", "dtype": "float16"},
                  {"path": "g_int8.tflite", "dtype": "int8"}, {"path": "g.onnx"}]}))
    specs = read_manifest(tmp_path / "manifest.json")
    assert [(s.label, s.dtype, s.macs) for s in specs] == [("pruned", d, 1_500_000_000) for d in ("fp32", "fp16", "int8")]
    # dict form of files, folder argument, labelled paths, --macs override
    (tmp_path / "m2").mkdir()
    (tmp_path / "m2" / "manifest.json").write_text(json.dumps({"model": "base", "files": {"fp32": "../other.tflite"}}))
    specs = parse_model_args([str(tmp_path / "m2"), f"unpruned:fp16={tmp_path / 'g_fp16.tflite'}",
                              str(tmp_path / "g_int8.tflite")], macs={"base": 7})
    assert [(s.label, s.dtype, s.macs) for s in specs] == [("base", "fp32", 7), ("unpruned", "fp16", None),
                                                          ("g", "int8", None)]
    with pytest.raises(InputError, match="not found"):
        parse_model_args([str(tmp_path / "missing.tflite")])
    with pytest.raises(InputError, match="two files for g:fp32"):
        parse_model_args([f"g:fp32={tmp_path / 'g_fp32.tflite'}", f"g:fp32={tmp_path / 'other.tflite'}"])
    (tmp_path / "bad.json").write_text("{\"files\": []}")
    with pytest.raises(InputError, match="lists no .tflite"):
        parse_model_args([str(tmp_path / "bad.json")])


@pytest.mark.parametrize("manifest, message", [
    (42, "the manifest is a JSON int; expected an object"),
    ({"files": {"fp32": 5}}, "lists no .tflite file"),
    ({"files": "g_fp32.tflite"}, "'files' is a str; expected a list"),
    ({"files": [{"path": 7}]}, "a file entry's 'path' is 7; expected a string"),
    ({"files": [{"path": "g_fp32.tflite", "dtype": 5}]}, "a file entry's 'dtype' is 5; expected a string"),
])
def test_a_malformed_manifest_is_named_not_a_traceback(tmp_path, manifest, message):
    (tmp_path / "g_fp32.tflite").write_bytes(b"\0" * 64)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=f"--models {tmp_path / 'manifest.json'}: .*{message}"):
        read_manifest(tmp_path / "manifest.json")


def test_macs_values_and_labels_are_checked(tmp_path, capsys):
    """--macs takes LABEL=N with N a finite count >= 0 for a label some model has; a manifest's MACs that are
    not such a number (1e400 reads as inf) are left out instead of crashing the run."""
    from bench import cli

    (tmp_path / "g_fp32.tflite").write_bytes(b"\0" * 64)
    (tmp_path / "manifest.json").write_text('{"model": "g", "macs": 1e400, "files": [{"path": "g_fp32.tflite"}]}')
    assert [s.macs for s in read_manifest(tmp_path / "manifest.json")] == [None]
    with pytest.raises(InputError, match="--macs nolabel=...: no model has the label 'nolabel'; expected one of g"):
        parse_model_args([str(tmp_path / "g_fp32.tflite")], macs={"nolabel": 7})
    for bad in ("g=inf", "g=-5", "g=nan", "=5", "g=many"):
        assert cli.main(["--device", "host", "--models", str(tmp_path / "g_fp32.tflite"), "--macs", bad,
                         "--out", str(tmp_path / "o")]) == 2
        assert f"error: --macs '{bad}': expected LABEL=N" in capsys.readouterr().err


def test_unknown_device_is_a_clear_input_error(tmp_path, capsys):
    """--device takes a profile of bench/profiles.json or host; anything else: exit 2, no output folder."""
    from bench import cli
    from bench.pipeline import cli as pipeline_cli

    assert profiles.check_device("host") == "host" and profiles.check_device("sm8450") == "sm8450"
    with pytest.raises(InputError) as e:
        profiles.check_device("nokia3310")
    assert str(e.value) == (
        "--device 'nokia3310': unknown device profile; expected one of dimensity1200 (MT6893, Dimensity 1200-Max), "
        "dimensity9200 (MT6985, Dimensity 9200), dimensity9300 (MT6989, Dimensity 9300), sm8450 (SM8450, "
        "Snapdragon 8 Gen 1), sm8550 (SM8550, Snapdragon 8 Gen 2), sm8650 (SM8650, Snapdragon 8 Gen 3), tensor_g3 "
        "(Tensor G3, Google Tensor G3) (the key, SoC or name, any case), a profile .json file, or host")
    model = tmp_path / "m_fp32.tflite"
    model.write_bytes(b"not read")
    out = tmp_path / "out"
    assert cli.main(["--device", "nokia3310", "--models", str(model), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--device 'nokia3310'" in err and "sm8450" in err and "host" in err and "Traceback" not in err
    assert not out.exists()
    assert pipeline_cli.main(["--device", "nokia3310", "--run-dir", str(tmp_path), "bench"]) == 2
    assert "--device 'nokia3310'" in capsys.readouterr().err


def test_bench_settings_are_checked():
    from bench.results import BenchSettings

    assert BenchSettings.from_options({"runs": 5, "cooldown_s": 0}).runs == 5
    with pytest.raises(InputError, match="bench setting 'cooldown'"):
        BenchSettings.from_options({"cooldown": 0})
    with pytest.raises(InputError, match="--runs 0"):
        BenchSettings.from_options({"runs": 0})
    with pytest.raises(InputError, match="--gpu-backend 'vulkan'"):
        BenchSettings.from_options({"gpu_backend": "vulkan"})


def test_machine_description_and_text():
    from compress.machine import describe_machine, machine_text

    m = describe_machine(gpu=False)
    assert {"host", "cpu", "cores", "system", "python"} <= set(m) and "gpu" not in m
    assert machine_text({"cpu": "EPYC", "cores": 2, "memory_gb": 23.5, "host": "vm"}) == "EPYC, 2 cores, 23.5 GB RAM (vm)"
    assert machine_text("recorded text") == "recorded text" and machine_text(None) == "unknown machine"
