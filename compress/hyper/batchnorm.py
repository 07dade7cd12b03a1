"""BatchNorm running statistics recomputed for the network the masks leave (paper 3.3, materialisation).

During the search the masks change from one batch to the next (the proximal step removes channels, the centring
goes batch by batch near the target), and BatchNorm's running mean/variance are exponential averages over the
last ~10 batches (momentum 0.1): at the stop they mix networks with other masks. Before materialisation they
are recomputed as plain averages over real batches of the masked network, so the materialised generator starts
the converging stage (and is evaluated in eval mode) with the statistics of its own channels.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn


def batchnorm_layers(network: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``network`` that tracks running statistics."""
    return [m for m in network.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm_statistics(network: nn.Module, forward: Callable[[object], object],
                                   batches: Iterable[object]) -> int:
    """Reset the running statistics of every BatchNorm of ``network`` and recompute them as the cumulative
    average (``momentum=None``) over ``batches``, calling ``forward(batch)`` in train mode without gradients.

    Args:
        network: the module whose BatchNorm layers are recomputed (e.g. ``HyperNetwork.network``).
        forward: runs one batch through the network as the search does (e.g. the masked generator).
        batches: real batches (the training loader's).
    Returns:
        The number of batches used (0 when the network has no BatchNorm; nothing is run then).
    Raises:
        ValueError: BatchNorm layers but no batch.
    """
    layers = batchnorm_layers(network)
    if not layers:
        return 0
    modes = {m: m.training for m in network.modules()}
    momenta = {m: m.momentum for m in layers}
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    network.train()
    used = 0
    try:
        for batch in batches:
            forward(batch)
            used += 1
    finally:
        for m, mode in modes.items():
            m.train(mode)
        for m, momentum in momenta.items():
            m.momentum = momentum
    if used == 0:
        raise ValueError("recompute_batchnorm_statistics: no batch given")
    return used
