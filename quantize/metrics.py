"""PSNR (dB) of a generator output against a reference, over the generator's value range [-1, 1].

``PSNR = 10 log10(peak_to_peak**2 / MSE)`` with peak-to-peak 2 (the [-1, 1] range of the tanh output) and the MSE
pooled over every element given; identical outputs give ``inf``. Used by the float selection of robust int8
(:mod:`quantize.sensitivity`) and by the parity gates of the export.
"""
from __future__ import annotations

import math

import numpy as np

#: Peak-to-peak range of generator inputs/outputs ([-1, 1]).
PEAK_TO_PEAK = 2.0


def psnr_db(ref: np.ndarray, out: np.ndarray, peak_to_peak: float = PEAK_TO_PEAK) -> float:
    """PSNR (dB) of ``out`` against ``ref`` (same shape, any layout) for signals of range ``peak_to_peak``
    (module docstring). Returns ``math.inf`` when they are identical.

    Raises:
        ValueError: the shapes differ (broadcasting would average over a different set of values).
    """
    if np.shape(ref) != np.shape(out):
        raise ValueError(f"psnr_db: shapes {np.shape(ref)} and {np.shape(out)} differ")
    mse = float(np.mean((ref.astype(np.float64) - out.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak_to_peak ** 2 / mse)
