"""DCGAN generator and discriminator for 32x32 CIFAR-10 (Radford et al. 2016; nz 100, ngf = ndf = 64).

Generator: ConvTranspose 4x4 from z (N, nz, 1, 1) to 4x4 with ``4*ngf`` channels, then two stride-2
4x4 ConvTranspose (``2*ngf``, ``ngf``) with BatchNorm and ReLU, and a stride-2 ConvTranspose to 3
channels with tanh: (N, 3, 32, 32). This is the common 32x32 layout of the PyTorch DCGAN example
with one upsampling fewer than its 64x64 version.

Latent vectors: ``g0``, ``g1``, ``g2`` and the fixed ``input`` (nz) and ``output`` (3).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from compress.models.base import INPUT, OUTPUT, PrunableConv, PrunableNetwork


class DCGANGenerator(PrunableNetwork):
    """DCGAN generator: z (N, nz, 1, 1) or (N, nz) ~ N(0, 1) -> image (N, 3, 32, 32) in [-1, 1].

    Args:
        nz: noise dimension (100).
        ngf: base width (64); layers have 4*ngf, 2*ngf, ngf channels.
        out_channels: 3.
        channels: latent name -> channel count overriding the defaults (pruned networks).
    """

    family = "dcgan"

    def __init__(self, nz: int = 100, ngf: int = 64, out_channels: int = 3,
                 channels: Mapping[str, int] | None = None):
        super().__init__()
        self._remember(nz=nz, ngf=ngf, out_channels=out_channels)
        self.nz, self.ngf, self.out_channels = nz, ngf, out_channels
        self.channels = c = self._resolve_channels(channels)
        self.convs = nn.ModuleList([
            nn.ConvTranspose2d(c[INPUT], c["g0"], 4, 1, 0, bias=False),
            nn.ConvTranspose2d(c["g0"], c["g1"], 4, 2, 1, bias=False),
            nn.ConvTranspose2d(c["g1"], c["g2"], 4, 2, 1, bias=False),
            nn.ConvTranspose2d(c["g2"], c[OUTPUT], 4, 2, 1, bias=False),
        ])
        self.norms = nn.ModuleList([nn.BatchNorm2d(c["g0"]), nn.BatchNorm2d(c["g1"]), nn.BatchNorm2d(c["g2"])])

    def default_channels(self) -> dict[str, int]:
        g = self.ngf
        return {INPUT: self.nz, OUTPUT: self.out_channels, "g0": 4 * g, "g1": 2 * g, "g2": g}

    def prunable_convs(self) -> list[PrunableConv]:
        names = [INPUT, "g0", "g1", "g2", OUTPUT]
        return [PrunableConv(f"convs.{i}", names[i + 1], (names[i],), f"norms.{i}" if i < 3 else None)
                for i in range(4)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z.view(z.shape[0], -1, 1, 1)
        for i in range(3):
            h = torch.relu(self.norms[i](self.convs[i](h)))
        return torch.tanh(self.convs[3](h))


class DCGANDiscriminator(PrunableNetwork):
    """DCGAN discriminator: image (N, 3, 32, 32) -> logits (N,) (use with BCEWithLogitsLoss).

    Conv 4x4 stride 2 to ndf (LeakyReLU 0.2), to 2*ndf and 4*ndf with BatchNorm, then a 4x4 valid conv to 1.
    """

    family = "dcgan"
    role = "discriminator"

    def __init__(self, in_channels: int = 3, ndf: int = 64, channels: Mapping[str, int] | None = None):
        super().__init__()
        self._remember(in_channels=in_channels, ndf=ndf)
        self.in_channels, self.ndf = in_channels, ndf
        self.channels = c = self._resolve_channels(channels)
        self.convs = nn.ModuleList([
            nn.Conv2d(c[INPUT], c["l0"], 4, 2, 1, bias=False),
            nn.Conv2d(c["l0"], c["l1"], 4, 2, 1, bias=False),
            nn.Conv2d(c["l1"], c["l2"], 4, 2, 1, bias=False),
            nn.Conv2d(c["l2"], c[OUTPUT], 4, 1, 0, bias=False),
        ])
        self.norms = nn.ModuleList([nn.Identity(), nn.BatchNorm2d(c["l1"]), nn.BatchNorm2d(c["l2"])])

    def default_channels(self) -> dict[str, int]:
        d = self.ndf
        return {INPUT: self.in_channels, OUTPUT: 1, "l0": d, "l1": 2 * d, "l2": 4 * d}

    def prunable_convs(self) -> list[PrunableConv]:
        names = [INPUT, "l0", "l1", "l2", OUTPUT]
        return [PrunableConv(f"convs.{i}", names[i + 1], (names[i],), f"norms.{i}" if i in (1, 2) else None)
                for i in range(4)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(3):
            h = nn.functional.leaky_relu(self.norms[i](self.convs[i](h)), 0.2)
        return self.convs[3](h).view(-1)
