"""70x70 PatchGAN discriminator (pix2pix/CycleGAN ``NLayerDiscriminator``, n_layers 3, ndf 64).

Conv 4x4 stride 2 to ndf (bias, LeakyReLU 0.2, no norm), then ``n_layers - 1`` stride-2 convs and one
stride-1 conv doubling the width up to 8*ndf with norm and LeakyReLU, and a stride-1 4x4 conv to 1
channel of patch logits. For 256x256 inputs the output is (N, 1, 30, 30), each logit seeing a 70x70 patch.
Pix2Pix feeds cat(A, B) (6 channels) with BatchNorm; CycleGAN feeds 3 channels with InstanceNorm.

Latent vectors: ``l0 .. l{n_layers}``, ``input`` and ``output`` (1).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from compress.models.base import INPUT, OUTPUT, PrunableConv, PrunableNetwork, norm_layer


class PatchGANDiscriminator(PrunableNetwork):
    """PatchGAN: (N, in_channels, H, W) -> patch logits (N, 1, H/8 - 2, W/8 - 2) for n_layers 3."""

    role = "discriminator"

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                 family: str = "pix2pix", channels: Mapping[str, int] | None = None):
        super().__init__()
        self._remember(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm, family=family)
        self.family = family
        self.in_channels, self.ndf, self.n_layers = in_channels, ndf, n_layers
        self.channels = c = self._resolve_channels(channels)
        b = norm == "instance"
        names = self._names()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(n_layers + 2):
            stride = 2 if i < n_layers else 1
            last = i == n_layers + 1
            self.convs.append(nn.Conv2d(c[names[i]], c[names[i + 1]], 4, stride, 1, bias=(i == 0 or last or b)))
            self.norms.append(norm_layer(norm, c[names[i + 1]]) if 0 < i <= n_layers else nn.Identity())

    def _names(self) -> list[str]:
        return [INPUT] + [f"l{i}" for i in range(self.n_layers + 1)] + [OUTPUT]

    def default_channels(self) -> dict[str, int]:
        ch = {INPUT: self.in_channels, OUTPUT: 1}
        ch.update({f"l{i}": self.ndf * min(2 ** i, 8) for i in range(self.n_layers + 1)})
        return ch

    def prunable_convs(self) -> list[PrunableConv]:
        names = self._names()
        return [PrunableConv(f"convs.{i}", names[i + 1], (names[i],),
                             f"norms.{i}" if 0 < i <= self.n_layers else None) for i in range(self.n_layers + 2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(self.n_layers + 1):
            h = nn.functional.leaky_relu(self.norms[i](self.convs[i](h)), 0.2)
        return self.convs[-1](h)
