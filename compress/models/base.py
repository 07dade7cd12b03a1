"""The contract every prunable network of the project follows.

A network is described to the compression machinery by its *latent vectors* (one per group of
channels that must be pruned together) and its *prunable convolutions* (each producing the channels of
one latent vector from the concatenation of one or more latent vectors). This is the information the
hypernetwork (paper eqs. 1-4) needs to generate each layer's weights from the latent vector of the layer
and of its input, and that materialisation needs to slice each layer.

Two latent vectors are special and never pruned (paper 3.1; DHP skips them in its proximal operator):
``"input"`` (the RGB image, or the noise z for DCGAN) and ``"output"`` (the generated image).
Every network is built from a ``channels`` mapping (latent name -> channel count), so a pruned network
is the same class built with smaller counts: this is what ``architecture.json`` stores.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Mapping

import torch.nn as nn

from compress.errors import InputError

INPUT = "input"
OUTPUT = "output"
FIXED_LATENTS = (INPUT, OUTPUT)


@dataclass(frozen=True)
class PrunableConv:
    """One Conv2d/ConvTranspose2d seen by the hypernetwork.

    Attributes:
        name: module path of the convolution inside the network (``dict(net.named_modules())[name]``).
        out_latent: latent vector naming its output channels.
        in_latents: latent vectors whose concatenation (in this order) gives its input channels
            (several for a layer fed by a U-Net skip concatenation).
        norm: module path of the normalisation layer applied to its output (sliced with the output
            mask at materialisation), or None.
    """

    name: str
    out_latent: str
    in_latents: tuple[str, ...]
    norm: str | None = None


class PrunableNetwork(nn.Module, metaclass=ABCMeta):
    """Base class of the generators and discriminators that CoroNetGAN can prune.

    Subclasses set ``family`` and ``role`` ("generator"/"discriminator"), store their constructor
    arguments with :meth:`_remember`, and implement :meth:`default_channels` and :meth:`prunable_convs`.
    """

    family: str = ""
    role: str = "generator"

    def _remember(self, **kwargs) -> None:
        self._config = dict(kwargs)

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this network exactly (channels included)."""
        cfg = dict(self._config)
        cfg["channels"] = dict(self.channels)
        return cfg

    @abstractmethod
    def default_channels(self) -> dict[str, int]:
        """Latent name -> channel count of the unpruned network (``input``/``output`` included)."""

    @abstractmethod
    def prunable_convs(self) -> list[PrunableConv]:
        """The convolutions of the network in forward order, with their latent wiring."""

    def _resolve_channels(self, channels: Mapping[str, int] | None) -> dict[str, int]:
        """Merge user channel counts into the defaults, rejecting unknown names and bad counts.

        Raises:
            InputError: a latent name the network does not have, a count < 1, or a changed
                ``input``/``output`` count.
        """
        full = self.default_channels()
        if channels:
            for name, count in channels.items():
                if name not in full:
                    raise InputError(f"{type(self).__name__}: unknown latent vector {name!r} in channels; "
                                     f"expected one of {sorted(full)}")
                if int(count) < 1:
                    raise InputError(f"{type(self).__name__}: channels[{name!r}] = {count}; expected >= 1")
                if name in FIXED_LATENTS and int(count) != full[name]:
                    raise InputError(f"{type(self).__name__}: channels[{name!r}] = {count}; the network's "
                                     f"{name} is never pruned and must stay {full[name]}")
                full[name] = int(count)
        return full

    def in_channels_of(self, conv: PrunableConv) -> int:
        """Input channels of ``conv``: the sum over its input latent vectors (a skip concatenation has two)."""
        return sum(self.channels[n] for n in conv.in_latents)


def norm_layer(kind: str, channels: int) -> nn.Module:
    """BatchNorm2d (pix2pix/DCGAN) or InstanceNorm2d with affine=False (CycleGAN reference default) over
    ``channels``. Raises InputError for a ``kind`` other than ``batch`` / ``instance`` (``--generator norm=``)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise InputError(f"norm={kind!r}; expected 'batch' or 'instance'")
