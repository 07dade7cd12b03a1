"""DCGAN (Radford et al. 2016) on CIFAR-10: an unconditional generator of 32x32 images from noise.

* Networks: the DCGAN generator (z of ``nz`` 100) and discriminator.
* Loss: binary cross-entropy on logits, z ~ N(0, I) of size nz (100).
* Data: :class:`~compress.data.CIFAR10Dataset` (npz or the official batches); items ``(image, label)``.
* Evaluation: ``num_samples`` images (default :data:`DCGAN_DEFAULT_SAMPLES`) from seeded z ~ N(0, I) (seed 0
  by default) are compared with the real CIFAR-10 ``train`` images (``real_set="test"`` or ``"train+test"``
  also accepted).
* Export: calibration and held-out inputs are seeded noise
  (:func:`compress.families.calibration.noise_input_sets`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from compress.families.base import Family
from compress.families.calibration import InputSets, noise_input_sets
from compress.errors import InputError
from compress.families.evaluation import EvalData
from compress.families.options import WIDTH
from compress.families.recipe import GANRecipe, gan_loss
from compress.models.base import INPUT, PrunableNetwork
from compress.models.dcgan import DCGANDiscriminator, DCGANGenerator

#: Default number of generated images of an evaluation (the reference figures used 5,000).
DCGAN_DEFAULT_SAMPLES = 5000
#: Side of CIFAR-10 images (pixels).
CIFAR_SIZE = 32


class DCGANRecipe(GANRecipe):
    """Batch ``(images (N, 3, 32, 32), labels)``; the generator maps z (N, nz, 1, 1) to images."""

    gan_mode = "vanilla"

    def make_generator(self):
        return self.family.generator(**{"nz": self.cfg.nz, **self.cfg.generator})

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


class DCGAN(Family):
    """The DCGAN family (see the module docstring)."""

    name = "dcgan"
    title = "DCGAN generator"
    generator_class = DCGANGenerator
    # paper: ngf 64, batch 64, 25 + 50 epochs; small: a CPU-sized run
    presets = {
        "paper": dict(dataset="cifar10", image_size=32, load_size=32, batch_size=64, search_epochs=25.0,
                      epochs=75.0, generator=dict(ngf=64), discriminator=dict(ndf=64)),
        "small": dict(dataset="cifar10", image_size=32, load_size=32, batch_size=64, search_steps=400,
                      steps=1000, generator=dict(ngf=32), discriminator=dict(ndf=32)),
    }
    real_sets = ("train", "test", "train+test")
    default_real_set = "train"
    noise_input = True
    between_convs = "ReLU"
    default_num_samples = DCGAN_DEFAULT_SAMPLES
    sample_count = 16
    generator_options = {"ngf": WIDTH}
    discriminator_options = {"ndf": WIDTH}

    def check_image_size(self, image_size: int, generator: Mapping[str, Any], discriminator: Mapping[str, Any]) -> None:
        """Only :data:`CIFAR_SIZE`: the generator's four transposed convolutions make 32 x 32 images.

        Raises:
            InputError: any other ``image_size``.
        """
        if image_size != CIFAR_SIZE:
            raise InputError(f"--image-size {image_size}: the {self.title} makes {CIFAR_SIZE}x{CIFAR_SIZE} images "
                             f"(CIFAR-10); expected {CIFAR_SIZE}")

    def discriminator(self, **kwargs) -> PrunableNetwork:
        return DCGANDiscriminator(**kwargs)

    def input_shape(self, generator: PrunableNetwork, image_size: int, batch: int = 1) -> tuple[int, ...]:
        """(batch, nz, 1, 1): z, whatever the image size."""
        return (batch, generator.channels[INPUT], 1, 1)

    def recipe(self, cfg) -> DCGANRecipe:
        return DCGANRecipe(self, cfg)

    def dataset(self, cfg, train: bool = True):
        """``CIFAR10Dataset`` of the ``train`` or ``test`` split."""
        from compress.data import CIFAR10Dataset, resolve_dataset

        return CIFAR10Dataset(resolve_dataset(cfg.dataset), split="train" if train else "test")

    def load_size(self, image_size: int) -> None:
        """None: CIFAR-10 images are used as they are."""
        return None

    def image_size(self, arch: Mapping[str, Any], config: Mapping[str, Any]) -> int:
        """``config.json``'s ``image_size`` (default 32): the input shape is z's."""
        return int(config.get("image_size", CIFAR_SIZE))

    def evaluation_data(self, arch: Mapping[str, Any], config: Mapping[str, Any], settings, root: Path,
                        name: str) -> EvalData:
        """``num_samples`` seeded z -> compared with the real CIFAR-10 images of ``real_set``."""
        from compress.data import CIFAR10Dataset

        s = settings
        splits = ("train", "test") if s.real_set == "train+test" else (s.real_set,)
        real = np.concatenate([CIFAR10Dataset(root, split=sp).images.numpy() for sp in splits])
        total = len(real)
        real = real[: s.max_real] if s.max_real else real
        which = f"the first {len(real)} of the {total}" if len(real) < total else f"all {total}"
        nz = int(arch["generator"].get("nz", arch.get("input_shape", [1, 100])[1]))
        g = torch.Generator().manual_seed(int(s.seed))
        z = torch.randn(int(s.num_samples), nz, 1, 1, generator=g)
        label = f"{name}_{s.real_set}" + (f"_first{s.max_real}" if s.max_real else "")
        return EvalData(z, real, label,
                        f"{s.num_samples} samples (z ~ N(0, I), seed {s.seed}) against {which} real CIFAR-10 "
                        f"{s.real_set} images of {Path(root).name}", input_source=f"z seed {s.seed}",
                        real_source=f"{root} [{s.real_set}]")

    def grid_rows(self, data: EvalData, outputs: torch.Tensor, columns: int) -> list[torch.Tensor]:
        """Two rows of ``columns`` samples (one row of one sample when there are fewer than two)."""
        k = min(columns, len(outputs) // 2)
        return [outputs[:k], outputs[k:2 * k]] if k else [outputs[:1]]

    def input_sets(self, arch: Mapping[str, Any], shape: list[int], *,
                   calibration_dir: str | os.PathLike | None, calibration_count: int, heldout_count: int,
                   need_calibration: bool) -> InputSets:
        """Seeded noise z of the generator's ``nz`` = ``shape[1]``."""
        return noise_input_sets(self.name, shape[1], calibration_dir=calibration_dir,
                                calibration_count=calibration_count, heldout_count=heldout_count,
                                need_calibration=need_calibration)
