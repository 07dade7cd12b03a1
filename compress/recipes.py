"""The three GAN families as recipes: data, networks and losses. One trainer serves them all.

A recipe knows what a batch is, which networks a family trains, and its losses; the trainer
(:mod:`compress.trainer`) runs the same loop for every family in both stages, calling the generator
being compressed through a callable that is the hypernetwork-driven generator during the search and the
plain pruned generator while converging.

Losses follow the reference implementations (METHOD-NOTES):
* Pix2Pix: vanilla GAN loss on a conditional 70x70 PatchGAN (input cat(A, B)) + lambda_L1 (100) * L1.
* CycleGAN: LSGAN, cycle-consistency lambda (10), identity 0.5 * lambda, image pools of 50; the generator
  being compressed is G_A (A -> B); G_B, D_A and D_B are ordinary networks trained alongside.
* DCGAN: binary cross-entropy on logits, z ~ N(0, I) of size nz (100).
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from compress.config import RunConfig
from compress.models import build_discriminator, GENERATORS
from compress.models.base import PrunableNetwork

GeneratorFn = Callable[[torch.Tensor], torch.Tensor]


def gan_loss(logits: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """GAN loss of discriminator logits against the real/fake label: "vanilla" (BCE with logits) or "lsgan" (MSE)."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


class ImagePool:
    """History of generated images for the discriminator (Shrivastava et al. 2017; CycleGAN pool of 50).

    ``query(images)`` returns, per image, the image itself (while the pool fills, or with probability 0.5)
    or a random earlier image that it replaces. The pool is part of the checkpoint (``state``).
    """

    def __init__(self, size: int = 50):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.cpu())
                out.append(img)
            elif random.random() > 0.5:
                i = random.randrange(self.size)
                old = self.images[i].to(img.device)
                self.images[i] = img.cpu()
                out.append(old)
            else:
                out.append(img)
        return torch.cat(out, 0)

    def state(self) -> list[torch.Tensor]:
        return list(self.images)

    def load(self, images: list[torch.Tensor]) -> None:
        self.images = list(images)


class GANRecipe(ABC):
    """Base recipe. Subclasses define ``family``, the data, the networks and the two losses."""

    family = ""
    gan_mode = "vanilla"

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    # networks -----------------------------------------------------------------------------------------
    def make_generator(self) -> PrunableNetwork:
        """The generator that CoroNetGAN compresses, unpruned, from ``cfg.generator``."""
        return GENERATORS[self.family](**self.cfg.generator)

    def make_discriminator(self) -> PrunableNetwork:
        return build_discriminator(self.family, **self.cfg.discriminator)

    def extra_networks(self) -> dict[str, nn.Module]:
        """Other networks trained alongside (CycleGAN's G_B and D_B); keyed by name."""
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
        return {}

    def load_state(self, state: dict) -> None:
        pass


class Pix2PixRecipe(GANRecipe):
    family = "pix2pix"
    gan_mode = "vanilla"

    def generator_input(self, batch):
        return batch["A"]

    def discriminator_loss(self, D, batch, fake, extra):
        real_ab = torch.cat([batch["A"], batch["B"]], 1)
        fake_ab = torch.cat([batch["A"], fake.detach()], 1)
        loss_real = gan_loss(D(real_ab), True, self.gan_mode)
        loss_fake = gan_loss(D(fake_ab), False, self.gan_mode)
        loss = 0.5 * (loss_real + loss_fake)
        return loss, {"D_real": loss_real.item(), "D_fake": loss_fake.item()}

    def generator_loss(self, G, D, batch, fake, extra):
        loss_gan = gan_loss(D(torch.cat([batch["A"], fake], 1)), True, self.gan_mode)
        loss_l1 = F.l1_loss(fake, batch["B"]) * self.cfg.lambda_l1
        return loss_gan + loss_l1, {"G_GAN": loss_gan.item(), "G_L1": loss_l1.item()}

    def sample_rows(self, G, batch):
        return [batch["A"], G(batch["A"]), batch["B"]]


class CycleGANRecipe(GANRecipe):
    family = "cyclegan"
    gan_mode = "lsgan"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.pool_a = ImagePool(cfg.pool_size)   # fakes of domain B (from G_A) for D_A... named as reference
        self.pool_b = ImagePool(cfg.pool_size)

    def extra_networks(self):
        kwargs = {k: v for k, v in self.cfg.generator.items() if k != "channels"}
        return {"G_B": GENERATORS["cyclegan"](**kwargs), "D_B": self.make_discriminator()}

    def generator_input(self, batch):
        return batch["A"]

    def discriminator_loss(self, D, batch, fake, extra):
        # D (= D_A of the reference code) judges domain B: real B vs G_A(A); D_B judges domain A.
        fake_b = self.pool_a.query(fake)
        loss_da = 0.5 * (gan_loss(D(batch["B"]), True, "lsgan") + gan_loss(D(fake_b.detach()), False, "lsgan"))
        fake_a = self.pool_b.query(extra["fake_A"])
        loss_db = 0.5 * (gan_loss(extra["D_B"](batch["A"]), True, "lsgan")
                         + gan_loss(extra["D_B"](fake_a.detach()), False, "lsgan"))
        return loss_da + loss_db, {"D_A": loss_da.item(), "D_B": loss_db.item()}

    def generator_loss(self, G, D, batch, fake, extra):
        cfg = self.cfg
        G_B, D_B = extra["G_B"], extra["D_B"]
        real_a, real_b = batch["A"], batch["B"]
        fake_a = extra["fake_A"]
        loss_idt = torch.zeros((), device=real_a.device)
        logs = {}
        if cfg.lambda_identity > 0:
            loss_idt_a = F.l1_loss(G(real_b), real_b) * cfg.lambda_cycle * cfg.lambda_identity
            loss_idt_b = F.l1_loss(G_B(real_a), real_a) * cfg.lambda_cycle * cfg.lambda_identity
            loss_idt = loss_idt_a + loss_idt_b
            logs["idt"] = loss_idt.item()
        loss_g_a = gan_loss(D(fake), True, "lsgan")
        loss_g_b = gan_loss(D_B(fake_a), True, "lsgan")
        loss_cycle = (F.l1_loss(G_B(fake), real_a) + F.l1_loss(G(fake_a), real_b)) * cfg.lambda_cycle
        logs.update({"G_A": loss_g_a.item(), "G_B": loss_g_b.item(), "cycle": loss_cycle.item()})
        return loss_g_a + loss_g_b + loss_cycle + loss_idt, logs

    def forward_extra(self, extra: dict, batch) -> None:
        """Compute G_B(B) once per step; both losses use it."""
        extra["fake_A"] = extra["G_B"](batch["B"])

    def sample_rows(self, G, batch):
        return [batch["A"], G(batch["A"])]

    def state(self):
        return {"pool_a": self.pool_a.state(), "pool_b": self.pool_b.state()}

    def load_state(self, state):
        self.pool_a.load(state.get("pool_a", []))
        self.pool_b.load(state.get("pool_b", []))


class DCGANRecipe(GANRecipe):
    family = "dcgan"
    gan_mode = "vanilla"

    def make_generator(self):
        return GENERATORS["dcgan"](**{"nz": self.cfg.nz, **self.cfg.generator})

    def generator_input(self, batch):
        images = batch[0]
        return torch.randn(images.shape[0], self.cfg.nz, 1, 1, device=images.device)

    def discriminator_loss(self, D, batch, fake, extra):
        loss_real = gan_loss(D(batch[0]), True, "vanilla")
        loss_fake = gan_loss(D(fake.detach()), False, "vanilla")
        return loss_real + loss_fake, {"D_real": loss_real.item(), "D_fake": loss_fake.item()}

    def generator_loss(self, G, D, batch, fake, extra):
        loss = gan_loss(D(fake), True, "vanilla")
        return loss, {"G": loss.item()}

    def sample_rows(self, G, batch):
        g = torch.Generator().manual_seed(1234)
        z = torch.randn(min(8, batch[0].shape[0]) * 2, self.cfg.nz, 1, 1, generator=g).to(batch[0].device)
        out = G(z)
        return [out[: len(out) // 2], out[len(out) // 2:]]


RECIPES = {"pix2pix": Pix2PixRecipe, "cyclegan": CycleGANRecipe, "dcgan": DCGANRecipe}


def make_recipe(cfg: RunConfig) -> GANRecipe:
    return RECIPES[cfg.model](cfg)
