"""Materialisation: the masks of a :class:`HyperNetwork` become a plain pruned network (paper 3.3).

The weights are generated once by the hypernetwork (eqs. 1-4), every convolution is index-selected by the
masks of its output latent vector and of the concatenation of its input latent vectors, biases and norm
layers (affine parameters and running statistics) are sliced with the output mask, and the result is an
ordinary network of the same class built with the kept channel counts. The hypernetwork is discarded; the
converging stage trains the plain network with fresh optimizers.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from compress.hyper.network import HyperNetwork
from compress.models.base import PrunableNetwork


@torch.no_grad()
def materialize(hyper: HyperNetwork) -> PrunableNetwork:
    """Build the plain pruned network that computes what ``hyper(x, masked=True)`` computes.

    Returns:
        a new network of the wrapped network's class, ``channels`` = the kept channel counts, on the same
        device, in the wrapped network's train/eval mode.
    """
    net = hyper.network
    masks = hyper.masks()
    index = {n: torch.nonzero(m).flatten() for n, m in masks.items()}
    config = net.config()
    config["channels"] = {n: int(i.numel()) for n, i in index.items()}
    pruned = type(net)(**config).to(hyper.z_input.device)
    weights = hyper.generated_weights()
    src = dict(net.named_modules())
    dst = dict(pruned.named_modules())
    handled = set()
    for conv in hyper.convs:
        in_idx, offset = [], 0
        for n in conv.in_latents:
            in_idx.append(index[n] + offset)
            offset += net.channels[n]
        in_idx = torch.cat(in_idx)
        out_idx = index[conv.out_latent]
        w = weights[f"{conv.name}.weight"]
        transposed = isinstance(src[conv.name], nn.ConvTranspose2d)
        rows, cols = (in_idx, out_idx) if transposed else (out_idx, in_idx)
        dst[conv.name].weight.copy_(w.index_select(0, rows).index_select(1, cols))
        handled.add(f"{conv.name}.weight")
        if src[conv.name].bias is not None:
            dst[conv.name].bias.copy_(src[conv.name].bias.index_select(0, out_idx))
            handled.add(f"{conv.name}.bias")
        if conv.norm is not None:
            for key, t in src[conv.norm].state_dict().items():
                target = dst[conv.norm].state_dict()[key]
                target.copy_(t if t.dim() == 0 else t.index_select(0, out_idx))
                handled.add(f"{conv.norm}.{key}")
    # Anything else (non-prunable layers) has unchanged shapes: copy as is.
    pruned_state = pruned.state_dict()
    for key, t in net.state_dict().items():
        if key not in handled and key in pruned_state and pruned_state[key].shape == t.shape:
            pruned_state[key].copy_(t)
    pruned.train(net.training)
    return pruned


@torch.no_grad()
def materialization_gap_db(hyper: HyperNetwork, pruned: PrunableNetwork, inputs: torch.Tensor) -> float | None:
    """PSNR (dB) between the search network's output (masked, as searched) and the materialised network's output
    on ``inputs``, both in eval mode; images in [-1, 1], so the peak-to-peak range is 2 and
    PSNR = 10 log10(4 / MSE).

    Args:
        hyper: the search network just before materialisation.
        pruned: :func:`materialize` of it.
        inputs: generator inputs, e.g. real test images (N, 3, H, W) in [-1, 1] or z (N, nz, 1, 1).
    Returns:
        The PSNR in dB, or None when the outputs are bit-identical (infinite PSNR).
    """
    modes = (hyper.training, pruned.training)
    hyper.eval()
    pruned.eval()
    try:
        searched = hyper(inputs, masked=True).double()
        plain = pruned(inputs).double()
    finally:
        hyper.train(modes[0])
        pruned.train(modes[1])
    mse = float(torch.mean((searched - plain) ** 2))
    return None if mse == 0.0 else 10.0 * math.log10(4.0 / mse)
