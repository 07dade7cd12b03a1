"""Reference GAN networks with prunable widths.

Each network is built from its constructor keyword arguments, per-latent channel counts included; which
networks a GAN family uses is declared by the family (:mod:`compress.families`), and a pruned generator is
rebuilt from a run folder by :func:`compress.artifacts.load_generator`.
"""
from __future__ import annotations

from compress.models.base import FIXED_LATENTS, INPUT, OUTPUT, PrunableConv, PrunableNetwork
from compress.models.dcgan import DCGANDiscriminator, DCGANGenerator
from compress.models.patchgan import PatchGANDiscriminator
from compress.models.resnet import ResnetGenerator
from compress.models.unet import UNetGenerator

__all__ = ["FIXED_LATENTS", "INPUT", "OUTPUT", "PrunableConv", "PrunableNetwork", "UNetGenerator",
           "ResnetGenerator", "DCGANGenerator", "DCGANDiscriminator", "PatchGANDiscriminator"]
