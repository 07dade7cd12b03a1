"""Proximal gradient step on the latent vectors and the channel masks it produces.

Paper 3.2, eq. 5 (after DHP's ``proximal_operator``): after every optimizer update of the hypernetwork
the latent vectors take the proximal step of the L1 penalty lambda * ||z||_1, i.e. a soft threshold

    z <- sign(z) * max(|z| - lambda * lr, 0)

with lr the current learning rate of the latent vectors and lambda the regularisation factor
(0.5 in the paper, 4.1.2). Entries driven to (near) zero mark channels to remove.

Floor (DHP's ``proximal_operator`` and ``remain_channels``): every latent vector keeps at least a floor of
channels, ``max(min_channels, ceil(min_fraction * c))`` (DHP: 4 channels, or a fraction ``remain_percentage``).
DHP skips the soft threshold of a vector once no more than its floor of entries stand at or above tau; we do
the same, and when one step would take a vector from above its floor to below it (one step can push several
entries under tau at once), its floor largest entries (by |z| before the step) stop at tau instead of going
under it. No latent vector ever collapses to zeros, so the guard below never has to choose among ties.

Mask (DHP): keep channel j when |z_j| >= tau (5e-3); when fewer than k entries pass (k = the floor), keep the
k largest instead (a fallback only: the floor of the proximal step keeps k entries at or above tau).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

#: Regularisation factor lambda of eq. 5 (paper 4.1.2).
REGULARIZATION = 0.5
#: Mask threshold tau on |z| (DHP default).
MASK_THRESHOLD = 5e-3
#: Channels every layer keeps at least (DHP default).
MIN_CHANNELS = 4


def channel_floor(channels: int, min_channels: int = MIN_CHANNELS, min_fraction: float = 0.0) -> int:
    """Channels a latent vector of ``channels`` entries keeps at least: max(min_channels, ceil(min_fraction *
    channels)), at most ``channels`` (DHP ``remain_channels``: 4, or ``int(c * remain_percentage)``; rounded up
    here, so a vector never keeps less than the fraction asked for)."""
    return min(channels, max(min_channels, math.ceil(min_fraction * channels - 1e-9), 1))


@torch.no_grad()
def proximal_step(latent_vectors: Iterable[torch.Tensor], regularization: float, lr: float,
                  threshold: float = 0.0, floors: Iterable[int] | None = None) -> None:
    """Soft-threshold every latent vector in place: z <- sign(z) * max(|z| - regularization * lr, 0) (eq. 5).

    Args:
        latent_vectors: 1-D tensors (c,) updated in place.
        regularization: lambda (>= 0; the caller's config checks it: a negative one would grow the entries).
        lr: current learning rate of the latent vectors (> 0).
        threshold: tau of the masks; with ``floors``, the level the floor's entries never go under.
        floors: per vector, the channels it keeps at least (:func:`channel_floor`); None: no floor (plain eq. 5).
            A vector with no more than its floor of entries at or above ``threshold`` is skipped (DHP); one that
            would fall below its floor keeps its floor largest entries at ``threshold`` or above, and one that
            the optimizer step took below it has its floor largest entries raised to ``threshold`` (projection
            onto the floor; signs kept).
    """
    shrink = regularization * lr
    vectors = list(latent_vectors)
    floor_list = list(floors) if floors is not None else [0] * len(vectors)
    mags = [z.abs() for z in vectors]
    pending = []                                       # (z, |z|, floor, shrunk |z|) of the vectors eq. 5 moves
    for z, mag, floor, above in zip(vectors, mags, floor_list, mask_counts([mag >= threshold for mag in mags])):
        if floor and above < floor:
            # the optimizer step (not eq. 5) took entries under tau: project back onto the floor, so that the
            # masks keep the same channels (the floor largest) without the guard ever choosing among ties
            order = torch.sort(mag, descending=True, stable=True).indices[:floor]
            lifted = torch.clamp(mag[order], min=threshold)
            z[order] = torch.where(z[order] < 0, -lifted, lifted)
            continue
        if floor and above == floor:
            continue                                   # DHP: the vector is at its floor already
        pending.append((z, mag, floor, torch.clamp(mag - shrink, min=0.0)))
    kept_after = iter(mask_counts([new >= threshold for _, _, floor, new in pending if floor]))
    for z, mag, floor, new in pending:
        if floor and next(kept_after) < floor:
            order = torch.sort(mag, descending=True, stable=True).indices[:floor]
            new[order] = torch.clamp(new[order], min=threshold)
        z.copy_(torch.sign(z) * new)


def mask_counts(tensors: list[torch.Tensor]) -> list[int]:
    """The sum of each tensor (the True entries of a boolean mask (c,)) as ints, read back in one transfer: on a
    GPU one synchronisation for all the latent vectors of a network instead of one each."""
    if not tensors:
        return []
    return [int(v) for v in torch.stack([t.sum() for t in tensors]).tolist()]


def channel_masks(latent_vectors: Sequence[torch.Tensor], threshold: float = MASK_THRESHOLD,
                  min_channels: Sequence[int] | None = None) -> list[torch.Tensor]:
    """:func:`channel_mask` of every latent vector (``min_channels``: one per vector, default
    :data:`MIN_CHANNELS`), with the counts read back in one transfer. Returns boolean masks (c,)."""
    mins = list(min_channels) if min_channels is not None else [MIN_CHANNELS] * len(latent_vectors)
    mags = [z.detach().abs() for z in latent_vectors]
    keeps = [mag >= threshold for mag in mags]
    out = []
    for mag, keep, count, mc in zip(mags, keeps, mask_counts(keeps), mins):
        k = min(max(mc, 1), mag.numel())
        if count < k:
            # The guard keeps exactly the k largest entries. (A threshold of min(tau, k-th largest) would keep
            # *every* entry of a layer whose latent vector the proximal step has driven entirely to zero.)
            keep = torch.zeros_like(keep)
            keep[torch.topk(mag, k).indices] = True
        out.append(keep)
    return out


def channel_mask(z: torch.Tensor, threshold: float = MASK_THRESHOLD, min_channels: int = MIN_CHANNELS) -> torch.Tensor:
    """Boolean mask (c,) of the channels a latent vector keeps.

    Keeps every entry with |z_j| >= threshold; if fewer than k = min(min_channels, c) pass, exactly the k
    largest (the guard), also when the whole vector is zero.
    """
    return channel_masks([z], threshold, [min_channels])[0]
