"""Sample image grids (PNG) of a run: rows of input / output (/ target) images."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from compress.data.codec import float_to_uint8
from compress.io import atomic_path


def save_grid(rows: Sequence[torch.Tensor], path: str | Path, max_columns: int = 8, pad: int = 2) -> Path:
    """Write a grid PNG: one row per tensor in ``rows`` (each (N, 3, H, W) in [-1, 1], same H, W), at most
    ``max_columns`` images per row, ``pad`` white pixels between images. Written atomically."""
    arrays = [float_to_uint8(r[:max_columns].cpu()).numpy() for r in rows]
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
