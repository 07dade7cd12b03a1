"""FID and KID between two image sets of any kind: folders, uint8 arrays, generator tensors or
:class:`~compress.evaluate.reference.Statistics`.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from compress.errors import InputError
from compress.evaluate.features import DEFAULT_BATCH_SIZE, features_from_tensor
from compress.evaluate.metrics import (KID_SEED, KID_SUBSET_SIZE, KID_SUBSETS, fid_from_features,
                                       fid_from_statistics, kid_from_features)
from compress.evaluate.reference import Statistics, reference_statistics


def _as_statistics(x, what: str, **kw) -> Statistics:
    if isinstance(x, Statistics):
        return x
    if isinstance(x, (str, os.PathLike, np.ndarray)):
        return reference_statistics(x, **kw)
    opts = {k: kw[k] for k in ("batch_size", "device", "protocol", "progress", "model_path") if k in kw}
    if isinstance(x, torch.Tensor):
        return Statistics.from_features(features_from_tensor(x, **opts), source=what)
    raise InputError(f"{what}: expected a folder, a uint8 array, a float tensor in [-1, 1] or Statistics, "
                     f"got {type(x).__name__}")


def fid_between(a, b, *, kid: bool = False, cache_dir=None, use_cache: bool = True,
                batch_size: int = DEFAULT_BATCH_SIZE, device=None, protocol: str = "pytorch-fid",
                progress: bool = True, kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
                kid_seed: int = KID_SEED, fid_method: str = "sqrtm", model_path=None) -> dict[str, Any]:
    """FID (and optionally KID) between two image sets.

    Args:
        a, b: each a folder, a uint8 array (both cached via
            :func:`~compress.evaluate.reference.reference_statistics`), a float tensor in [-1, 1] (N, 3, H, W)
            (not cached) or a :class:`~compress.evaluate.reference.Statistics`.
        kid: also compute KID (mean and std over subsets).
        fid_method: ``"sqrtm"`` (pytorch-fid, default) or ``"fast"``, see
            :func:`compress.evaluate.metrics.fid_from_features`.

    Returns:
        ``{"fid": float, "n_a": int, "n_b": int, "protocol": str, "fid_method": str}`` plus ``"kid_mean"``,
        ``"kid_std"``, ``"kid_subsets"``, ``"kid_subset_size"`` when ``kid``.

    Raises:
        InputError: as :func:`~compress.evaluate.reference.reference_statistics` /
            :func:`~compress.evaluate.features.features_from_tensor`.
    """
    kw = dict(cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size, device=device, protocol=protocol,
              progress=progress, model_path=model_path)
    sa = _as_statistics(a, "first set", **kw)
    sb = _as_statistics(b, "second set", **kw)
    if fid_method == "sqrtm":
        fid = fid_from_statistics(sa.mu, sa.sigma, sb.mu, sb.sigma)
    else:
        fid = fid_from_features(sa.features, sb.features, method=fid_method)
    out: dict[str, Any] = {"fid": fid, "n_a": sa.n, "n_b": sb.n, "protocol": protocol, "fid_method": fid_method}
    if kid:
        mean, std = kid_from_features(sa.features, sb.features, subsets=kid_subsets, subset_size=kid_subset_size,
                                      seed=kid_seed)
        out.update(kid_mean=mean, kid_std=std, kid_subsets=int(kid_subsets),
                   kid_subset_size=min(int(kid_subset_size), sa.n, sb.n))
    return out
