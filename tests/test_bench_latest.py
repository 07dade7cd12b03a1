"""``python bench/run_adb.py --device sm8450`` as typed: the newest finished run's export, its bench folder, and
one line without a traceback when no phone is attached (issue 16 item 4, bench half)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench_adb_fixtures import FAST, REPO, PrivateAdbServer, report, tiny_models  # noqa: F401
from compress.io import sha256_file

SCRIPT = str(REPO / "bench" / "run_adb.py")


def _run(folder: Path, label: str, models: dict | None, age_s: float) -> Path:
    """A tiny finished compress run ``runs/<label>`` (exported when ``models`` is given), ``age_s`` old."""
    run = folder / "runs" / label
    run.mkdir(parents=True)
    (run / "generator.pt").write_bytes(b"tiny")
    (run / "architecture.json").write_text("{}")
    if models:
        (run / "export").mkdir()
        files = []
        for dtype, src in models.items():
            dest = run / "export" / f"generator_{dtype}.tflite"
            shutil.copy(src, dest)
            files.append({"path": dest.name, "dtype": dtype, "sha256": sha256_file(dest)})
        (run / "export" / "manifest.json").write_text(json.dumps({"model": label, "files": files}))
    t = time.time() - age_s
    os.utime(run / "generator.pt", (t, t))
    return run


@pytest.fixture
def runs_folder(tmp_path, tiny_models):
    _run(tmp_path, "older", {"fp32": tiny_models["unpruned"]["fp32"]}, 600)
    _run(tmp_path, "newest", {"fp32": tiny_models["pruned"]["fp32"], "int8": tiny_models["pruned"]["int8"]}, 60)
    return tmp_path


@pytest.fixture
def no_phone(tmp_path):
    """Environment of a private adb server with no device attached (never the user's server)."""
    srv = PrivateAdbServer().start()
    yield {**os.environ, "HOME": srv.home, "ANDROID_ADB_SERVER_PORT": str(srv.port)}, srv.port
    srv.stop()


def test_as_typed_without_a_phone_says_so_in_one_line(runs_folder, no_phone):
    env, port = no_phone
    r = subprocess.run([sys.executable, SCRIPT, "--device", "sm8450"], cwd=runs_folder, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr == (f"error: --device sm8450: no phone is attached (the adb server on 127.0.0.1:{port} lists no "
                        "device); connect a SM8450 (Snapdragon 8 Gen 1) with USB debugging on, or measure without a "
                        "phone: --virtual (a simulated SM8450 on this machine's CPU) or --device host\n")
    assert r.stdout == "" and not (runs_folder / "runs" / "newest" / "bench").exists()


def test_as_typed_benches_the_newest_run_into_its_bench_folder(runs_folder):
    r = subprocess.run([sys.executable, SCRIPT, "--device", "host", *FAST], cwd=runs_folder, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    rep = report(runs_folder / "runs" / "newest" / "bench" / "host")
    assert [(row["model"], row["dtype"], row["status"]) for row in rep["rows"]] == [("newest", "fp32", "ok"),
                                                                                   ("newest", "int8", "ok")]
    assert "models: runs/newest/export/manifest.json; tables: runs/newest/bench/host" in r.stderr


def test_as_typed_names_what_is_missing(tmp_path, tiny_models):
    r = subprocess.run([sys.executable, SCRIPT, "--device", "host"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stderr == (
        f"error: --models not given and there is no runs/ folder in {tmp_path}: run from the project folder that "
        "holds runs/, or pass --models MANIFEST.json|FILE.tflite --out DIR\n")
    _run(tmp_path, "exported", {"fp32": tiny_models["pruned"]["fp32"]}, 600)
    _run(tmp_path, "fresh", None, 60)
    r = subprocess.run([sys.executable, SCRIPT, "--device", "host"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stderr == (
        "error: --models not given: the newest finished run runs/fresh has no export manifest "
        "(runs/fresh/export/manifest.json); export it first (python -m export runs/fresh), or pass --models "
        "MANIFEST.json|FILE.tflite --out DIR\n")
    r = subprocess.run([sys.executable, SCRIPT, "--device", "host", "--models", str(tiny_models["pruned"]["fp32"])],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr == ("error: --out: required with --models (the folder for "
                                              "latency.{md,csv,json,png})\n")
