"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation with a ResNet generator.

* Networks: the ResNet generator (ResNet-9 at ``n_blocks`` 9) and the 70x70 PatchGAN (3 input channels,
  InstanceNorm), as the CycleGAN reference code. The generator being compressed is G_A (A -> B); G_B, D_A
  and D_B are ordinary networks trained alongside.
* Losses (CycleGAN reference): LSGAN, cycle-consistency lambda (10), identity 0.5 * lambda, image pools of 50.
* Data: :class:`~compress.data.UnalignedDataset` (``trainA/ trainB/ testA/ testB/``).
* Evaluation (GAN Compression protocol): the generator translates ``testA`` (``testB`` for ``BtoA``); its
  outputs are compared with the real images of the target domain: by default ``trainB + testB``
  (horse2zebra: 1,334 + 140 = 1,474 zebras, as GAN Compression did), or ``testB`` only
  (``real_set="testB"``).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from compress.data.codec import uint8_to_float
from compress.families.evaluation import EvalData, direction_of, limit, load_resized
from compress.families.options import NORM, WIDTH, Option
from compress.families.recipe import GANRecipe, gan_loss
from compress.families.translation import ImageTranslationFamily
from compress.models.base import PrunableNetwork
from compress.models.patchgan import PatchGANDiscriminator
from compress.models.resnet import ResnetGenerator


class ImagePool:
    """History of generated images for the discriminator (Shrivastava et al. 2017; CycleGAN pool of 50).

    ``query(images)`` returns, per image, the image itself (while the pool fills, or with probability 0.5)
    or a random earlier image that it replaces. The pool is part of the checkpoint (``state``).
    """

    def __init__(self, size: int = 50):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) generated images -> (N, C, H, W) images for the discriminator (see the class)."""
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
        """The pooled images (each (1, C, H, W)) for a checkpoint."""
        return list(self.images)

    def load(self, images: list[torch.Tensor]) -> None:
        """Restore the pool from :meth:`state`'s list."""
        self.images = list(images)


class CycleGANRecipe(GANRecipe):
    """Batch ``{"A", "B"}`` of unpaired images; the compressed generator is G_A (A -> B)."""

    gan_mode = "lsgan"

    def __init__(self, family, cfg):
        super().__init__(family, cfg)
        self.pool_a = ImagePool(cfg.pool_size)   # fakes of domain B (from G_A) for D_A... named as reference
        self.pool_b = ImagePool(cfg.pool_size)

    def extra_networks(self):
        kwargs = {k: v for k, v in self.cfg.generator.items() if k != "channels"}
        return {"G_B": self.family.generator(**kwargs), "D_B": self.make_discriminator()}

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


class CycleGAN(ImageTranslationFamily):
    """The CycleGAN family (see the module docstring)."""

    name = "cyclegan"
    title = "CycleGAN ResNet generator"
    generator_class = ResnetGenerator
    # paper: ResNet-9, batch 1, 256 px from 286 (CycleGAN reference); small: a CPU-sized run
    presets = {
        "paper": dict(dataset="horse2zebra", image_size=256, load_size=286, batch_size=1,
                      generator=dict(ngf=64, n_blocks=9), discriminator=dict(ndf=64)),
        "small": dict(dataset="horse2zebra", image_size=128, load_size=143, batch_size=1, search_steps=400,
                      steps=700, generator=dict(ngf=16, n_blocks=6), discriminator=dict(ndf=16)),
    }
    real_sets = ("train+test", "testB")
    default_real_set = "train+test"
    between_convs = "ReLU, reflection padding, residual sums"
    paper_params_remaining = {0.75: 0.238, 0.85: 0.148}
    # G_A(A) for the losses, G_A(B) for the identity loss, G_A(G_B(B)) for the cycle loss
    generator_calls_per_step = 3
    generator_options = {"ngf": WIDTH, "n_blocks": Option(int, minimum=1, meaning="residual blocks"), "norm": NORM}

    def size_multiple(self, generator: Mapping[str, Any]) -> tuple[int, str]:
        """4: two stride-2 downsamplings, undone exactly by the two transposed convolutions (CycleGAN ResNet)."""
        return 4, "two stride-2 downsamplings"

    def discriminator(self, **kwargs) -> PrunableNetwork:
        """PatchGAN on one domain: 3 input channels, InstanceNorm."""
        return PatchGANDiscriminator(**{"in_channels": 3, "norm": "instance", "family": self.name, **kwargs})

    def recipe(self, cfg) -> CycleGANRecipe:
        return CycleGANRecipe(self, cfg)

    def dataset(self, cfg, train: bool = True):
        """``UnalignedDataset`` of the ``train`` or ``test`` domain folders."""
        from compress.data import UnalignedDataset, resolve_dataset

        root = resolve_dataset(cfg.dataset)
        return UnalignedDataset(root, phase="train" if train else "test", **self.loader_options(cfg, train))

    def evaluation_data(self, arch: Mapping[str, Any], config: Mapping[str, Any], settings, root: Path,
                        name: str) -> EvalData:
        """``test{source}`` images -> compared with the target domain's ``train + test`` (or ``test``) images."""
        from compress.data import list_images

        s = settings
        size = self.image_size(arch, config)
        src, dst = ("A", "B") if direction_of(arch, config) == "AtoB" else ("B", "A")
        in_dir = root / f"test{src}"
        in_paths = limit(list_images(in_dir, "CycleGAN test input folder"), s.num_samples)
        real_dirs = [root / f"test{dst}"] if s.real_set == "testB" else [root / f"train{dst}", root / f"test{dst}"]
        real_paths = limit([p for d in real_dirs for p in list_images(d, "CycleGAN real image folder")], s.max_real)
        inputs = uint8_to_float(torch.from_numpy(load_resized(in_paths, size, f"read {in_dir.name}")))
        real = load_resized(real_paths, size, "read real " + "+".join(d.name for d in real_dirs))
        real_name = "+".join(d.name for d in real_dirs)
        label = f"{name}_{real_name}_{size}px" + (f"_first{s.max_real}" if s.max_real else "")
        return EvalData(inputs, real, label,
                        f"outputs of {len(in_paths)} {in_dir.name} images against {len(real)} real "
                        f"{real_name} images, all at {size}x{size}", input_source=str(in_dir),
                        real_source=", ".join(map(str, real_dirs)))
