"""Pix2Pix U-Net generator (``unet_256``) with prunable widths.

Matches the public pix2pix definition (junyanz/pytorch-CycleGAN-and-pix2pix ``UnetGenerator``):
``num_downs`` stride-2 4x4 convolutions down to 1x1 (8 for 256x256), a mirrored path of 4x4 transposed
convolutions, skip concatenations ``cat([skip, up])``, BatchNorm (so no conv bias except the outermost
up-conv), LeakyReLU(0.2) going down, ReLU going up, dropout 0.5 in the ``num_downs - 5`` innermost
``ngf*8`` up blocks (kept at test time in the original code), tanh output. ngf 64: 54.41 M parameters.

Latent vectors: ``d0..d{n-1}`` (outputs of the down convolutions), ``u1..u{n-1}`` (outputs of the up
convolutions; ``u{n-1}`` is the innermost), ``input`` (3) and ``output`` (3). The up-conv ``u_i`` takes
``cat(d_i, u_{i+1})``; the innermost up-conv takes ``d_{n-1}``; the outermost (``up0``) makes ``output``.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from compress.errors import InputError
from compress.models.base import INPUT, OUTPUT, PrunableConv, PrunableNetwork, norm_layer


class UNetGenerator(PrunableNetwork):
    """U-Net generator. Input (N, in_channels, H, W) in [-1, 1], H and W divisible by 2**num_downs;
    output (N, out_channels, H, W) in [-1, 1].

    Args:
        in_channels, out_channels: image channels (3 and 3 for pix2pix).
        ngf: width of the first layer (64 in pix2pix).
        num_downs: number of downsamplings (8 for 256x256 inputs, ``unet_256``). At least 5.
        norm: "batch" (pix2pix default) or "instance".
        dropout: dropout probability of the inner ngf*8 up blocks (0.5 in pix2pix).
        channels: latent name -> channel count overriding the defaults (pruned networks).

    Raises:
        InputError: num_downs < 5 or bad channels.
    """

    family = "pix2pix"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, num_downs: int = 8,
                 norm: str = "batch", dropout: float = 0.5, channels: Mapping[str, int] | None = None):
        super().__init__()
        if num_downs < 5:
            raise InputError(f"num_downs={num_downs}; expected >= 5 (pix2pix U-Net)")
        self._remember(in_channels=in_channels, out_channels=out_channels, ngf=ngf, num_downs=num_downs,
                       norm=norm, dropout=dropout)
        self.in_channels, self.out_channels, self.ngf, self.num_downs = in_channels, out_channels, ngf, num_downs
        self.channels = self._resolve_channels(channels)
        c = self.channels
        use_bias = norm == "instance"
        n = num_downs
        self.down = nn.ModuleList()
        self.down_norm = nn.ModuleList()
        for i in range(n):
            cin = c[INPUT] if i == 0 else c[f"d{i-1}"]
            self.down.append(nn.Conv2d(cin, c[f"d{i}"], 4, 2, 1, bias=use_bias))
            has_norm = 0 < i < n - 1
            self.down_norm.append(norm_layer(norm, c[f"d{i}"]) if has_norm else nn.Identity())
        self.up = nn.ModuleList()
        self.up_norm = nn.ModuleList()
        self.up_dropout = nn.ModuleList()
        for i in range(n):
            out = OUTPUT if i == 0 else f"u{i}"
            cin = c[f"d{i}"] if i == n - 1 else c[f"d{i}"] + c[f"u{i+1}"]
            self.up.append(nn.ConvTranspose2d(cin, c[out], 4, 2, 1, bias=(i == 0) or use_bias))
            self.up_norm.append(norm_layer(norm, c[out]) if i > 0 else nn.Identity())
            self.up_dropout.append(nn.Dropout(dropout) if self._has_dropout(i, dropout) else nn.Identity())

    def _has_dropout(self, i: int, p: float) -> bool:
        # pix2pix adds num_downs-5 ngf*8 blocks with dropout directly outside the innermost block:
        # up-convs u_{n-2} .. u_{4}.
        return p > 0 and 4 <= i <= self.num_downs - 2

    def default_channels(self) -> dict[str, int]:
        ch = {INPUT: self.in_channels, OUTPUT: self.out_channels}
        for i in range(self.num_downs):
            ch[f"d{i}"] = self.ngf * min(2 ** i, 8)
        for i in range(1, self.num_downs):
            ch[f"u{i}"] = ch[f"d{i-1}"]
        return ch

    def prunable_convs(self) -> list[PrunableConv]:
        n = self.num_downs
        convs = [PrunableConv(f"down.{i}", f"d{i}", (INPUT,) if i == 0 else (f"d{i-1}",),
                              f"down_norm.{i}" if 0 < i < n - 1 else None) for i in range(n)]
        for i in reversed(range(n)):
            ins = (f"d{i}",) if i == n - 1 else (f"d{i}", f"u{i+1}")
            convs.append(PrunableConv(f"up.{i}", OUTPUT if i == 0 else f"u{i}", ins,
                                      f"up_norm.{i}" if i > 0 else None))
        return convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.num_downs
        skips = []
        h = x
        for i in range(n):
            if i > 0:
                h = nn.functional.leaky_relu(h, 0.2)
            h = self.down_norm[i](self.down[i](h))
            skips.append(h)
        for i in reversed(range(n)):
            if i < n - 1:
                h = torch.cat([skips[i], h], 1)
            h = self.up[i](nn.functional.relu(h))
            if i == 0:
                return torch.tanh(h)
            h = self.up_dropout[i](self.up_norm[i](h))
        raise AssertionError("unreachable")
