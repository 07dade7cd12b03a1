"""Percentiles of timing lists, shared by the latency tables and the LiteRT timing of the host and virtual runs."""
from __future__ import annotations

import math


def percentile(sorted_vals: list[float], q: float) -> float:
    """Percentile ``q`` ∈ [0, 100] of an ascending list, interpolated linearly between the closest ranks
    (numpy's default ``linear`` method); NaN for an empty list. Same unit as the values."""
    if not sorted_vals:
        return math.nan
    k = (len(sorted_vals) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)
