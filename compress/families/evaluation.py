"""What the families' evaluation protocols return (:class:`EvalData`) and the image reading they share.

The protocols themselves are :meth:`compress.families.base.Family.evaluation_data`; the FID/KID around them
is :mod:`compress.evaluate`. Real and input images are read in eval mode: a bicubic resize to the run's image
size, no crop, no flip (the reference test-time preprocessing).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from compress.progress import shown


@dataclass
class EvalData:
    """What a family's evaluation compares.

    Attributes:
        inputs: generator inputs: (N, 3, S, S) float32 in [-1, 1] (images) or (N, nz, 1, 1) z for DCGAN.
        real: uint8 real images (M, S, S, 3) (or (M, 3, 32, 32) CIFAR), for the reference statistics.
        real_label: cache label of the real set, e.g. ``horse2zebra_trainB+testB_128px``.
        description: one line for the report: which inputs, which real set, how many.
        targets: pix2pix: the real B images paired with ``inputs`` (for the grid), else None.
        input_source, real_source: folders / files the images came from (for evaluation.json).
    """

    inputs: torch.Tensor
    real: np.ndarray
    real_label: str
    description: str
    targets: torch.Tensor | None = None
    input_source: str = ""
    real_source: str = ""


def limit(items: list, n: int | None) -> list:
    """The first ``n`` items (all of them when ``n`` is None)."""
    return items if n is None else items[:n]


def direction_of(arch: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """``AtoB``/``BtoA`` of a run: ``architecture.json``'s ``dataset.direction``, else ``config.json``'s."""
    return (arch.get("dataset") or {}).get("direction") or config.get("direction", "AtoB")


def load_resized(paths: list[Path], size: int, desc: str = "read images") -> np.ndarray:
    """Read image files as RGB, bicubic-resize each to ``size`` x ``size`` (the eval preprocessing of
    :mod:`compress.data.transforms`). Returns uint8 (N, size, size, 3).

    Raises:
        InputError: an unreadable file (named).
    """
    from compress.data import load_rgb

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", leave=False, disable=len(paths) < 50 or not shown())):
        img = load_rgb(p)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        out[i] = np.asarray(img, dtype=np.uint8)
    return out
