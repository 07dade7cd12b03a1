"""Sample image grids (PNG) of a run: rows of input / output (/ target) images."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from compress.io import atomic_path


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [-1, 1] -> (N, H, W, 3) uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def save_grid(rows: Sequence[torch.Tensor], path: str | Path, max_columns: int = 8, pad: int = 2) -> Path:
    """Write a grid PNG: one row per tensor in ``rows`` (each (N, 3, H, W) in [-1, 1], same H, W), at most
    ``max_columns`` images per row, ``pad`` white pixels between images. Written atomically."""
    arrays = [to_uint8(r[:max_columns]) for r in rows]
    n = min(len(a) for a in arrays)
    h, w = arrays[0].shape[1:3]
    grid = np.full((len(arrays) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for i, a in enumerate(arrays):
        for j in range(n):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = a[j]
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return Path(path)
