"""Pix2Pix (Isola et al. 2017): paired image-to-image translation with a U-Net generator.

* Networks: U-Net generator (U-Net-256 at ``num_downs`` 8) and the conditional 70x70 PatchGAN
  (input cat(A, B): 6 channels, BatchNorm), as the pix2pix reference code.
* Losses: vanilla GAN loss + lambda_L1 (100) * L1 to the real B (pix2pix reference, ``--lambda_L1 100``).
* Data: :class:`~compress.data.AlignedDataset` (A|B side by side, or split ``trainA/`` + ``trainB/``).
* Evaluation (GAN Compression / OMGD protocol): the generator translates every A image of the dataset's test
  split (``val`` when there is no ``test``; ``architecture.json``'s ``dataset.test_dir``); its outputs are
  compared with the real B images of the same split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from tqdm import tqdm

from compress.data.codec import float_to_uint8
from compress.errors import InputError
from compress.families.evaluation import EvalData, direction_of
from compress.families.options import NORM, WIDTH, Option
from compress.progress import shown
from compress.families.recipe import GANRecipe, gan_loss
from compress.families.translation import ImageTranslationFamily, constructor_default
from compress.models.base import PrunableNetwork
from compress.models.patchgan import PatchGANDiscriminator
from compress.models.unet import UNetGenerator


class Pix2PixRecipe(GANRecipe):
    """Batch ``{"A", "B"}`` (N, 3, H, W); the generator maps A to B."""

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


class Pix2Pix(ImageTranslationFamily):
    """The pix2pix family (see the module docstring)."""

    name = "pix2pix"
    title = "Pix2Pix U-Net generator"
    generator_class = UNetGenerator
    # paper: U-Net-256, batch 4 (edges2shoes reference), 256 px from 286; small: a CPU-sized run
    presets = {
        "paper": dict(dataset="edges2shoes", image_size=256, load_size=286, batch_size=4,
                      generator=dict(ngf=64, num_downs=8), discriminator=dict(ndf=64)),
        "small": dict(dataset="edges2shoes", image_size=128, load_size=143, batch_size=4, search_steps=400,
                      steps=700, generator=dict(ngf=16, num_downs=7), discriminator=dict(ndf=16)),
    }
    real_sets = ("test",)
    default_real_set = "test"
    unseen_input_kinds = ("edges", "photos")  # its input is an edge map; users feed it photos as well
    calibrates_with_target_domain = True
    between_convs = "LeakyReLU(0.2) going down, ReLU going up, skip concatenation, dropout (eval: identity)"
    paper_params_remaining = {0.75: 0.243, 0.95: 0.087}
    generator_options = {"ngf": WIDTH,
                         "num_downs": Option(int, minimum=5, meaning="stride-2 downsamplings of the U-Net"),
                         "norm": NORM,
                         "dropout": Option(float, minimum=0.0, below=1.0,
                                           meaning="dropout probability of the inner up blocks")}

    def size_multiple(self, generator: Mapping[str, Any]) -> tuple[int, str]:
        """2**num_downs: every down convolution halves the side, down to 1 x 1 at the bottom (pix2pix U-Net)."""
        n = generator.get("num_downs", constructor_default(UNetGenerator, "num_downs"))
        return 2 ** n, f"2**num_downs, num_downs {n}; a smaller --generator num_downs takes smaller sizes"

    def discriminator(self, **kwargs) -> PrunableNetwork:
        """Conditional PatchGAN: 6 input channels (cat(A, B)), BatchNorm."""
        return PatchGANDiscriminator(**{"in_channels": 6, "norm": "batch", "family": self.name, **kwargs})

    def recipe(self, cfg) -> Pix2PixRecipe:
        return Pix2PixRecipe(self, cfg)

    def dataset(self, cfg, train: bool = True):
        """``AlignedDataset`` of the ``train`` split, or of ``test`` (``val`` when there is only a ``val``;
        ``train`` when there is neither) for ``train=False``."""
        from compress.data import AlignedDataset, resolve_dataset

        root = resolve_dataset(cfg.dataset)
        phase = "train" if train else "test"
        if not train and not any((Path(root) / p).exists() for p in ("test", "testA", "val")):
            phase = "train"
        if not train and (Path(root) / "val").exists() and not (Path(root) / "test").exists():
            phase = "val"
        return AlignedDataset(root, phase=phase, **self.loader_options(cfg, train))

    def evaluation_data(self, arch: Mapping[str, Any], config: Mapping[str, Any], settings, root: Path,
                        name: str) -> EvalData:
        """Every A image of the paired test (or val) split -> compared with the B images of that split."""
        from compress.data import AlignedDataset

        s = settings
        size = self.image_size(arch, config)
        direction = direction_of(arch, config)
        dst = "B" if direction == "AtoB" else "A"
        phase = (arch.get("dataset") or {}).get("test_dir")
        if not phase or not ((root / phase).exists() or (root / f"{phase}A").exists()):
            phase = next((p for p in ("test", "val") if (root / p).exists() or (root / f"{p}A").exists()), None)
        if phase is None:
            raise InputError(f"{root}: no test or val split to evaluate on (expected {root}/test/, {root}/val/ or "
                             f"{root}/testA/ + {root}/testB/)")
        ds = AlignedDataset(root, phase=phase, direction=direction, load_size=size, crop_size=size, flip=False,
                            train=False)
        n = len(ds) if s.num_samples is None else min(len(ds), s.num_samples)
        items = [ds[i] for i in tqdm(range(n), desc=f"read {phase}", unit="img", leave=False,
                                     disable=n < 50 or not shown())]
        inputs = torch.stack([it["A"] for it in items])
        targets = torch.stack([it["B"] for it in items])
        real_t = targets[: s.max_real] if s.max_real else targets
        real = float_to_uint8(real_t).numpy()
        label = f"{name}_{phase}{dst}_{size}px" + (f"_first{s.max_real}" if s.max_real else "")
        return EvalData(inputs, real, label,
                        f"outputs of {n} {phase} A images against the {len(real)} real {phase} B images, "
                        f"all at {size}x{size}", targets=targets, input_source=f"{root / phase} (A)",
                        real_source=f"{root / phase} (B)")
