"""Params and MACs accounting of any generator, unpruned or pruned.

Convention (the published one: GAN Compression's 56.8 G for the ResNet-9 CycleGAN generator, reproduced
exactly): a convolution costs ``output elements x (C_in / groups) x k_h x k_w`` multiply-accumulates, and a
ConvTranspose2d is taken at its **output** resolution with the same formula. Norms, activations, padding and
additions are not counted. With this rule the U-Net-256 generator has 54.41 M params / 18.15 G MACs (the
papers list 18.6 G: 2.5 % more, from a counting detail we have not identified) and the ResNet-9 generator
11.38 M params / 56.8 G MACs at 1x3x256x256. thop (ultralytics-thop) and torch's ``FlopCounterMode`` count a
transposed convolution at its *input* resolution (the arithmetic actually needed), which gives 6.05 G and
49.55 G: we keep the published convention so that our reductions compare with the papers' figures, and say so
in every report. tests/test_models.py checks every convolution against thop's rules (params equal; MACs equal
once thop's transposed convolutions are scaled to the output resolution).

``python -m compress.macs`` prints the table of the three reference generators.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn as nn

from compress.models.base import PrunableNetwork

CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


def count_params(module: nn.Module) -> int:
    """Number of parameters (norm affine parameters included; buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def conv_macs(layer: nn.Module, out_shape: Sequence[int]) -> int:
    """MACs of one Conv2d/ConvTranspose2d given its output shape (N, C_out, H_out, W_out), batch 1 per N."""
    kh, kw = layer.kernel_size
    n, c_out, h, w = out_shape
    return int(h * w * c_out * (layer.in_channels // layer.groups) * kh * kw)


@torch.no_grad()
def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of one forward pass at ``input_shape`` (batch 1 is assumed per sample: the count is per image).

    Runs a forward pass on zeros with hooks on every Conv2d/ConvTranspose2d/Linear. The module's
    train/eval mode is restored afterwards.
    """
    total = 0

    def hook(layer, _inp, out):
        nonlocal total
        if isinstance(layer, CONV_TYPES):
            total += conv_macs(layer, (1, *out.shape[1:]))
        elif isinstance(layer, nn.Linear):
            total += layer.in_features * layer.out_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (*CONV_TYPES, nn.Linear))]
    was_training = module.training
    module.eval()
    try:
        module(torch.zeros(1, *input_shape[1:]))
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return total


@dataclass(frozen=True)
class ConvCost:
    """MACs per (input channel x output channel) of one prunable convolution: H_out * W_out * k_h * k_w."""

    name: str
    out_latent: str
    in_latents: tuple[str, ...]
    per_channel_pair: int


class MacsModel:
    """Analytic MACs of a prunable network as a function of its per-latent channel counts.

    MACs(channels) = sum over prunable convs of H_out*W_out*k^2 * C_in * C_out (same convention as
    :func:`count_macs`). Built once from a forward pass of the full network; evaluating it for a set of
    masks costs microseconds, so the search can check its MACs reduction as often as it likes.
    """

    def __init__(self, network: PrunableNetwork, input_shape: Sequence[int]):
        modules = dict(network.named_modules())
        out_hw: dict[str, int] = {}
        hooks = [modules[c.name].register_forward_hook(
            lambda m, i, o, name=c.name: out_hw.__setitem__(name, o.shape[-1] * o.shape[-2]))
            for c in network.prunable_convs()]
        was_training = network.training
        network.eval()
        try:
            with torch.no_grad():
                network(torch.zeros(1, *input_shape[1:]))
        finally:
            network.train(was_training)
            for h in hooks:
                h.remove()
        self.costs = []
        for c in network.prunable_convs():
            layer = modules[c.name]
            kh, kw = layer.kernel_size
            self.costs.append(ConvCost(c.name, c.out_latent, c.in_latents, out_hw[c.name] * kh * kw))
        self.full_channels = dict(network.channels)
        self.full_macs = self(self.full_channels)

    def __call__(self, channels: Mapping[str, float]) -> int:
        """MACs for the given latent name -> channel count (counts may be tensors or floats)."""
        return int(sum(c.per_channel_pair * sum(channels[n] for n in c.in_latents) * channels[c.out_latent]
                       for c in self.costs))

    def per_layer(self, channels: Mapping[str, float]) -> dict[str, int]:
        """Prunable conv name -> its MACs for the given channel counts (they sum to ``self(channels)``)."""
        return {c.name: int(c.per_channel_pair * sum(channels[n] for n in c.in_latents) * channels[c.out_latent])
                for c in self.costs}

    def reduction(self, channels: Mapping[str, float]) -> float:
        """Fraction of the full network's MACs removed: 1 - MACs(channels) / MACs(full)."""
        return 1.0 - self(channels) / self.full_macs


def reference_table(image_size: int = 256) -> list[dict]:
    """Params and MACs of the three reference generators (paper settings) at 1x3xSxS (DCGAN: z of 100)."""
    from compress.families import generator_input_shape
    from compress.models import DCGANGenerator, ResnetGenerator, UNetGenerator

    rows = []
    for label, gen in (("Pix2Pix U-Net-256 (ngf 64)", UNetGenerator()),
                       ("CycleGAN ResNet-9 (ngf 64)", ResnetGenerator()),
                       ("DCGAN 32x32 (nz 100, ngf 64)", DCGANGenerator())):
        shape = generator_input_shape(gen, image_size)
        rows.append({"generator": label, "input": "x".join(map(str, shape)),
                     "params": count_params(gen), "macs": count_macs(gen, shape)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m compress.macs``: params and MACs of the reference generators at ``--image-size`` (pixels),
    printed as a table; exit 0."""
    parser = argparse.ArgumentParser(prog="python -m compress.macs",
                                     description="Params and MACs of the reference generators (ConvTranspose "
                                     "counted at its output resolution, the published convention).")
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args(argv)
    print("| generator | input | params (M) | MACs (G) |\n|---|---|---|---|")
    for r in reference_table(args.image_size):
        print(f"| {r['generator']} | {r['input']} | {r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.2f} |")
    return 0


if __name__ == "__main__":
    from compress.cli_errors import run_cli

    raise SystemExit(run_cli(main))
