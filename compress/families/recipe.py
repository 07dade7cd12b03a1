"""A family's training recipe: what a batch is, which networks it trains, and its losses.

One trainer (:mod:`compress.trainer`) runs the same loop for every family in both stages; it calls the
generator being compressed through a callable that is the hypernetwork-driven generator during the search
and the plain pruned generator while converging. A recipe is made per run by
:meth:`compress.families.base.Family.recipe` and may hold state (CycleGAN's image pools) that goes into the
checkpoint.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from compress.models.base import PrunableNetwork

GeneratorFn = Callable[[torch.Tensor], torch.Tensor]


def gan_loss(logits: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """GAN loss of discriminator logits (any shape) against the real/fake label, a scalar:
    "vanilla" (binary cross-entropy with logits, Goodfellow et al. 2014) or "lsgan" (mean squared error,
    Mao et al. 2017; the CycleGAN reference's ``gan_mode``)."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


class GANRecipe(ABC):
    """Base recipe of a family for one run. Subclasses define the generator input and the two losses.

    Args:
        family: the :class:`~compress.families.base.Family` that makes it (builds the networks).
        cfg: the run's :class:`compress.config.RunConfig`.
    """

    def __init__(self, family, cfg):
        self.family = family
        self.cfg = cfg

    # networks -----------------------------------------------------------------------------------------
    def make_generator(self) -> PrunableNetwork:
        """The generator that CoroNetGAN compresses, unpruned, from ``cfg.generator``."""
        return self.family.generator(**self.cfg.generator)

    def make_discriminator(self) -> PrunableNetwork:
        """The discriminator, from ``cfg.discriminator``."""
        return self.family.discriminator(**self.cfg.discriminator)

    def extra_networks(self) -> dict[str, nn.Module]:
        """Other networks trained alongside (CycleGAN's G_B and D_B); keyed by name (``G*``: optimised with
        the generator, ``D*``: with the discriminator)."""
        return {}

    # data ---------------------------------------------------------------------------------------------
    @abstractmethod
    def generator_input(self, batch) -> torch.Tensor:
        """The generator's input for a batch: the source images (N, 3, H, W), or z (N, nz, 1, 1) for DCGAN."""

    # losses -------------------------------------------------------------------------------------------
    @abstractmethod
    def discriminator_loss(self, D: nn.Module, batch, fake: torch.Tensor, extra: dict) -> tuple[torch.Tensor, dict]:
        """(loss, logged floats) of the discriminator step; ``fake`` is the generator output of the step."""

    @abstractmethod
    def generator_loss(self, G: GeneratorFn, D: nn.Module, batch, fake: torch.Tensor,
                       extra: dict) -> tuple[torch.Tensor, dict]:
        """(loss, logged floats) of the generator step; ``G`` is the generator being compressed."""

    @abstractmethod
    def sample_rows(self, G: GeneratorFn, batch) -> list[torch.Tensor]:
        """Rows of a sample grid, each (N, 3, H, W) in [-1, 1]: input, output (and target when paired)."""

    def state(self) -> dict:
        """Recipe state for the checkpoint (nothing by default)."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` from a checkpoint (nothing by default)."""
