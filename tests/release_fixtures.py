"""Synthetic compress run folders for the export-size, original and release tests (issue 16): no training, no
data mirror. A run holds what ``python -m compress`` leaves for the later stages -- ``generator.pt``,
``architecture.json`` (pointing at a folder of random images for calibration and the parity gates),
``config.json`` and ``compression_report.json`` -- with a generator whose first prunable latent vector is
halved, so that the original (the unpruned generator) has more MACs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from compress.artifacts import save_generator
from compress.families import get_family
from compress.macs import count_macs, count_params
from compress.models import FIXED_LATENTS

#: Small generators of each family (a few hundred kMACs at 32 x 32).
TINY = {"cyclegan": {"ngf": 4, "n_blocks": 1}, "pix2pix": {"ngf": 4, "num_downs": 5}, "dcgan": {"ngf": 4, "nz": 8}}


def image_folder(root: Path, count: int = 6, size: int = 48) -> Path:
    """``root/trainA`` and ``root/testA`` with ``count`` random RGB images each; returns ``root``."""
    rng = np.random.default_rng(0)
    for split in ("trainA", "testA"):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / split / f"{i}.png")
    return root


def synthetic_run(run: Path, family: str = "cyclegan", size: int = 32, data: Path | None = None) -> Path:
    """A finished run folder of ``family`` at ``size`` px (module docstring); images under ``data`` (default:
    ``run/../data``, created)."""
    fam = get_family(family)
    full = fam.generator(**TINY[family])
    channels = dict(full.channels)
    first = next(k for k in channels if k not in FIXED_LATENTS)
    channels[first] = max(1, channels[first] // 2)
    gen = fam.generator(**TINY[family], channels=channels)
    data = image_folder(data or run.parent / "data")
    save_generator(run, gen, size, {"name": "synthetic", "root": str(data), "source_dir": "trainA",
                                    "test_dir": "testA", "direction": "AtoB"})
    shape = fam.input_shape(gen, size)
    orig_macs, macs = count_macs(full, fam.input_shape(full, size)), count_macs(gen, shape)
    (run / "config.json").write_text(json.dumps({"model": family, "dataset": str(data), "target": 0.5,
                                                 "preset": "small", "image_size": size,
                                                 "generator": TINY[family]}))
    (run / "compression_report.json").write_text(json.dumps({
        "model": family, "dataset": str(data), "preset": "small", "input_shape": list(shape),
        "target_macs_reduction": 0.5, "achieved_macs_reduction": 1 - macs / orig_macs, "tolerance": 0.5,
        "target_reached": True, "original": {"macs": orig_macs, "params": count_params(full)},
        "pruned": {"macs": macs, "params": count_params(gen)}}))
    return run
