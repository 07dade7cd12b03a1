"""``make export DTYPE=int8`` as typed (issue 16, items 4 and 5): from a project folder whose ``runs/`` holds a
finished pix2pix run, it exports the newest run (the compressed generator and its original at the export size),
lists only the int8 files, records pix2pix in ``pipeline.json``; run again, it prints one ``export skipped
(unchanged)`` line per generator and no ``wrote ...manifest.json`` line.

``PY`` names this interpreter (there is no .venv in a test checkout), ``SIZE`` keeps the images small and
``PIPELINE_ARGS`` the calibration short; everything else is the command line as typed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from release_fixtures import synthetic_run

REPO = Path(__file__).resolve().parents[1]


def _make(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "export", *args,
                           f"PY={sys.executable}", "SIZE=64",
                           "PIPELINE_ARGS=--export-arg=--calibration-count=4 --export-arg=--heldout-count=2"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_stage_targets_pass_no_makefile_defaults_of_the_run():
    r = subprocess.run(["make", "-n", "--no-print-directory", "-f", str(REPO / "Makefile"), "export", "DTYPE=int8", "PY=python"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == (
        "python -m bench.pipeline --dtype int8 --device sm8450 --input-size 256 --original-weights init "
        "--release-dir release   export --latest runs")


@pytest.mark.slow
def test_make_export_dtype_int8_as_typed(tmp_path):
    older = synthetic_run(tmp_path / "runs" / "older", "cyclegan")
    run = synthetic_run(tmp_path / "runs" / "p2p", "pix2pix", data=tmp_path / "data")
    os.utime(older / "generator.pt", (1, 1))  # p2p is the newest finished run
    rel = run.relative_to(tmp_path)  # as make prints it
    first = _make(tmp_path, "DTYPE=int8")
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout.splitlines()
    listed = [line.split()[0] for line in out if line.startswith("generator")]
    assert listed == ["generator_int8.tflite", "generator_int8.tflite"], first.stdout  # compressed, original
    assert [line for line in out if line.startswith("wrote ") and line.endswith("manifest.json")] == [
        f"wrote {rel / 'export' / 'manifest.json'}", f"wrote {rel / 'original' / 'export' / 'manifest.json'}"]
    assert not (older / "export").exists()
    man = json.loads((run / "export" / "manifest.json").read_text())
    assert [e["dtype"] for e in man["files"]] == ["onnx", "int8"] and man["image_size_hw"] == [64, 64]
    assert man["input"]["shape"] == [1, 64, 64, 3] and man["training_input_shape"] == [1, 3, 32, 32]
    rec = json.loads((run / "pipeline.json").read_text())
    assert (rec["pipeline"]["model"], rec["pipeline"]["target"]) == ("pix2pix", 0.5)

    again = _make(tmp_path, "DTYPE=int8")
    assert again.returncode == 0, again.stdout + again.stderr
    out = again.stdout.splitlines()
    skipped = [line for line in out if line.startswith("export skipped (unchanged): ")]
    assert skipped == [
        f"export skipped (unchanged): {rel / 'export' / 'manifest.json'} holds generator_int8.tflite of this run "
        "and these options (--force re-exports)",
        f"export skipped (unchanged): {rel / 'original' / 'export' / 'manifest.json'} holds generator_int8.tflite "
        "of this run and these options (--force re-exports)"]
    assert not [line for line in out if line.startswith(("wrote", "generator", "file "))], again.stdout
    assert "== export: skipped" in again.stdout
    # stderr: the two exports' own step lines only ("up to date: skipped"), no warning and no error
    assert [ln.split(" INFO coronetgan.export: ", 1)[1] for ln in again.stderr.splitlines()] == [
        f"export of {rel} is up to date ({rel / 'export' / 'manifest.json'}): skipped",
        f"export of {rel / 'original'} is up to date ({rel / 'original' / 'export' / 'manifest.json'}): skipped"]

    # files installed earlier with --accept-gate-failure (as `make pipeline` does) that missed a gate: unchanged,
    # so nothing is converted, but `make export` alone fails loudly (export exits 1, make 2) and changes nothing
    manifest = run / "export" / "manifest.json"
    int8 = next(e for e in man["files"] if e["dtype"] == "int8")
    int8["psnr_db"] = 21.0  # the recorded figure: the skip re-draws the gates from it
    man["gate_failures"] = ["generator_int8.tflite: PSNR 21.00 dB on the held-out inputs < gate 30 dB"]
    man.update(gates_passed=False, gate_failures_accepted=True)
    manifest.write_text(json.dumps(man))
    before = {p.name: p.read_bytes() for p in (run / "export").iterdir()}
    third = _make(tmp_path, "DTYPE=int8")
    assert third.returncode == 2 and "export] Error 1" in third.stderr, third.stdout + third.stderr
    assert "missed its gate(s)" in third.stdout + third.stderr and "PSNR 21.00 dB" in third.stdout + third.stderr
    assert {p.name: p.read_bytes() for p in (run / "export").iterdir()} == before
