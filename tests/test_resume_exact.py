"""Resume gives the result of the uninterrupted run (issue 14 item 6): a run killed with kill -9 during the search
or during the converging stage and resumed ends with the same masks, MACs and (to float tolerance) weights as a
run of the same seed that was never interrupted, and its metrics.jsonl has every step once. The converging stage
trains with the int8 simulation (``--qat-steps``), whose ranges the checkpoint carries."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from compress.trainer import load_checkpoint

REPO = Path(__file__).resolve().parents[1]

# CycleGAN: random crops and flips, a random B image per item, image pools (Python's RNG), two extra networks
ARGS = ["--model", "cyclegan", "--preset", "small", "--dataset", "horse2zebra", "--target", "0.5",
        "--image-size", "32", "--ngf", "8", "--generator", "n_blocks=2", "--discriminator", "ndf=8",
        "--max-train-images", "12", "--latent-lr", "0.05", "--steps", "44", "--search-steps", "30",
        "--check-interval", "2", "--checkpoint-interval", "4", "--sample-interval", "1000", "--device", "cpu",
        "--seed", "3",
        # the whole converging stage simulates int8 (compress/qat.py): its ranges come back from the checkpoint
        "--qat-steps", "44"]


@pytest.fixture(scope="module")
def env(shared_data, tmp_path_factory) -> dict:
    # one scan cache for the module: the dataset is decoded by the first run only
    cache = tmp_path_factory.mktemp("scan-cache")
    return {**os.environ, "CORONETGAN_DATA_MIRROR": str(shared_data), "PYTHONPATH": str(REPO),
            "CORONETGAN_SCAN_CACHE": str(cache)}


def _compress(run: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compress", *ARGS, "--run-dir", str(run), *extra], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)


def _kill_when(run: Path, env: dict, stage: str, min_step: int) -> dict:
    """Start the run, kill -9 it once its checkpoint is at ``stage`` step >= ``min_step``; return that checkpoint."""
    proc = subprocess.Popen([sys.executable, "-m", "compress", *ARGS, "--run-dir", str(run)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.is_file():
                try:
                    state = load_checkpoint(ckpt)
                except Exception:  # noqa: BLE001 - replaced while we read it: read again
                    state = None
                if state is not None and state["stage"] == stage and state["step"] >= min_step:
                    break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (run / "generator.pt").exists(), "the run finished before it could be killed"
    return load_checkpoint(ckpt)


def _result(run: Path) -> tuple[dict, dict, dict]:
    report = json.loads((run / "compression_report.json").read_text())
    arch = json.loads((run / "architecture.json").read_text())
    weights = torch.load(run / "generator.pt", weights_only=True)
    return report, arch, weights


@pytest.fixture(scope="module")
def uninterrupted(env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    proc = _compress(tmp / "run", env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


@pytest.mark.slow
@pytest.mark.parametrize("stage, min_step", [("search", 6), ("converge", 4)])
def test_killed_and_resumed_run_equals_the_uninterrupted_run(uninterrupted, stage, min_step, env, tmp_path):
    run = tmp_path / "run"
    saved = _kill_when(run, env, stage, min_step)
    assert saved["stage"] == stage
    if stage == "converge":   # killed inside the simulated stage, with the ranges of its calibration
        assert torch.isfinite(saved["qat"]["ranges"]).all()
    proc = subprocess.run([sys.executable, "-m", "compress", "--resume", "--run-dir", str(run)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed the {'search' if stage == 'search' else 'converging stage'} at step {saved['step']}" in proc.stderr
    # the lock file of the killed process was taken over
    assert "no longer running" in (run / "log.txt").read_text()

    ref_report, ref_arch, ref_weights = _result(uninterrupted)
    report, arch, weights = _result(run)
    assert arch["generator"]["channels"] == ref_arch["generator"]["channels"]          # identical masks
    assert report["pruned"]["macs"] == ref_report["pruned"]["macs"]
    assert report["achieved_macs_reduction"] == ref_report["achieved_macs_reduction"]
    assert report["search"]["steps"] == ref_report["search"]["steps"]
    assert report["budget"]["qat_steps"] == report["budget"]["converge_steps_done"] > 0   # all of it simulated
    assert weights.keys() == ref_weights.keys()
    for k, v in ref_weights.items():
        torch.testing.assert_close(weights[k], v, rtol=1e-5, atol=1e-6, msg=k)

    def steps(path: Path) -> list[tuple[str, int]]:
        return [(r["stage"], r["step"]) for r in map(json.loads, path.read_text().splitlines())]

    logged = steps(run / "metrics.jsonl")
    assert logged == steps(uninterrupted / "metrics.jsonl")        # every logged step once, none twice
    assert len(set(logged)) == len(logged)
