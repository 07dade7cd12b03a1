"""Export of small *trained* generators of each family through ONNX -> TFLite fp32/fp16/int8 (issue 4).

The three runs are trained briefly on real data (export/tiny.py) and exported once per session; the tests
then read the manifests. Bad-input cases need no conversion and run fast.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.errors import InputError
from compress.io import sha256_file
from compress.families import FAMILIES
from export import ExportOptions, export_run
from export.__main__ import latest_run, main as export_main
from export.int8_file import choose_concatenation_matching
from export.pipeline import GateFailure
from export.tiny import train_tiny_run
from quantize.litert import make_interpreter

#: Short trainings keep the session under the test budget; enough to give the weights real structure.
TEST_STEPS = {"pix2pix": 50, "cyclegan": 50, "dcgan": 40}


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, shared_data) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for fam in FAMILIES:
        runs[fam] = root / fam
        train_tiny_run(fam, runs[fam], shared_data, steps=TEST_STEPS[fam], n_images=24)
    return runs


@pytest.fixture(scope="session")
def exported(trained_runs) -> dict[str, dict]:
    """All three dtypes of every family, default options (robust int8, int8 I/O, 100 calibration inputs)."""
    return {fam: export_run(run, ExportOptions()) for fam, run in trained_runs.items()}


def _psnr(entry: dict) -> float:
    return math.inf if entry["psnr_db"] == "inf" else float(entry["psnr_db"])


@pytest.mark.parametrize("family", FAMILIES)
def test_manifest_files_and_gates(exported, trained_runs, family):
    manifest = exported[family]
    out = trained_runs[family] / "export"
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["source"] == manifest["source"]
    by_dtype = {e["dtype"]: e for e in on_disk["files"]}
    assert set(by_dtype) == {"onnx", "fp32", "fp16", "int8"}
    for e in on_disk["files"]:
        p = out / e["path"]
        assert p.is_file() and p.stat().st_size == e["size_bytes"] and sha256_file(p) == e["sha256"]
    assert by_dtype["onnx"]["max_abs_diff"] <= 1e-4
    assert _psnr(by_dtype["fp32"]) >= 60
    assert _psnr(by_dtype["fp16"]) >= 45
    assert _psnr(by_dtype["int8"]) >= 30, by_dtype["int8"]
    assert on_disk["gates_passed"] and not on_disk["gate_failures"]
    # I/O: named, fixed, NHWC
    assert on_disk["input"]["name"] == "input" and on_disk["output"]["name"] == "output"
    assert on_disk["input"]["layout"] == "NHWC"
    assert on_disk["input"]["value_range"] == ([-1, 1] if family != "dcgan" else None)  # DCGAN: N(0, 1) noise
    n, h, w, c = on_disk["input"]["shape"]
    assert n == 1 and on_disk["input"]["onnx_shape"] == [1, c, h, w]
    for dtype in ("fp32", "fp16", "int8"):
        io = by_dtype[dtype]["input"]
        assert io["shape"] == on_disk["input"]["shape"] and io["layout"] == "NHWC"
    assert by_dtype["int8"]["input"]["dtype"] == "int8" and by_dtype["fp32"]["input"]["dtype"] == "float32"
    assert on_disk["macs"] > 0 and on_disk["params"] > 0
    assert {"onnx2tf", "tensorflow", "torch", "tflite-runtime"} <= set(on_disk["converter_versions"])


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_is_really_int8(exported, trained_runs, family):
    """Issue 15: every convolution int8 (the label says so), no hybrid op, no float MUL/ADD left from BatchNorm,
    the manifest's shares are the file's, every file runs in LiteRT and tflite-runtime 2.14, and the int8 gates
    (pooled and worst image, held-out and unseen photos) hold."""
    by_dtype = {e["dtype"]: e for e in exported[family]["files"]}
    out = trained_runs[family] / "export"
    q = by_dtype["int8"]
    assert q["label"] == "int8" and q["convolutions_float"] == 0 and q["hybrid_ops"] == []
    assert q["int8_share"] == {"weight_bytes": 1.0, "macs": 1.0, "macs_int16_activations": 0.0}
    if exported[family]["params"] > 100_000:  # the size gate's scope (export/parity.py)
        assert q["size_ratio_to_fp32"] <= 0.30
    else:  # the tiny CycleGAN (69 k parameters): exempt, its file is mostly graph; still far below fp32
        assert q["size_ratio_to_fp32"] < 0.5
    assert _psnr(q) >= 30 and _psnr({"psnr_db": q["min_image_psnr_db"]}) >= 27
    eq = q["equalisation"]
    assert eq["onnx_max_abs_diff"] <= 1e-4 and eq["max_abs_change"] <= 1e-4
    # the ops left in float by name ("OP output-tensor"), as many as the counts say
    assert len(q["float_op_names"]) == sum(q["float_ops"].values())
    assert sorted(n.split(" ", 1)[0] for n in q["float_op_names"]) == sorted(
        op for op, count in q["float_ops"].items() for _ in range(count))
    if family == "cyclegan":  # InstanceNorm ops stay float by name; every convolution feeding one is equalised
        assert eq["instance_norm_inputs"] and {"MEAN", "DIV"} <= set(q["float_ops"])
    else:  # BatchNorm folded: no float MUL/ADD in the file
        assert eq["folded_batch_norms"] and eq["cross_layer"]
        assert not {"MUL", "ADD"} & set(q["float_ops"])
    # the U-Net's skip concatenations: the file with matched ranges and the one without were both measured, and
    # the one kept is the one the rule picks; no concatenation elsewhere
    matching = q["concatenation_matching"]
    if family == "pix2pix":
        assert matching["concatenations"] and set(matching["validation"]) == {"matched", "unmatched"}
        # measured on edge maps and on the pair photos (export.int8_file.validation_inputs)
        assert matching["validation_target_domain_count"] == min(8, exported[family]["inputs"]["target_domain_count"])
        assert matching["validation_target_domain_count"] > 0
        assert matching["kept"] == choose_concatenation_matching(matching["validation"])
        assert bool(eq["concatenations"]) == matching["kept"]
    else:
        assert matching is None and not eq["concatenations"]
    # pix2pix's validation inputs add an edge map drawn from every training photo of its representative set
    checked = q["validation_inputs"]
    drawn = exported[family]["inputs"]["target_domain_count"] if family == "pix2pix" else 0
    assert (drawn > 0) == (family == "pix2pix")
    assert checked["validation_drawn_count"] == drawn
    assert checked["validation_drawn_kinds"] == (["edges"] if family == "pix2pix" else [])
    assert q["float_selection"]["validation_count"] in (0, checked["validation_count"])
    assert q["bias_correction"]["corrected"]
    # auto weight scales: these files meet the size gate (or are exempt) per-channel, so nothing else is made
    assert q["weight_scales_choice"]["chosen"] == q["weight_scales"] == "per-channel"
    assert set(q["weight_scales_choice"]["candidates"]) == {"per-channel"}
    # where the bytes go (the size gate's message): the parts add up to the file, int8 data = int8 weights
    assert q["file_bytes"]["constant_data"]["int8"] == q["weight_bytes"]["int8"]
    assert q["file_bytes"]["operators"] == q["op_count"]
    assert q["file_bytes"]["quantization_parameters"] > 0 == by_dtype["fp32"]["file_bytes"]["quantization_parameters"]
    for e in by_dtype.values():
        if e["dtype"] == "onnx":
            continue
        fb = e["file_bytes"]
        assert fb["total"] == e["size_bytes"] and 0 < fb["graph"] < fb["total"] / 2
        # compacted (export.compact): only the input/output names stay in the file, the manifest keeps the rest
        assert e["compaction"]["bytes_after"] == e["size_bytes"] < e["compaction"]["bytes_before"]
        assert len(e["tensor_names"]) == fb["tensors"] and sum(map(bool, e["tensor_names"])) > 2
        # the names as the runtime reads them (a second reader of the same flatbuffer)
        details = make_interpreter(out / e["path"], 1).get_tensor_details()
        assert fb["tensor_names"] == sum(len(t["name"].encode()) for t in details) > 0
        assert set(e["runtimes"]) == {"litert", "tflite-runtime"}
        assert all(r["ok"] for r in e["runtimes"].values()), e["runtimes"]
        if family == "dcgan":
            assert "unseen" not in e
        else:  # the scikit-image photos (and, for pix2pix, their edge maps) never seen in calibration or training
            assert e["unseen"]["count"] == (30 if family == "pix2pix" else 15)
            assert _psnr({"psnr_db": e["unseen"]["psnr_db"]}) >= e["gate_db"]
            for r in e["runtimes"].values():  # each runtime measured on the photos too, and held to the gates
                assert r["unseen"]["count"] == e["unseen"]["count"]
                assert _psnr({"psnr_db": r["unseen"]["psnr_db"]}) >= e["gate_db"]
                assert e["dtype"] != "int8" or _psnr({"psnr_db": r["unseen"]["min_image_psnr_db"]}) >= 27
    if family == "dcgan":  # noise input: no photo set
        assert exported[family]["unseen_inputs"] is None
    else:
        assert exported[family]["unseen_inputs"]["set"].startswith("scikit-image ")


@pytest.mark.parametrize("family", FAMILIES)
def test_gpu_delegate_report(exported, family):
    for e in exported[family]["files"]:
        if e["dtype"] == "onnx":
            continue
        gpu = e["gpu_delegate"]
        assert {"gpu_ready", "analyzer_compatible", "analyzer_warnings", "ops", "version_problems"} <= set(gpu)
        too_new = [v for v in gpu["transpose_conv_versions"] if v > 3]
        # the known trap is detected: TRANSPOSE_CONV above version 3 is a version problem and not GPU-ready
        assert bool(too_new) == any("TRANSPOSE_CONV" in p for p in gpu["version_problems"])
        if too_new:
            assert not gpu["gpu_ready"]
        if e["dtype"] in ("fp32", "fp16"):
            assert gpu["gpu_ready"], gpu
    if family == "dcgan":  # onnx2tf 1.29.24 fuses ConvTranspose+ReLU (TRANSPOSE_CONV v4); export unfuses it
        fp32 = {e["dtype"]: e for e in exported[family]["files"]}["fp32"]
        assert fp32["unfused_transpose_conv_activations"] >= 1
        assert fp32["gpu_delegate"]["transpose_conv_versions"] == [3]


def test_transpose_conv_v4_is_detected(exported, trained_runs, tmp_path):
    """The version check itself: a file whose TRANSPOSE_CONV claims version 4 is not GPU-ready."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python.util import (_convert_model_from_bytearray_to_object,
                                             _convert_model_from_object_to_bytearray)

    from export.gpu_check import gpu_delegate_check

    src = trained_runs["dcgan"] / "export" / "generator_fp32.tflite"
    model = _convert_model_from_bytearray_to_object(bytearray(src.read_bytes()))
    for oc in model.operatorCodes:
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == schema.BuiltinOperator.TRANSPOSE_CONV:
            oc.version = 4
    bad = tmp_path / "v4.tflite"
    bad.write_bytes(bytes(_convert_model_from_object_to_bytearray(model)))
    gpu = gpu_delegate_check(bad)
    assert not gpu["gpu_ready"] and any("TRANSPOSE_CONV" in p for p in gpu["version_problems"])


def test_int8_input_and_output_ranges_are_fixed(exported):
    """Issue 15, item 3: the int8 input covers [-1, 1] whatever the representative images reach (int8 steps of
    2/255 put the ends within half a step), not a calibrated range; the output is TANH's fixed [-1, 127/128]."""
    for fam in ("pix2pix", "cyclegan"):
        q = {e["dtype"]: e for e in exported[fam]["files"]}["int8"]
        lo, hi = q["input"]["value_range"]
        assert -1.01 <= lo <= -0.99 and 0.99 <= hi <= 1.01, (fam, q["input"])
        assert q["fixed_ranges"] == {"input": [-1.0, 1.0], "output": [-1.0, 1.0]}
        assert q["output"]["value_range"] == pytest.approx([-1.0, 127 / 128], abs=1e-6)
    for fam, run in exported.items():  # every file says what the generator takes and gives
        for e in run["files"]:
            if e["dtype"] != "onnx":
                assert e["input"]["expected_range"] == (None if fam == "dcgan" else [-1, 1]), (fam, e["dtype"])
                assert e["output"]["expected_range"] == [-1, 1], (fam, e["dtype"])


def test_dcgan_calibration_is_noise(exported):
    desc = exported["dcgan"]["inputs"]
    assert desc["kind"] == "noise" and desc["calibration_seed"] != desc["heldout_seed"]


def test_reexport_unchanged_is_skipped(exported, trained_runs, capsys, monkeypatch):
    run = trained_runs["pix2pix"]
    again = export_run(run, ExportOptions(dtypes=("int8",)))
    assert again.get("skipped") is True
    assert export_main([str(run), "--dtype", "fp32"]) == 0
    assert "skipped" in capsys.readouterr().out
    # an export written by other export code is not "unchanged": its manifest fields or files may differ
    from export import pipeline

    assert pipeline._same_source(again, pipeline._source_info(run), again["options"]) is True
    monkeypatch.setattr(pipeline, "export_code_sha256", lambda: "0" * 64)
    assert pipeline._same_source(again, pipeline._source_info(run), again["options"]) is False


def test_a_kept_int8_file_keeps_its_calibration_facts(exported, trained_runs, tmp_path):
    """An fp32-only export beside an earlier int8 file loads no calibration inputs; the merged manifest still says
    which inputs calibrated the int8 file it lists, and how long that file took."""
    run = trained_runs["dcgan"]
    earlier = json.loads((run / "export" / "manifest.json").read_text())
    assert earlier["inputs"]["calibration_count"] > 0 and "int8_s" in earlier["timings_s"]
    out = tmp_path / "out"
    shutil.copytree(run / "export", out)
    merged = export_run(run, ExportOptions(dtypes=("fp32",), out_dir=out, force=True))
    assert [e["dtype"] for e in merged["files"]] == ["onnx", "fp32", "fp16", "int8"]
    assert merged["inputs"]["calibration_count"] == earlier["inputs"]["calibration_count"]
    assert merged["inputs"]["calibration_seed"] == earlier["inputs"]["calibration_seed"]
    assert merged["timings_s"]["int8_s"] == earlier["timings_s"]["int8_s"]
    assert merged["timings_s"]["onnx2tf_s"] != earlier["timings_s"]["onnx2tf_s"]  # this export's own
    assert json.loads((out / "manifest.json").read_text())["inputs"] == merged["inputs"]


def test_latest_run(trained_runs, tmp_path):
    """The newest finished run by its generator.pt's time, whatever the folder names say."""
    runs = tmp_path / "runs"
    for age, family in enumerate(("dcgan", "pix2pix", "cyclegan")):  # dcgan the newest
        dest = runs / f"{age}-{family}"
        dest.mkdir(parents=True)
        for name in ("generator.pt", "architecture.json"):
            shutil.copy2(trained_runs[family] / name, dest / name)
        stamp = 1_700_000_000 - 1000 * age
        os.utime(dest / "generator.pt", (stamp, stamp))
    assert latest_run(runs) == runs / "0-dcgan"
    # a benchmark's runs (python -m compress.benchmarks writes runs/bench-<name>/...) are not a deliverable: the
    # newest of them does not become what `make export` / `bench/run_adb.py` take
    bench = runs / "bench-controllability" / "dcgan-90"
    bench.mkdir(parents=True)
    for name in ("generator.pt", "architecture.json"):
        shutil.copy2(trained_runs["dcgan"] / name, bench / name)
    assert latest_run(runs) == runs / "0-dcgan"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no finished compress run"):
        latest_run(tmp_path / "empty")


def test_gate_failure_installs_nothing(trained_runs, tmp_path, monkeypatch):
    import export.parity as parity

    monkeypatch.setitem(parity.GATES_DB, "fp32", 1000.0)  # an unreachable gate (the one dict every module reads)
    out = tmp_path / "out"
    with pytest.raises(GateFailure) as info:
        export_run(trained_runs["dcgan"], ExportOptions(dtypes=("fp32",), out_dir=out))
    assert "PSNR" in str(info.value) and info.value.figures
    assert not (out / "manifest.json").exists() and not list(out.glob("*.tflite"))
    assert not list(tmp_path.glob(".out.staging-*"))
    # the files wait aside: the same command fails again at once, and --accept-gate-failure installs them, with no
    # conversion run again (the converter is not called)
    assert (tmp_path / ".out.missed" / "generator_fp32.tflite").is_file() and str(tmp_path / ".out.missed") in str(
        info.value)
    # only the files the manifest lists wait there, not the converter's work folders (SavedModel, fp16 file...)
    assert sorted(p.name for p in (tmp_path / ".out.missed").iterdir()) == [
        "generator.onnx", "generator_fp32.tflite", "manifest.json"]
    import export.tflite_convert as tflite_convert

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(tflite_convert, "run_onnx2tf", no_conversion)
    with pytest.raises(GateFailure, match=r"the same export as before"):
        export_run(trained_runs["dcgan"], ExportOptions(dtypes=("fp32",), out_dir=out))
    assert export_main([str(trained_runs["dcgan"]), "--dtype", "fp32", "--out", str(out),
                        "--accept-gate-failure"]) == 0
    assert not (tmp_path / ".out.missed").exists()
    monkeypatch.undo()
    monkeypatch.setitem(parity.GATES_DB, "fp32", 1000.0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["gate_failures"] and manifest["gate_failures_accepted"]
    # unchanged, the installed files still missed their gate: skipped, but exit 1 again without the flag
    before = (out / "manifest.json").read_bytes()
    assert export_main([str(trained_runs["dcgan"]), "--dtype", "fp32", "--out", str(out)]) == 1
    assert (out / "manifest.json").read_bytes() == before
    assert export_main([str(trained_runs["dcgan"]), "--dtype", "fp32", "--out", str(out),
                        "--accept-gate-failure"]) == 0
    # another dtype exported beside it (passing its gates) keeps the fp32 file and its recorded miss
    assert export_main([str(trained_runs["dcgan"]), "--dtype", "fp16", "--out", str(out), "--force"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["dtype"] for e in manifest["files"]] == ["onnx", "fp32", "fp16"]
    assert manifest["gate_failures"] and manifest["gate_failures"][0].startswith("generator_fp32.tflite: PSNR")
    assert export_main([str(trained_runs["dcgan"]), "--dtype", "fp32", "--out", str(out)]) == 1


def test_cli_gate_failure_exit_status(trained_runs, monkeypatch, capsys):
    import export.__main__ as cli

    figures = [{"path": "generator_int8.tflite", "psnr_db": 21.5, "gate_db": 30.0, "max_abs_diff": 0.4}]

    def fail(*a, **k):
        raise GateFailure("quality gate(s) missed: generator_int8.tflite: PSNR 21.50 dB < gate 30 dB", figures,
                          ["x"])

    monkeypatch.setattr(cli, "export_run", fail)
    assert export_main([str(trained_runs["dcgan"]), "--dtype", "int8"]) == 1
    err = capsys.readouterr().err
    assert "21.50" in err and "gate" in err


# ----------------------------------------------------------------------------------------- bad input


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("generator.pt", "architecture.json"):
        shutil.copy(src / name, dst / name)
    return dst


def _assert_nothing_complete(run: Path) -> None:
    out = run / "export"
    assert not (out / "manifest.json").exists()
    assert not list(run.glob(".export.staging-*"))


def test_missing_run_folder(tmp_path, capsys):
    with pytest.raises(InputError, match="does not exist"):
        export_run(tmp_path / "nope", ExportOptions(dtypes=("fp32",)))
    assert export_main([str(tmp_path / "nope"), "--dtype", "fp32"]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()


def test_corrupt_generator_pt(trained_runs, tmp_path):
    run = _copy_run(trained_runs["pix2pix"], tmp_path / "run")
    (run / "generator.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="generator.pt"):
        export_run(run, ExportOptions())
    _assert_nothing_complete(run)


def test_an_unreadable_manifest_is_refused_before_any_file_is_touched(trained_runs, tmp_path, capsys):
    """The manifest says which files are complete: a corrupt one is an error (exit 2), not "no earlier export"
    (which would remove the files of the other dtypes as stale); --force exports from scratch."""
    run = _copy_run(trained_runs["pix2pix"], tmp_path / "run")
    exp = run / "export"
    exp.mkdir()
    for name in ("generator_fp16.tflite", "generator_int8.tflite"):
        (exp / name).write_bytes(b"earlier export")
    entry = {"dtype": "int8", "path": "generator_int8.tflite", "sha256": "0" * 64, "size_bytes": 14}
    broken = [{k: v for k, v in entry.items() if k != drop} for drop in entry] + [[1], {**entry, "dtype": "int4"}]
    for content in (b'{"files": [', b"[1]", b"\xff\xfe", *(json.dumps({"files": [b]}).encode() for b in broken)):
        (exp / "manifest.json").write_bytes(content)
        with pytest.raises(InputError, match=r"manifest\.json: cannot be read as the earlier export's manifest .*"
                                             r"--force"):
            export_run(run, ExportOptions(dtypes=("fp32",)))
        assert export_main([str(run), "--dtype", "fp32"]) == 2
        assert "Traceback" not in capsys.readouterr().err
        assert sorted(p.name for p in exp.iterdir()) == ["generator_fp16.tflite", "generator_int8.tflite",
                                                         "manifest.json"]


def test_architecture_does_not_match_weights(trained_runs, tmp_path):
    run = _copy_run(trained_runs["pix2pix"], tmp_path / "run")
    arch = json.loads((run / "architecture.json").read_text())
    arch["generator"]["channels"]["d1"] += 3
    (run / "architecture.json").write_text(json.dumps(arch))
    with pytest.raises(InputError, match="does not match"):
        export_run(run, ExportOptions(dtypes=("fp32",)))
    _assert_nothing_complete(run)


@pytest.mark.parametrize("shape", [[1, 3, 2, 2], [1, 4, 64, 64]])
def test_an_input_shape_the_generator_cannot_take_is_bad_input(trained_runs, tmp_path, capsys, shape):
    """architecture.json's input_shape edited to one the CycleGAN generator cannot run (too small for its
    reflection padding; 4 channels): exit 2 naming the file and the shape, before any conversion (it was a
    traceback, or "torch.onnx.export failed", exit 1)."""
    run = _copy_run(trained_runs["cyclegan"], tmp_path / "run")
    arch = json.loads((run / "architecture.json").read_text())
    arch["input_shape"] = shape
    (run / "architecture.json").write_text(json.dumps(arch))
    assert export_main([str(run), "--dtype", "fp32"]) == 2
    err = capsys.readouterr().err
    assert f"error: architecture.json: input_shape {shape} does not fit the generator (" in err, err
    assert "Traceback" not in err
    _assert_nothing_complete(run)


def test_files_of_other_export_code_are_removed_with_a_warning(trained_runs, tmp_path, monkeypatch, caplog):
    """``make export DTYPE=fp16`` beside an fp32 file made by other export code: the manifest cannot list it, so
    it is removed -- and the log says so (it was removed silently)."""
    from export import pipeline

    out = tmp_path / "out"
    export_run(trained_runs["dcgan"], ExportOptions(dtypes=("fp32",), out_dir=out))
    monkeypatch.setattr(pipeline, "export_code_sha256", lambda: "1" * 64)
    with caplog.at_level(logging.WARNING, logger="coronetgan.export"):
        export_run(trained_runs["dcgan"], ExportOptions(dtypes=("fp16",), out_dir=out))
    assert not (out / "generator_fp32.tflite").exists() and (out / "generator_fp16.tflite").is_file()
    assert (f"removed generator_fp32.tflite from {out}: exported earlier from other weights, options, tools or "
            "export code than this export (only onnx, fp16 now)") in caplog.text


def test_out_is_the_current_folder(trained_runs, tmp_path, monkeypatch, capsys):
    """``--out .`` (the staging and missed folders are named after the output folder: it had no name)."""
    run = _copy_run(trained_runs["dcgan"], tmp_path / "run")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert export_main([str(run), "--dtype", "fp32", "--out", "."]) == 0, capsys.readouterr().err
    assert {"manifest.json", "generator_fp32.tflite", "generator.onnx"} <= {p.name for p in here.iterdir()}


def test_empty_calibration_folder(trained_runs, tmp_path):
    run = _copy_run(trained_runs["cyclegan"], tmp_path / "run")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no image files|empty"):
        export_run(run, ExportOptions(dtypes=("int8",), calibration_dir=empty))
    _assert_nothing_complete(run)
    assert export_main([str(run), "--dtype", "int8", "--calibration-dir", str(empty)]) == 2


def test_bad_options(trained_runs):
    with pytest.raises(InputError, match="--dtype"):
        export_run(trained_runs["dcgan"], ExportOptions(dtypes=("int4",)))
    with pytest.raises(InputError, match="--calibration-count"):
        export_run(trained_runs["dcgan"], ExportOptions(dtypes=("int8",), calibration_count=0))


def test_dtype_is_a_validated_choice(tmp_path, capsys):
    """--dtype takes fp32, fp16, int8, all or a comma list of them (normalised to export order); anything else is
    an InputError naming the flag, the value and the choices (CLI: exit 2, no traceback)."""
    assert ExportOptions(dtypes="int8,fp32").dtypes == ("fp32", "int8")
    assert ExportOptions(dtypes=("all",)).dtypes == ExportOptions().dtypes == ("fp32", "fp16", "int8")
    with pytest.raises(InputError, match="--dtype 'fp32,int4'.*fp32, fp16, int8, all"):
        ExportOptions(dtypes="fp32,int4")
    assert export_main([str(tmp_path / "nope"), "--dtype", "int4"]) == 2
    err = capsys.readouterr().err
    assert "--dtype 'int4'" in err and "fp32, fp16, int8, all" in err and "Traceback" not in err


def test_side_by_side_source_takes_left_half(shared_data):
    """edges2shoes files are A|B side by side: the representative inputs are the A (edge map) halves."""
    from PIL import Image

    from export.inputs import resolve_input_sets

    arch = {"family": "pix2pix", "input_shape": [1, 3, 64, 64],
            "dataset": {"root": str(shared_data / "edges2shoes_subset"), "source_dir": "train", "test_dir": "val",
                        "layout": "side_by_side"}}
    sets = resolve_input_sets(arch, calibration_count=3, heldout_count=2)
    assert sets.calibration.shape == (3, 3, 64, 64) and sets.heldout.shape == (2, 3, 64, 64)
    assert sets.calibration.min() >= -1 and sets.calibration.max() <= 1
    first = sorted((shared_data / "edges2shoes_subset" / "train").glob("*.jpg"))[0]
    img = Image.open(first).convert("RGB")
    left = np.asarray(img.crop((0, 0, img.width // 2, img.height)).resize((64, 64), Image.BICUBIC), np.float32)
    assert np.allclose(sets.calibration[0], left.transpose(2, 0, 1) / 127.5 - 1, atol=1e-5)
    assert sets.description["heldout_dir"].endswith("val")


def test_no_heldout_image_is_ever_a_calibration_image(tmp_path, monkeypatch):
    """However --calibration-dir names the folders (relative, a symlink, a folder holding the held-out one), the
    held-out images are left out of the calibration set (compared by resolved path), and the manifest says how
    many were."""
    from PIL import Image

    from compress.families.calibration import image_input_sets

    rng = np.random.default_rng(0)
    for folder, n in (("trainA", 5), ("testA", 4)):
        (tmp_path / "ds" / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "ds" / folder / f"{i}.png")
    (tmp_path / "link").symlink_to(tmp_path / "ds" / "testA")
    monkeypatch.chdir(tmp_path)
    dataset = {"root": str(tmp_path / "ds"), "source_dir": "trainA", "test_dir": "testA"}
    for cal_dir in ("ds/testA", "link", "ds"):
        sets = image_input_sets(dataset, (8, 8), calibration_dir=cal_dir, calibration_count=100, heldout_count=2,
                                need_calibration=True)
        held = {(tmp_path / "ds" / "testA" / n).resolve() for n in sets.description["heldout_files"]}
        assert held and not held & {f.resolve() for f in sets.calibration_files}, cal_dir
        assert sets.description["heldout_left_out_of_calibration"] == 2, cal_dir
        assert len(sets.calibration) == len(sets.calibration_files)


@pytest.mark.slow
def test_naive_int8_option_and_uint8_io(exported, trained_runs, tmp_path):
    """The naive variant stays available (the converter's full-integer recipe, no deny-list) so the difference can
    be shown; uint8 I/O works."""
    out = tmp_path / "naive"
    naive = export_run(trained_runs["cyclegan"], ExportOptions(dtypes=("int8",), out_dir=out, int8_mode="naive",
                                                               int8_io="uint8", accept_gate_failure=True))
    entry = {e["dtype"]: e for e in naive["files"]}["int8"]
    assert entry["int8_mode"] == "naive" and entry["float_denylist"] == [] and entry["bias_correction"] is None
    assert entry["input"]["dtype"] == "uint8" and entry["output"]["dtype"] == "uint8"
    assert entry["hybrid_ops"] == [] and entry["label"].startswith("int8")


@pytest.mark.slow
def test_quiet_channel_is_equalised_and_float_selection_is_the_labelled_last_resort(trained_runs, tmp_path, capsys):
    """The failure of the CoroNetGAN-75% CycleGAN generator (docs/export.md), made on purpose: one quiet output
    channel of the last upsampling convolution and one offset channel, both undone by the InstanceNorm that
    follows, so the float generator is fine but one int8 scale cannot serve both. The equalisation rescales them
    (exactly) and the file is all int8 above the gate; without it (``--no-equalise``) the float selection is the
    last resort: that TRANSPOSE_CONV goes to float with float weights (no hybrid op: tflite-runtime 2.14 runs it)
    and the file is labelled mixed; with neither, the same export falls well below the gate."""
    run = tmp_path / "quiet"
    shutil.copytree(trained_runs["cyclegan"], run, ignore=shutil.ignore_patterns("export*"))
    state = torch.load(run / "generator.pt", weights_only=True)
    state["up2.weight"][:, 0] *= 0.03  # ConvTranspose2d weight: (in, out, k, k)
    state["up2.bias"][0] *= 0.03
    state["up2.bias"][1] += 8.0
    torch.save(state, run / "generator.pt")
    width = int(state["up2.weight"].shape[1])

    def int8_entry(out: Path) -> dict:
        return {e["dtype"]: e for e in json.loads((out / "manifest.json").read_text())["files"]}["int8"]

    assert export_main([str(run), "--dtype", "int8", "--out", str(tmp_path / "eq")]) == 0
    equalised = int8_entry(tmp_path / "eq")
    assert equalised["label"] == "int8" and equalised["float_selection"]["float_convolutions"] == 0
    up2 = [r for r in equalised["equalisation"]["instance_norm_inputs"] if r["conv"] == "up2"][0]
    assert up2["range_spread_before"] > 30 and up2["range_spread_after"] == pytest.approx(1.0, abs=1e-3)
    # MSE ranges under the norm: one per InstanceNorm-feeding convolution, kept only when measured better
    ranges = equalised["norm_input_ranges"]
    norm_candidates = [c for c in equalised["float_selection"]["candidates"] if c["feeds_instance_norm"]]
    assert len(ranges["tensors"]) == len(norm_candidates) > 0
    # every other convolution is a candidate too, after them (the first and last of the ResNet generator)
    assert len(equalised["float_selection"]["candidates"]) == equalised["convolutions_total"]
    assert equalised["float_selection"]["candidates"][:len(norm_candidates)] == norm_candidates
    assert all(0 < t["factor"] <= 1 and t["error_ratio"] <= 1 for t in ranges["tensors"])
    if ranges["validation_psnr_db"]:
        assert ranges["kept"] == (ranges["validation_psnr_db"]["clipped"] > ranges["validation_psnr_db"]["calibrated"])

    assert export_main([str(run), "--dtype", "int8", "--no-equalise", "--out", str(tmp_path / "on")]) == 0
    assert "last resort: 1 of" in capsys.readouterr().out
    on = int8_entry(tmp_path / "on")
    off = export_run(run, ExportOptions(dtypes=("int8",), out_dir=tmp_path / "off", int8_target_db=0,
                                        int8_equalise=False, accept_gate_failure=True))
    off = {e["dtype"]: e for e in off["files"]}["int8"]
    sel = on["float_selection"]
    top = sel["candidates"][0]
    assert top["op"] == "TRANSPOSE_CONV" and top["shape"][-1] == width and top["sensitivity"] > 2
    assert set(top["nodes"]) <= set(on["float_nodes"]) and sel["float_convolutions"] >= 1
    # chosen by measurement: one round over every candidate, each trial file measured on pooled and worst input
    assert sel["trajectory"][1]["added"] == top["nodes"][0] and sel["quantizations"] >= 1 + len(sel["candidates"])
    assert sel["trajectory"][1]["validation_worst_db"] <= sel["trajectory"][1]["validation_psnr_db"]
    assert on["label"] == f"int8 (mixed: {sel['float_convolutions']} of {on['convolutions_total']} convolutions float)"
    assert on["hybrid_ops"] == [] and on["runtimes"]["tflite-runtime"]["ok"]
    assert on["int8_share"]["macs"] < 1.0 and "TRANSPOSE_CONV" in on["float_ops"]
    assert any(n.startswith("TRANSPOSE_CONV ") for n in on["float_op_names"])  # the float convolution, by name
    assert _psnr(on) >= 30 and _psnr(equalised) > _psnr(off) + 5 and _psnr(on) > _psnr(off) + 5
    assert off["float_nodes"] == [] and off["float_selection"]["trajectory"] == []
    assert export_main([str(run), "--int8-target-db", "-1"]) == 2
    assert "--int8-target-db -1.0; expected dB in [0, 100]" in capsys.readouterr().err


@pytest.mark.slow
def test_fid_change_of_int8(trained_runs, tmp_path, monkeypatch, capsys):
    """--fid N: FID/KID of the fp32 and int8 outputs against compress.evaluate's real set, on the same inputs.

    The fp32 figure must be exactly what ``python -m compress.evaluate`` reports for the same N (same protocol),
    and the int8 figure is measured on the int8 file's own outputs (not on the fp32 ones)."""
    from compress.evaluate.core import EvalSettings, evaluate_run

    monkeypatch.setenv("CORONETGAN_FID_CACHE", str(tmp_path / "fidcache"))
    run = tmp_path / "run"
    shutil.copytree(trained_runs["pix2pix"], run, ignore=shutil.ignore_patterns("export"))
    assert export_main([str(run), "--dtype", "int8", "--fid", "8", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "FID change of int8 (8 outputs vs 8 real" in printed and "-> int8" in printed
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    fid = {e["dtype"]: e for e in manifest["files"]}["int8"]["fid"]
    # pix2pix protocol: the real B images paired with the same 8 inputs (val split of the subset)
    assert fid["n_fake"] == 8 and fid["n_real"] == 8 and "val A images" in fid["protocol"]
    for key in ("fid_fp32", "fid_int8"):
        assert math.isfinite(fid[key]) and fid[key] > 0
    assert fid["fid_delta"] == pytest.approx(fid["fid_int8"] - fid["fid_fp32"])
    assert fid["fid_int8"] != fid["fid_fp32"]  # the int8 outputs differ from fp32 (PSNR ~35-50 dB, not inf)
    ev = evaluate_run(run, EvalSettings(num_samples=8), progress=False)
    assert ev["fid"] == pytest.approx(fid["fid_fp32"], rel=1e-6)
    assert manifest["options"]["fid_count"] == 8


def test_fid_option_rejects_one_image(trained_runs, capsys):
    assert export_main([str(trained_runs["dcgan"]), "--fid", "1"]) == 2
    assert "--fid 1; expected 0 (off) or a number of images >= 2" in capsys.readouterr().err


def test_benchmark_measures_the_files(exported, trained_runs):
    """The benchmark's measurement of an export folder (whatever code wrote it): labels, int8 share, size against
    fp32, PSNR on the held-out inputs and the unseen photos, latency in both runtimes; and its table."""
    from export.benchmark import measure_files, to_markdown

    run = trained_runs["cyclegan"]
    rows = measure_files(run / "export", run, runs=20)
    assert [r["dtype"] for r in rows] == ["fp32", "fp16", "int8"]
    by = {r["dtype"]: r for r in rows}
    assert by["int8"]["label"] == "int8" and by["int8"]["int8_share"] == {"weight_bytes": 1.0, "macs": 1.0,
                                                                           "macs_int16_activations": 0.0}
    assert by["fp32"]["size_ratio_to_fp32"] == 1.0 and by["int8"]["size_ratio_to_fp32"] < 0.5
    manifest = {e["dtype"]: e for e in exported["cyclegan"]["files"]}
    assert by["int8"]["heldout"]["psnr_db"] == pytest.approx(manifest["int8"]["psnr_db"])
    assert by["int8"]["unseen"]["count"] == 15
    tr = manifest["int8"]["runtimes"]["tflite-runtime"]["unseen"]  # the photos in the second runtime too
    assert by["int8"]["unseen_tflite_runtime"]["psnr_db"] == pytest.approx(tr["psnr_db"])
    for r in rows:
        assert all(r["latency"][rt]["median_ms"] > 0 for rt in ("litert", "tflite-runtime"))
    table = to_markdown([{**r, "family": "cyclegan", "model": "unpruned", "code": "after", "source": str(run),
                          "params": 1, "macs": 1, "input_shape": [1, 64, 64, 3], "generator": {}} for r in rows])
    assert "| cyclegan | unpruned | after | int8 |" in table and "100% / 100%" in table
    u, t = by["int8"]["unseen"], by["int8"]["unseen_tflite_runtime"]
    assert (f"| {u['psnr_db']:.1f} / {u['min_image_psnr_db']:.1f} | {t['psnr_db']:.1f} / "
            f"{t['min_image_psnr_db']:.1f} |") in table


@pytest.mark.slow
def test_benchmark_pair_of_runs(trained_runs, tmp_path, capsys):
    """export.benchmark on two given run folders, exported by this checkout and by a "before" checkout (here the
    same one): every dtype per model and code, measured on the files (PSNR held-out, size, int8 share, host
    latency in LiteRT and tflite-runtime, median of >= 20 runs) with the source of each row in the table."""
    from export.benchmark import REPO, main as bench_main

    run = trained_runs["dcgan"]
    md = tmp_path / "table.md"
    assert bench_main(["--out", str(tmp_path / "b"), "--families", "dcgan", "--runs", "20", "--before", str(REPO),
                       "--pair", f"dcgan:{run}:{run}", "--md", str(md)]) == 0
    rows = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert [(r["model"], r["code"], r["dtype"]) for r in rows] == [
        (m, c, d) for m in ("unpruned", "pruned75") for c in ("before", "after") for d in ("fp32", "fp16", "int8")]
    for r in rows:
        assert r["source"] == str(run) and r["unseen"] is None
        for rt in ("litert", "tflite-runtime"):
            assert r["latency"][rt]["runs"] == 20 and r["latency"][rt]["median_ms"] > 0
    int8 = [r for r in rows if r["dtype"] == "int8"]
    assert all(r["label"] == "int8" and r["int8_share"]["macs"] == 1.0 for r in int8)
    table = md.read_text()
    assert f"- dcgan pruned75: `{run}`" in table and "| dcgan | unpruned | before | int8 |" in table
    assert (tmp_path / "b" / "dcgan_pruned75" / "before" / "manifest.json").is_file()  # the runs are only read
    assert bench_main(["--out", str(tmp_path / "c"), "--pair", f"dcgan:{tmp_path / 'nope'}:{run}"]) == 2
    assert "nope/generator.pt is missing" in capsys.readouterr().err


def test_a_stopped_benchmark_goes_on_from_its_finished_cells(tmp_path, monkeypatch):
    """export.benchmark keeps each finished cell (family x model x code) in OUT/benchmark.partial.json: after a
    Ctrl-C the same command exports and measures only the cells not done, and gives the rows of an unstopped
    run in the same order; other settings, or --restart, measure everything again. The export and measurement
    are stand-ins here (test_benchmark_pair_of_runs runs the real ones)."""
    from export import benchmark

    runs = {}
    for name in ("a", "b"):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        (runs[name] / "architecture.json").write_text(json.dumps({"generator": {"name": name}}))
        (runs[name] / "generator.pt").write_bytes(b"")   # what --pair checks; the stand-ins never read it
    done: list[str] = []
    stop_at = {"n": 3}

    def export_with(code, run, out, fid_count=0):
        if len(done) + 1 == stop_at["n"]:
            raise KeyboardInterrupt
        done.append(f"{run.name}/{out.name}")
        return {"files": [{"dtype": "fp32"}], "macs": 1, "params": 2, "input": {"shape": [1, 8, 8, 3]}}

    monkeypatch.setattr(benchmark, "export_with", export_with)
    monkeypatch.setattr(benchmark, "measure_files",
                        lambda out, run, n, threads: [{"dtype": "fp32", "label": f"{run.name}/{out.name}"}])
    monkeypatch.setattr(benchmark, "to_markdown", lambda rows: "table")
    argv = ["--out", str(tmp_path / "b"), "--families", "dcgan", "--runs", "20", "--before", str(benchmark.REPO),
            "--pair", f"dcgan:{runs['a']}:{runs['b']}"]
    with pytest.raises(KeyboardInterrupt):
        benchmark.main(argv)
    partial = json.loads((tmp_path / "b" / "benchmark.partial.json").read_text())
    assert sorted(partial["cells"]) == ["dcgan/unpruned/after", "dcgan/unpruned/before"]
    assert done == ["a/before", "a/after"]

    stop_at["n"] = 0
    assert benchmark.main(argv) == 0
    assert done == ["a/before", "a/after", "b/before", "b/after"]          # only the two cells not done
    rows = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert [r["label"] for r in rows] == ["a/before", "a/after", "b/before", "b/after"]
    assert not (tmp_path / "b" / "benchmark.partial.json").exists()

    # a stopped run of other settings is not mixed in; --restart ignores the kept cells
    stop_at["n"] = len(done) + 2
    with pytest.raises(KeyboardInterrupt):
        benchmark.main(argv)
    stop_at["n"] = 0
    assert benchmark.main(argv + ["--runs", "21"]) == 0 and len(done) == 4 + 1 + 4
    stop_at["n"] = len(done) + 2
    with pytest.raises(KeyboardInterrupt):
        benchmark.main(argv)
    stop_at["n"] = 0
    assert benchmark.main(argv + ["--restart"]) == 0 and len(done) == 9 + 1 + 4


def test_extra_float_ops(trained_runs, tmp_path, capsys):
    """--extra-float-ops adds TFLite ops to robust int8's float deny-list (recorded in the manifest). Convolutions
    kept in float get float weights (no hybrid op, so tflite-runtime 2.14 runs the file) and the label says how
    many, in the manifest and in the CLI's table."""
    out = tmp_path / "x"
    assert export_main([str(trained_runs["cyclegan"]), "--dtype", "int8", "--out", str(out),
                        "--extra-float-ops", "TRANSPOSE_CONV,STRIDED_SLICE"]) == 0
    entry = {e["dtype"]: e for e in json.loads((out / "manifest.json").read_text())["files"]}["int8"]
    assert {"TRANSPOSE_CONV", "STRIDED_SLICE"} <= set(entry["float_denylist"])
    assert {"TRANSPOSE_CONV", "STRIDED_SLICE", "MEAN"} <= set(entry["float_ops"]) and _psnr(entry) >= 30
    label = f"int8 (mixed: 2 of {entry['convolutions_total']} convolutions float)"
    assert entry["label"] == label and entry["hybrid_ops"] == [] and entry["runtimes"]["tflite-runtime"]["ok"]
    assert 0 < entry["int8_share"]["weight_bytes"] < 1 and 0 < entry["int8_share"]["macs"] < 1
    assert label in capsys.readouterr().out
    # the bench reads the label from the file itself: its tables show it in the dtype column
    from bench.models import parse_model_args
    from bench.tables import _row_cells

    spec = {s.dtype: s for s in parse_model_args([str(out)])}["int8"]
    assert spec.dtype_label == label
    from bench.rows import _base_row

    assert _row_cells(dict(_base_row(spec, "host", "host"), flags=[]))[1] == label
    assert export_main([str(trained_runs["cyclegan"]), "--extra-float-ops", "conv;rm"]) == 2
    assert "is not a TFLite builtin op name" in capsys.readouterr().err
    assert export_main([str(trained_runs["cyclegan"]), "--int8-mode", "naive", "--extra-float-ops", "TANH"]) == 2


def test_per_tensor_int8_weights(exported, trained_runs, tmp_path, capsys):
    """``--int8-weights per-tensor``: one scale per convolution, read back from the file (``weight_scales``), a
    smaller file than the per-channel one (fewer quantization parameters) that both runtimes run; the option is
    recorded, and a value outside the choices is bad input."""
    out = tmp_path / "pt"
    status = export_main([str(trained_runs["pix2pix"]), "--dtype", "fp32,int8", "--out", str(out),
                          "--int8-weights", "per-tensor", "--accept-gate-failure"])
    assert status == 0
    man = json.loads((out / "manifest.json").read_text())
    pt = {e["dtype"]: e for e in man["files"]}["int8"]
    pc = {e["dtype"]: e for e in exported["pix2pix"]["files"]}["int8"]
    assert man["options"]["int8_weights"] == "per-tensor" and pt["weight_quantization"].startswith("per-tensor")
    assert (pt["weight_scales"], pc["weight_scales"]) == ("per-tensor", "per-channel")
    assert pt["file_bytes"]["quantization_parameters"] < pc["file_bytes"]["quantization_parameters"]
    assert pt["size_bytes"] < pc["size_bytes"] and pt["runtimes"]["tflite-runtime"]["ok"]
    assert pt["label"] == "int8" and pt["hybrid_ops"] == []
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        export_main([str(trained_runs["pix2pix"]), "--int8-weights", "per-row"])
    assert exc.value.code == 2 and "--int8-weights" in capsys.readouterr().err


def test_keep_tensor_names(exported, trained_runs, tmp_path):
    """``--keep-tensor-names``: every tensor keeps its name in the file (the manifest then lists none), the other
    compaction steps still run, and the int8 composition names its float ops the same way as the default export."""
    out = tmp_path / "named"
    assert export_main([str(trained_runs["cyclegan"]), "--dtype", "fp32,int8", "--out", str(out),
                        "--keep-tensor-names"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["options"]["keep_tensor_names"] is True
    default = {e["dtype"]: e for e in exported["cyclegan"]["files"]}
    for e in man["files"]:
        if e["dtype"] == "onnx":
            continue
        assert "tensor_names" not in e and e["compaction"]["tensor_names_kept"] is True
        assert e["compaction"]["bytes_after"] <= e["compaction"]["bytes_before"]
        assert e["size_bytes"] > default[e["dtype"]]["size_bytes"]   # the names are the difference
        named = [t["name"] for t in make_interpreter(out / e["path"], 1).get_tensor_details()]
        # the same conversion: as many named tensors as the default export's manifest lists (it keeps them there)
        assert sum(map(bool, named)) == sum(map(bool, default[e["dtype"]]["tensor_names"])) > 2
    q = {e["dtype"]: e for e in man["files"]}["int8"]
    assert [n.split(" ", 1)[0] for n in q["float_op_names"]] == [
        n.split(" ", 1)[0] for n in default["int8"]["float_op_names"]]
    assert all(n.split(" ", 1)[1] for n in q["float_op_names"] + default["int8"]["float_op_names"])


def test_weight_scale_choice_rules():
    """``--int8-weights auto`` (export.int8_file.choose_weight_scales): per-tensor only when per-channel misses the
    size gate above its parameter count, and per-tensor meets it, reaches the int8 gates (30 dB pooled, 27 dB
    worst input) on validation and keeps no more convolutions in float."""
    from export.int8_file import choose_weight_scales
    from export.parity import INT8_SIZE_RATIO, SIZE_GATE_MIN_PARAMS

    def fig(ratio, pooled=31.0, worst=28.0, floats=0):
        return {"size_ratio_to_fp32": ratio, "validation": {"validation_psnr_db": pooled, "validation_worst_db": worst,
                                                            "float_convolutions": floats}}

    big, miss, meet = SIZE_GATE_MIN_PARAMS + 1, INT8_SIZE_RATIO + 0.02, INT8_SIZE_RATIO - 0.001
    assert choose_weight_scales({"per-channel": fig(miss), "per-tensor": fig(meet)}, big)[0] == "per-tensor"
    assert choose_weight_scales({"per-channel": fig(miss), "per-tensor": fig(INT8_SIZE_RATIO, 30.0, 27.0)},
                                big)[0] == "per-tensor"   # the gates' own bounds pass
    for candidates, params, why in [
            ({"per-channel": fig(miss), "per-tensor": fig(meet)}, SIZE_GATE_MIN_PARAMS, "does not apply"),
            ({"per-channel": fig(meet), "per-tensor": fig(meet - 0.01)}, big, "meets the size gate"),
            ({"per-channel": fig(miss)}, big, "not made"),
            ({"per-channel": fig(miss), "per-tensor": fig(INT8_SIZE_RATIO + 0.001)}, big, "misses it too"),
            ({"per-channel": fig(miss), "per-tensor": fig(meet, pooled=29.99)}, big, "misses the int8 gates"),
            ({"per-channel": fig(miss), "per-tensor": fig(meet, worst=26.99)}, big, "misses the int8 gates"),
            ({"per-channel": fig(miss), "per-tensor": fig(meet, floats=1)}, big, "in float"),
            ({"per-channel": fig(miss), "per-tensor": {**fig(meet), "validation": None}}, big, "not measured")]:
        chosen, reason = choose_weight_scales(candidates, params)
        assert chosen == "per-channel" and why in reason, (candidates, params, reason)


def test_concatenation_matching_choice_rules():
    """export.int8_file.choose_concatenation_matching: a file that meets the int8 gates on validation (30 dB pooled,
    27 dB worst input) first; between two that do, fewer convolutions in float, then the larger of the two files'
    smaller margins to the gates; between two that miss, the larger margin; a tie keeps the unmatched one."""
    from export.int8_file import gate_margin

    def fig(pooled, worst, floats=0):
        return {"validation_psnr_db": pooled, "validation_worst_db": worst, "float_convolutions": floats}

    assert gate_margin(fig(35.0, 28.0)) == pytest.approx(1.0) and gate_margin(fig(29.0, 40.0)) == pytest.approx(-1.0)
    # the session-14 pix2pix 75% generator's kind of case: the worst input decides
    assert choose_concatenation_matching({"matched": fig(33.0, 31.0), "unmatched": fig(36.0, 28.0)})
    assert not choose_concatenation_matching({"matched": fig(31.0, 29.0), "unmatched": fig(33.0, 30.5)})
    assert not choose_concatenation_matching({"matched": fig(34.0, 30.0), "unmatched": fig(34.0, 30.0)})
    assert choose_concatenation_matching({"matched": fig(30.5, 27.5), "unmatched": fig(45.0, 44.0, floats=1)})
    assert not choose_concatenation_matching({"matched": fig(45.0, 44.0, floats=2), "unmatched": fig(30.5, 27.5, 1)})
    # the 95%-pruned pix2pix's case (session 16): all-int8 misses, one float convolution meets the gates
    assert choose_concatenation_matching({"matched": fig(38.9, 35.6, floats=1), "unmatched": fig(28.7, 27.4)})
    assert choose_concatenation_matching({"matched": fig(28.0, 26.0), "unmatched": fig(29.0, 20.0, floats=1)})
    assert not choose_concatenation_matching({"matched": fig(26.0, 20.0), "unmatched": fig(29.5, 26.5, floats=2)})
    assert choose_concatenation_matching({"matched": fig(29.5, 26.5, floats=3), "unmatched": fig(29.0, 26.0)})


def test_validation_inputs_take_both_kinds_of_a_representative_set():
    """export.int8_file.validation_inputs: a choice between int8 files sees the target-domain photos of a pix2pix
    representative set as well as its edge maps (half each), and only the first inputs otherwise."""
    from types import SimpleNamespace

    from export.int8_file import validation_inputs

    cal = np.arange(130, dtype=np.float32).reshape(130, 1, 1, 1)   # input i holds the value i
    pix2pix = SimpleNamespace(calibration=cal, description={"target_domain_count": 100})
    v = validation_inputs(pix2pix)
    assert (v.source_count, v.target_count, v.drawn_count) == (8, 8, 0)
    assert v.inputs.ravel().tolist() == list(range(8)) + list(range(30, 38))
    v = validation_inputs(SimpleNamespace(calibration=cal[:33], description={"target_domain_count": 3}))
    assert (v.source_count, v.target_count) == (13, 3) and v.inputs.ravel().tolist() == list(range(13)) + [30, 31, 32]
    for description in ({}, {"target_domain_count": 0}, {"kind": "noise"}):
        v = validation_inputs(SimpleNamespace(calibration=cal, description=description), ("edges",))
        assert (v.source_count, v.target_count, v.drawn_count) == (16, 0, 0)
        assert v.inputs.ravel().tolist() == list(range(16))


def test_validation_inputs_draw_the_unseen_kinds_from_the_training_photos():
    """pix2pix's validation inputs add Canny edge maps drawn (export.photos' recipe) from every target-domain
    training photo of its representative set, the kind of input its unseen gates measure; no other family draws
    any, and nothing is drawn from a gate photo (the drawn maps are those of the training photos, pixel for
    pixel)."""
    from types import SimpleNamespace

    from export.int8_file import choice_inputs, drawn_validation_kinds, validation_inputs
    from export.photos import drawn_inputs

    assert drawn_validation_kinds("pix2pix") == ("edges",)
    assert drawn_validation_kinds("cyclegan") == drawn_validation_kinds("dcgan") == drawn_validation_kinds(None) == ()
    yy, xx = np.mgrid[0:32, 0:32]
    disc = np.where((yy - 16) ** 2 + (xx - 16) ** 2 < 100, 1.0, -1.0).astype(np.float32)   # a white disc on black
    photos = np.stack([np.stack([np.roll(disc, 4 * i, axis=1)] * 3) for i in range(10)])
    cal = np.concatenate([np.zeros((30, 3, 32, 32), np.float32), photos])
    sets = SimpleNamespace(calibration=cal, description={"target_domain_count": 10})
    v = validation_inputs(sets, drawn_validation_kinds("pix2pix"))
    assert (v.source_count, v.target_count, v.drawn_count, v.drawn_kinds) == (8, 8, 10, ("edges",))
    assert v.inputs.shape == (26, 3, 32, 32) and v.inputs.dtype == np.float32
    drawn = v.inputs[16:]
    np.testing.assert_array_equal(drawn, drawn_inputs("edges", photos))
    # black edges on white: white at the disc's centre and far from it, darker along its rim (row 6 of photo 0)
    assert drawn[0, :, 16, 16].min() == drawn[0, :, 16, 30].min() == 1.0 and drawn[0, :, 6, 16].max() < 0.95
    assert (drawn == 1.0).mean() > 0.6 and all(d.min() < 0.95 for d in drawn)
    assert v.to_json() == {"validation_count": 26, "validation_target_domain_count": 8,
                           "validation_drawn_count": 10, "validation_drawn_kinds": ["edges"]}
    calibration, _ = choice_inputs(sets)   # the drawn maps are no representative inputs: nothing more held back
    assert calibration is None or len(calibration) == len(cal) - 16
    with pytest.raises(ValueError, match="photos"):
        drawn_inputs("photos", photos)


def test_choice_inputs_hold_the_validation_inputs_back():
    """export.int8_file.choice_inputs: the files a choice is measured on are calibrated on every representative
    input except the validation inputs, and bias-corrected on the source inputs except those; with too few source
    inputs left the choices calibrate on everything (None)."""
    from types import SimpleNamespace

    from export.int8_file import choice_inputs, validation_inputs

    cal = np.arange(130, dtype=np.float32).reshape(130, 1, 1, 1)   # input i holds the value i; 30 source inputs
    for description in ({"target_domain_count": 100}, {}):
        sets = SimpleNamespace(calibration=cal, description=description)
        calibration, correction = choice_inputs(sets)
        validation = set(validation_inputs(sets).inputs.ravel().tolist())
        assert set(calibration.ravel().tolist()) == set(range(130)) - validation
        source = 30 if description else 130
        assert correction.ravel().tolist() == [v for v in range(source) if v not in validation]
    assert choice_inputs(SimpleNamespace(calibration=cal[:23], description={"target_domain_count": 0})) == (None,
                                                                                                            None)
    # 8 edge maps are validation inputs, 15 source inputs would be left: too few
    assert choice_inputs(SimpleNamespace(calibration=cal[:33], description={"target_domain_count": 10})) == (None,
                                                                                                            None)


def test_auto_weight_scales_make_and_keep_per_tensor(exported, trained_runs, tmp_path, monkeypatch):
    """When the per-channel file misses the size gate, ``auto`` makes the per-tensor file too and installs it; the
    size it judged is the installed file's. (The tiny CycleGAN meets the real gate, so the test moves the gate, as
    the choice sees it, just below its per-channel file's ratio, and lowers the parameter count; the export's own
    gates are unchanged.)"""
    import export.int8_file as int8_file

    per_channel_ratio = {e["dtype"]: e for e in exported["cyclegan"]["files"]}["int8"]["size_ratio_to_fp32"]
    monkeypatch.setattr(int8_file, "INT8_SIZE_RATIO", per_channel_ratio - 0.002)
    monkeypatch.setattr(int8_file, "SIZE_GATE_MIN_PARAMS", 0)
    out = tmp_path / "auto"
    man = export_run(trained_runs["cyclegan"], ExportOptions(dtypes="fp32,int8", out_dir=out))
    q = {e["dtype"]: e for e in man["files"]}["int8"]
    choice = q["weight_scales_choice"]
    assert man["options"]["int8_weights"] == "auto"
    assert set(choice["candidates"]) == {"per-channel", "per-tensor"}
    pc, pt = choice["candidates"]["per-channel"], choice["candidates"]["per-tensor"]
    assert choice["chosen"] == q["weight_scales"] == "per-tensor" and q["weight_quantization"].startswith("per-tensor")
    assert pt["size_ratio_to_fp32"] <= per_channel_ratio - 0.002 < pc["size_ratio_to_fp32"]
    assert q["size_ratio_to_fp32"] == pytest.approx(pt["size_ratio_to_fp32"], abs=1e-12)
    assert pt["validation"]["validation_psnr_db"] >= 30 and pt["validation"]["validation_worst_db"] >= 27
    assert pc["validation"]["float_convolutions"] == pt["validation"]["float_convolutions"] == 0
    assert q["label"] == "int8" and man["gates_passed"]


def test_int16_activations_make_a_labelled_16x8_file(exported, trained_runs, tmp_path, capsys):
    """``--int8-activations int16``: the int8 file is a 16x8 file (int8 weights, int16 activations,
    :mod:`quantize.int16x8`), labelled so in the manifest, the CLI and the bench tables, with int16 I/O over [-1, 1],
    nothing in float, both runtimes running it and the gates met at least as well as by the int8 file; the GPU check
    says the delegate cannot take it. uint8 I/O cannot go with it (exit 2)."""
    out = tmp_path / "x16"
    assert export_main([str(trained_runs["pix2pix"]), "--dtype", "fp32,int8", "--out", str(out),
                        "--int8-activations", "int16"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    q = {e["dtype"]: e for e in man["files"]}["int8"]
    label = "int8 (16x8: int16 activations)"
    assert man["options"]["int8_activations"] == "int16" and man["gates_passed"]
    assert q["label"] == label and q["precision"] == "int8 weights, int16 activations (16x8)"
    assert q["activations_choice"]["chosen"] == "int16x8" and q["int8_io"] == "int16"
    assert q["int8_share"]["macs_int16_activations"] == 1.0 and q["int8_share"]["weight_bytes"] == 1.0
    assert q["float_op_names"] == [] and q["hybrid_ops"] == [] and q["convolutions_float"] == 0
    assert q["input"]["dtype"] == "int16" and q["input"]["value_range"][1] == pytest.approx(1.0, rel=1e-4)
    assert q["gpu_delegate"]["gpu_ready"] is False and q["gpu_delegate"]["int16_activations"] > 0
    assert all(r["ok"] for r in q["runtimes"].values()) and set(q["runtimes"]) == {"litert", "tflite-runtime"}
    default = {e["dtype"]: e for e in exported["pix2pix"]["files"]}["int8"]
    assert _psnr(q) >= _psnr(default) and q["unseen"]["min_image_psnr_db"] >= default["unseen"]["min_image_psnr_db"]
    printed = capsys.readouterr().out
    assert label in printed and "no GPU delegate" in printed
    from bench.models import parse_model_args

    assert {s.dtype: s for s in parse_model_args([str(out)])}["int8"].dtype_label == label
    # the default export measured its int8 file against the targets and never made a 16x8 one
    assert default["activations_choice"]["mode"] == "auto" and default["activations_choice"]["chosen"] == "int8"
    assert export_main([str(trained_runs["pix2pix"]), "--int8-activations", "int16", "--int8-io", "uint8"]) == 2
    assert "--int8-activations int16 with --int8-io uint8" in capsys.readouterr().err


def _gate_photo_folder(folder: Path) -> Path:
    """The export's own unseen photos (export.photos.PHOTOS) copied into a folder, as a user would hand them over."""
    from importlib import resources
    from export.photos import PHOTOS

    folder.mkdir()
    for name in PHOTOS:
        with resources.as_file(resources.files("skimage") / "data" / name) as src:
            shutil.copy(src, folder / name)
    return folder


@pytest.mark.parametrize("family", ["pix2pix", "cyclegan"])
def test_check_photos_on_the_gate_photos_gives_the_exports_unseen_figures(exported, trained_runs, tmp_path, family,
                                                                          capsys):
    """The same photos through the user's-photos command give the manifest's unseen figures, file by file and
    runtime by runtime: one recipe, one measurement."""
    from export.check_photos import check_photos, main as check_main
    from export.photos import PHOTOS

    folder = _gate_photo_folder(tmp_path / "photos")
    report = check_photos(trained_runs[family], [folder])
    manifest = json.loads((trained_runs[family] / "export" / "manifest.json").read_text())
    kinds = {"pix2pix": 2, "cyclegan": 1}[family]
    assert report["photos"]["count"] == kinds * len(PHOTOS)
    by_path = {e["path"]: e for e in manifest["files"]}
    assert [f["path"] for f in report["files"]] == [e["path"] for e in manifest["files"] if e["dtype"] != "onnx"]
    for f in report["files"]:
        entry = by_path[f["path"]]
        for rt, r in f["runtimes"].items():
            expected = entry["unseen"] if rt == "litert" else entry["runtimes"][rt]["unseen"]
            assert r["ok"] and r["worst_image"] == expected["worst_image"]
            assert _psnr(r) == pytest.approx(_psnr(expected), abs=1e-6)
            assert float(r["min_image_psnr_db"]) == pytest.approx(float(expected["min_image_psnr_db"]), abs=1e-6)
            assert len(r["per_image_psnr_db"]) == kinds * len(PHOTOS)
            assert min(map(float, r["per_image_psnr_db"].values())) == pytest.approx(float(r["min_image_psnr_db"]))
    out = tmp_path / "figures.json"
    status = check_main([str(trained_runs[family]), "--photos", str(folder), "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == (1 if report["gate_failures"] else 0)
    assert json.loads(out.read_text())["files"][0]["runtimes"]["litert"]["psnr_db"] == \
        report["files"][0]["runtimes"]["litert"]["psnr_db"]
    assert "generator_int8.tflite" in printed and "lowest:" in printed


def test_check_photos_fails_loudly_and_refuses_a_foreign_export(exported, trained_runs, tmp_path, monkeypatch, capsys):
    from export.check_photos import main as check_main
    from export.parity import GATES_DB

    folder = _gate_photo_folder(tmp_path / "photos")
    run = trained_runs["pix2pix"]
    monkeypatch.setitem(GATES_DB, "int8", 99.0)  # a gate no int8 file meets: the command must say so and exit 1
    assert check_main([str(run), "--photos", str(folder)]) == 1
    assert "gates MISSED on your photos: generator_int8.tflite" in capsys.readouterr().out
    monkeypatch.undo()
    # an export whose file changed after it was written, and one made from other weights: bad input, exit 2
    copy = _copy_run(run, tmp_path / "run")
    shutil.copytree(run / "export", copy / "export")
    (copy / "export" / "generator_fp16.tflite").write_bytes(b"changed")
    assert check_main([str(copy), "--photos", str(folder)]) == 2
    assert "generator_fp16.tflite: missing or changed" in capsys.readouterr().err
    shutil.copy(run / "export" / "generator_fp16.tflite", copy / "export" / "generator_fp16.tflite")
    manifest = json.loads((copy / "export" / "manifest.json").read_text())
    del manifest["input"]
    (copy / "export" / "manifest.json").write_text(json.dumps(manifest))
    assert check_main([str(copy), "--photos", str(folder)]) == 2
    assert "no 'family' and 'input.onnx_shape'" in capsys.readouterr().err
    generator = torch.load(copy / "generator.pt", weights_only=True)
    first = next(iter(generator))
    generator[first] = generator[first] + 1.0
    torch.save(generator, copy / "generator.pt")
    assert check_main([str(copy), "--photos", str(folder)]) == 2
    assert "made from another generator.pt" in capsys.readouterr().err
    # DCGAN's input is noise: nothing to measure on photos
    assert check_main([str(trained_runs["dcgan"]), "--photos", str(folder)]) == 2
    assert "noise vector" in capsys.readouterr().err
