"""compress.selection: the search's kept channels against the largest latent entries at initialisation."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compress.config import RunConfig
from compress.selection import overlap_with_init, search_selection
from compress.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def test_overlap_counts_the_kept_channels_that_started_largest():
    z = torch.tensor([3.0, -2.0, 0.1, 1.0])
    top = overlap_with_init(z, torch.tensor([True, True, False, False]))
    assert top == {"kept": 2, "original": 4, "init_overlap": 2, "chance_overlap": 1.0}
    assert overlap_with_init(z, torch.tensor([False, False, True, True]))["init_overlap"] == 0
    assert overlap_with_init(z, torch.tensor([True, False, True, False]))["init_overlap"] == 1
    with pytest.raises(ValueError, match="expected two"):
        overlap_with_init(z, torch.ones(3, dtype=torch.bool))


def test_rerun_reproduces_the_runs_own_selection(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("CORONETGAN_DATA_MIRROR", str(shared_data))
    cfg = RunConfig(model="dcgan", preset="small", dataset="cifar10", image_size=32, load_size=32, batch_size=16,
                    generator=dict(ngf=16), discriminator=dict(ndf=16), target=0.5, latent_lr=0.02,
                    regularization=1.0, check_interval=5, search_steps=300, converge_steps=2, seed=3,
                    sample_interval=1000, checkpoint_interval=1000, log_interval=5, device="cpu").validate()
    report = Trainer(cfg, tmp_path / "run").run()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    row = search_selection(config, seed=3)
    assert row["search_steps"] == report["search"]["steps"]
    assert {n: v["kept"] for n, v in row["layers"].items()} == \
        {n: v["kept"] for n, v in report["channels"].items() if n in row["layers"]}
    for v in row["layers"].values():
        assert 0 <= v["init_overlap"] <= v["kept"] <= v["original"]
    kept = sum(v["kept"] for v in row["layers"].values())
    assert row["init_overlap"] == pytest.approx(sum(v["init_overlap"] for v in row["layers"].values()) / kept)
    # chance: a random k of C channels shares k^2 / C with the top-k at init (hypergeometric mean), per kept channel
    assert row["chance_overlap"] == pytest.approx(sum(v["kept"] ** 2 / v["original"]
                                                      for v in row["layers"].values()) / kept)


def test_cli_names_a_missing_run_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "compress.selection", str(tmp_path / "nope")], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope' / 'config.json'} is missing; expected a run folder " \
                                  "written by `python -m compress`"


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00"])
def test_cli_names_a_corrupt_config(tmp_path, content):
    """compress.io.read_json, shared by the run-file readers: a corrupt or non-UTF-8 config.json is one line
    naming the file, exit 2, no traceback."""
    (tmp_path / "config.json").write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "compress.selection", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {tmp_path / 'config.json'} is not valid JSON (")
