"""The prepared GPU check (scripts/gpu_check.py, ``make gpu-check``) rehearsed end to end on the CPU at tiny sizes,
and the data subset it carries (``make gpu-data``)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.py"


def _make_data(dest: Path, mirror: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--make-data", str(dest), "--mirror", str(mirror)],
                          cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def gpu_data(shared_data, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("carry") / "gpu_data"
    proc = _make_data(dest, shared_data)
    assert proc.returncode == 0, proc.stderr
    return dest


def test_the_data_subset_is_small_enough_to_carry(gpu_data, tmp_path):
    files = [p for p in gpu_data.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 16 * 2**20          # the device tool carries 64 MiB in all
    assert {p.name for p in gpu_data.iterdir()} == {"horse2zebra", "edges2shoes_subset", "cifar10_partial"}
    assert len(list((gpu_data / "horse2zebra" / "trainA").iterdir())) == 16
    with np.load(gpu_data / "cifar10_partial" / "cifar10_partial.npz") as z:
        assert z["x_train"].shape == (512, 32, 32, 3) and z["x_test"].shape == (64, 32, 32, 3)
    proc = _make_data(tmp_path / "x", tmp_path / "no-mirror")
    assert proc.returncode == 2 and "--mirror" in proc.stderr


@pytest.mark.slow     # three tiny compress runs with fp32 exports, the step-cost and memory sections: 3-4 min here
def test_the_gpu_check_runs_end_to_end_on_the_cpu(gpu_data, tmp_path):
    out = tmp_path / "gpu-check"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data", str(gpu_data), "--device", "cpu", "--tiny",
                           "--ddp", "never", "--budget-s", "3000", "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    sections = results["sections"]
    assert set(sections) == {"smoke_pix2pix", "smoke_cyclegan", "smoke_dcgan", "step_cost", "memory", "torchrun"}
    assert all(r["ok"] for r in sections.values()), {n: r.get("error") for n, r in sections.items()}
    for family in ("pix2pix", "cyclegan", "dcgan"):
        smoke = sections[f"smoke_{family}"]
        assert smoke["status"] == "reached" and abs(smoke["achieved"] - 0.5) <= 0.02
        assert smoke["export_gates_passed"] and {e["dtype"] for e in smoke["export_files"]} == {"onnx", "fp32"}
    assert sections["step_cost"]["rows"][0]["device"] == "cpu"
    assert [r["variant"] for r in sections["memory"]["rows"]] == ["plain", "search"]
    assert "skipped" in sections["torchrun"]
    md = (out / "results.md").read_text()
    assert "# GPU check (cpu, tiny sizes)" in md and "## Step cost" in md and "## Peak memory" in md


@pytest.mark.slow     # six tiny compress runs and a profiled tiny DCGAN: about a minute here
def test_the_profile_and_precision_sections_run_on_the_cpu(gpu_data, tmp_path):
    out = tmp_path / "gpu-profile"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data", str(gpu_data), "--device", "cpu", "--tiny",
                           "--sections", "profile,precision", "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sections = json.loads((out / "results.json").read_text())["sections"]
    assert set(sections) == {"profile_dcgan-small", "precision_pix2pix", "precision_cyclegan", "precision_dcgan"}
    prof = sections["profile_dcgan-small"]
    assert prof["search"]["wall_ms"] > 0 and prof["eq4"]["layers"] > 0
    for family in ("pix2pix", "cyclegan", "dcgan"):
        rec = sections[f"precision_{family}"]
        assert {rec[p]["status"] for p in ("bf16", "fp32")} == {"reached"}
    md = (out / "results.md").read_text()
    assert "## Search in bf16 against fp32" in md and "### dcgan-small on cpu" in md


def test_an_unknown_section_is_refused(gpu_data):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data", str(gpu_data), "--device", "cpu",
                           "--sections", "smoke,warp"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "--sections 'smoke,warp'" in proc.stderr and "Traceback" not in proc.stderr
