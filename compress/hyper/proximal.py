"""Proximal gradient step on the latent vectors and the channel masks it produces.

Paper 3.2, eq. 5 (after DHP's ``proximal_operator``): after every optimizer update of the hypernetwork
the latent vectors take the proximal step of the L1 penalty lambda * ||z||_1, i.e. a soft threshold

    z <- sign(z) * max(|z| - lambda * lr, 0)

with lr the current learning rate of the latent vectors and lambda the regularisation factor
(0.5 in the paper, 4.1.2). Entries driven to (near) zero mark channels to remove.

Mask (DHP): keep channel j when |z_j| >= tau (5e-3); when fewer than k entries pass (k = a minimum channel
count, DHP: 4), keep the k largest instead, so that no layer dies.
"""
from __future__ import annotations

from typing import Iterable

import torch

#: Regularisation factor lambda of eq. 5 (paper 4.1.2).
REGULARIZATION = 0.5
#: Mask threshold tau on |z| (DHP default).
MASK_THRESHOLD = 5e-3
#: Channels every layer keeps at least (DHP default).
MIN_CHANNELS = 4


@torch.no_grad()
def proximal_step(latent_vectors: Iterable[torch.Tensor], regularization: float, lr: float) -> None:
    """Soft-threshold every latent vector in place: z <- sign(z) * max(|z| - regularization * lr, 0) (eq. 5).

    Args:
        latent_vectors: 1-D tensors (c,) updated in place.
        regularization: lambda (>= 0).
        lr: current learning rate of the latent vectors (> 0).
    """
    shrink = regularization * lr
    for z in latent_vectors:
        z.copy_(torch.sign(z) * torch.clamp(z.abs() - shrink, min=0.0))


def channel_mask(z: torch.Tensor, threshold: float = MASK_THRESHOLD, min_channels: int = MIN_CHANNELS) -> torch.Tensor:
    """Boolean mask (c,) of the channels a latent vector keeps.

    Keeps every entry with |z_j| >= threshold; if fewer than k = min(min_channels, c) pass, exactly the k
    largest (the guard), also when the whole vector is zero.
    """
    mag = z.detach().abs()
    keep = mag >= threshold
    k = min(max(min_channels, 1), mag.numel())
    if int(keep.sum()) < k:
        # The guard keeps exactly the k largest entries. (A threshold of min(tau, k-th largest) would keep
        # *every* entry of a layer whose latent vector the proximal step has driven entirely to zero.)
        keep = torch.zeros_like(keep)
        keep[torch.topk(mag, k).indices] = True
    return keep
