"""CycleGAN ResNet generator (``resnet_9blocks``) with prunable widths.

Matches the public CycleGAN definition (junyanz/pytorch-CycleGAN-and-pix2pix ``ResnetGenerator``):
reflection-padded 7x7 stem, two stride-2 3x3 downsamplings, ``n_blocks`` residual blocks
(reflection pad, 3x3 conv, norm, ReLU, reflection pad, 3x3 conv, norm), two 3x3 ConvTranspose
upsamplings (stride 2, padding 1, output_padding 1), reflection-padded 7x7 output conv and tanh.
InstanceNorm (affine=False) so every conv has a bias. ngf 64, 9 blocks: 11.38 M parameters.

Latent vectors: ``stem``, ``down1``, ``trunk`` (shared by the second downsampling and the second conv of
every residual block, because their outputs are summed into the trunk: paper 3.1 / DHP), ``block{i}``
(first conv of block i), ``up1``, ``up2``, ``input`` (3) and ``output`` (3).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from compress.models.base import INPUT, OUTPUT, PrunableConv, PrunableNetwork, norm_layer


class ResnetBlock(nn.Module):
    """x + conv2(relu(norm(conv1(pad(x))))) with reflection padding; conv1 may be narrower (pruned)."""

    def __init__(self, trunk: int, inner: int, norm: str, use_bias: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(trunk, inner, 3, bias=use_bias)
        self.norm1 = norm_layer(norm, inner)
        self.conv2 = nn.Conv2d(inner, trunk, 3, bias=use_bias)
        self.norm2 = norm_layer(norm, trunk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = nn.functional.pad
        h = torch.relu(self.norm1(self.conv1(pad(x, (1, 1, 1, 1), mode="reflect"))))
        return x + self.norm2(self.conv2(pad(h, (1, 1, 1, 1), mode="reflect")))


class ResnetGenerator(PrunableNetwork):
    """ResNet generator. Input (N, in_channels, H, W) in [-1, 1] with H, W divisible by 4; output
    (N, out_channels, H, W) in [-1, 1].

    Args:
        in_channels, out_channels: image channels (3 and 3).
        ngf: width of the stem (64 in CycleGAN).
        n_blocks: residual blocks (9 for 256x256 in CycleGAN).
        norm: "instance" (CycleGAN default) or "batch".
        channels: latent name -> channel count overriding the defaults (pruned networks).
    """

    family = "cyclegan"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", channels: Mapping[str, int] | None = None):
        super().__init__()
        self._remember(in_channels=in_channels, out_channels=out_channels, ngf=ngf, n_blocks=n_blocks, norm=norm)
        self.in_channels, self.out_channels, self.ngf, self.n_blocks = in_channels, out_channels, ngf, n_blocks
        self.channels = c = self._resolve_channels(channels)
        b = norm == "instance"
        self.stem = nn.Conv2d(c[INPUT], c["stem"], 7, bias=b)
        self.stem_norm = norm_layer(norm, c["stem"])
        self.down1 = nn.Conv2d(c["stem"], c["down1"], 3, 2, 1, bias=b)
        self.down1_norm = norm_layer(norm, c["down1"])
        self.down2 = nn.Conv2d(c["down1"], c["trunk"], 3, 2, 1, bias=b)
        self.down2_norm = norm_layer(norm, c["trunk"])
        self.blocks = nn.ModuleList(ResnetBlock(c["trunk"], c[f"block{i}"], norm, b) for i in range(n_blocks))
        self.up1 = nn.ConvTranspose2d(c["trunk"], c["up1"], 3, 2, 1, output_padding=1, bias=b)
        self.up1_norm = norm_layer(norm, c["up1"])
        self.up2 = nn.ConvTranspose2d(c["up1"], c["up2"], 3, 2, 1, output_padding=1, bias=b)
        self.up2_norm = norm_layer(norm, c["up2"])
        self.head = nn.Conv2d(c["up2"], c[OUTPUT], 7)

    def default_channels(self) -> dict[str, int]:
        g = self.ngf
        ch = {INPUT: self.in_channels, OUTPUT: self.out_channels, "stem": g, "down1": 2 * g, "trunk": 4 * g,
              "up1": 2 * g, "up2": g}
        ch.update({f"block{i}": 4 * g for i in range(self.n_blocks)})
        return ch

    def prunable_convs(self) -> list[PrunableConv]:
        convs = [PrunableConv("stem", "stem", (INPUT,), "stem_norm"),
                 PrunableConv("down1", "down1", ("stem",), "down1_norm"),
                 PrunableConv("down2", "trunk", ("down1",), "down2_norm")]
        for i in range(self.n_blocks):
            convs += [PrunableConv(f"blocks.{i}.conv1", f"block{i}", ("trunk",), f"blocks.{i}.norm1"),
                      PrunableConv(f"blocks.{i}.conv2", "trunk", (f"block{i}",), f"blocks.{i}.norm2")]
        convs += [PrunableConv("up1", "up1", ("trunk",), "up1_norm"),
                  PrunableConv("up2", "up2", ("up1",), "up2_norm"),
                  PrunableConv("head", OUTPUT, ("up2",), None)]
        return convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = nn.functional.pad
        h = torch.relu(self.stem_norm(self.stem(pad(x, (3, 3, 3, 3), mode="reflect"))))
        h = torch.relu(self.down1_norm(self.down1(h)))
        h = torch.relu(self.down2_norm(self.down2(h)))
        for block in self.blocks:
            h = block(h)
        h = torch.relu(self.up1_norm(self.up1(h)))
        h = torch.relu(self.up2_norm(self.up2(h)))
        return torch.tanh(self.head(pad(h, (3, 3, 3, 3), mode="reflect")))
