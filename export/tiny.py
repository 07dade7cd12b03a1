"""Small *trained* generators of each family, written as compress run folders (tests and benchmarks).

Random-weight GAN generators are not representative of quantization behaviour (their activations have no
structure), so tests and ``export/benchmark.py`` train narrow generators briefly on real data of this
project's mirror (``../shared/data``) and save them with :func:`compress.artifacts.save_generator`, exactly
as a finished ``python -m compress`` run would:

* pix2pix: U-Net (``ngf`` 8, ``num_downs`` 6) at 64 x 64 on edges2shoes_subset (side-by-side A|B files,
  AtoB), L1 regression to the real photo B (the pix2pix reconstruction term without the GAN term).
* cyclegan: ResNet generator (``ngf`` 8, 3 blocks, InstanceNorm) at 64 x 64 on horse2zebra ``trainA``.
  horse2zebra is unpaired, so the generator regresses (L1) a fixed, non-linear colour/contrast mapping of
  the input (:func:`_cyclegan_target`): a real image-to-image function with real input statistics.
* dcgan: DCGAN (``ngf`` 16, nz 100) at 32 x 32 on the partial CIFAR-10 with the usual BCE GAN losses.

``width`` (0 < width <= 1) multiplies every prunable channel count (``round(c * width)``, at least 1): width
``sqrt(0.25) = 0.5`` is the stand-in for a 75%-MACs-pruned generator (MACs of a conv scale with
C_in x C_out) used when no real compress run is available.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from compress.artifacts import build_generator, save_generator
from compress.data.codec import uint8_to_float
from compress.data.images import list_images
from compress.families.calibration import load_images
from compress.models import FIXED_LATENTS
from compress.qat import IMAGE_RANGE, RECALIBRATION_INTERVAL, QuantizationSimulation

DEFAULT_SPECS: dict[str, dict[str, Any]] = {
    "pix2pix": {"generator": {"ngf": 8, "num_downs": 6}, "image_size": 64, "dataset": "edges2shoes_subset"},
    "cyclegan": {"generator": {"ngf": 8, "n_blocks": 3}, "image_size": 64, "dataset": "horse2zebra"},
    "dcgan": {"generator": {"ngf": 16, "nz": 100}, "image_size": 32, "dataset": "cifar10_partial"},
}
#: Width factor of the 75%-pruned stand-in (MACs ~ width**2 = 0.25 of the unpruned network).
PRUNED_75_WIDTH = math.sqrt(0.25)


def _cyclegan_target(x: torch.Tensor) -> torch.Tensor:
    """A fixed non-linear colour mapping of an image in [-1, 1] (N, 3, H, W) -> [-1, 1]: luminance with
    raised contrast, tinted and mixed back with the inverted red channel."""
    gray = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    g = torch.tanh(2.0 * gray)
    return torch.cat([0.8 * g, 0.6 * g - 0.3 * x[:, :1], 0.5 * g + 0.4 * x[:, 2:3]], 1).clamp(-1, 1)


def stand_in_spec(family: str, generator: Mapping[str, Any] | None = None,
                  image_size: int | None = None) -> dict[str, Any]:
    """The stand-in of ``family`` (:data:`DEFAULT_SPECS`) with ``generator`` arguments and ``image_size`` over
    its own. Raises KeyError for an unknown family."""
    spec = DEFAULT_SPECS[family]
    return {**spec, "generator": {**spec["generator"], **(generator or {})},
            "image_size": image_size or spec["image_size"]}


def stand_in_params(family: str, width: float, generator: Mapping[str, Any] | None = None) -> int:
    """Parameters (count) of the stand-in :func:`train_tiny_run` would train with these arguments."""
    return sum(p.numel() for p in _build(family, width, stand_in_spec(family, generator)).parameters())


def _build(family: str, width: float, spec: dict) -> nn.Module:
    gen = build_generator({"family": family, "generator": spec["generator"]})
    if width != 1.0:
        channels = {k: (v if k in FIXED_LATENTS else max(1, int(round(v * width))))
                    for k, v in gen.channels.items()}
        gen = build_generator({"family": family, "generator": {**spec["generator"], "channels": channels}})
    return gen


def train_tiny_run(family: str, run_dir: str | Path, data_root: str | Path, *, steps: int = 300,
                   width: float = 1.0, seed: int = 0, n_images: int = 64, lr: float = 2e-3,
                   generator: Mapping[str, Any] | None = None, image_size: int | None = None,
                   qat_steps: int = 0) -> dict:
    """Train a narrow generator of ``family`` briefly and write ``generator.pt`` + ``architecture.json``.

    Args:
        family: "pix2pix", "cyclegan" or "dcgan".
        run_dir: folder to write (created).
        data_root: the real-data mirror (holds horse2zebra/, edges2shoes_subset/, cifar10_partial/).
        steps: optimizer steps (batch 8 for images, 32 for DCGAN).
        width: channel multiplier (see module docstring).
        seed: torch seed.
        n_images: training images held in memory (image families).
        lr: Adam learning rate.
        generator: constructor arguments over the family's stand-in ones (:data:`DEFAULT_SPECS`), e.g.
            ``{"n_blocks": 9}``.
        image_size: training side in pixels instead of the stand-in's (image families; a U-Net needs a multiple
            of ``2 ** num_downs``).
        qat_steps: the last ``qat_steps`` steps train with the int8 activations simulated (:mod:`compress.qat`,
            as ``python -m compress --qat-steps``), ranges from the training inputs (pix2pix: and their photos).
    Returns:
        the architecture dict written.
    """
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    spec = stand_in_spec(family, generator, image_size)
    data_root = Path(data_root)
    gen = _build(family, width, spec)
    size = spec["image_size"]
    dataset = _STAND_INS[family](gen, data_root, size, steps, n_images, lr, qat_steps)
    gen.eval()
    return save_generator(run_dir, gen, size, dataset)


def _stand_in_pix2pix(gen: nn.Module, data_root: Path, size: int, steps: int, n_images: int, lr: float,
                      qat_steps: int = 0) -> dict:
    """L1 regression of the edge maps A to the photos B of edges2shoes_subset; returns the dataset entry."""
    root = data_root / "edges2shoes_subset"
    files = list_images(root / "train", "training folder")[:n_images]
    a = torch.from_numpy(load_images(files, (size, size), True, "AtoB"))
    b = torch.from_numpy(load_images(files, (size, size), True, "BtoA"))
    _train_l1(gen, a, b, steps, lr, qat=_QATSchedule(gen, steps, qat_steps, [a, b]))
    return {"name": "edges2shoes_subset", "root": str(root), "source_dir": "train", "test_dir": "val",
            "layout": "side_by_side", "direction": "AtoB"}


def _stand_in_cyclegan(gen: nn.Module, data_root: Path, size: int, steps: int, n_images: int, lr: float,
                       qat_steps: int = 0) -> dict:
    """L1 regression of horse2zebra trainA to :func:`_cyclegan_target`; returns the dataset entry."""
    root = data_root / "horse2zebra"
    files = list_images(root / "trainA", "training folder")[-n_images:]  # calibration takes the first 100
    a = torch.from_numpy(load_images(files, (size, size)))
    _train_l1(gen, a, _cyclegan_target(a), steps, lr, qat=_QATSchedule(gen, steps, qat_steps, [a]))
    return {"name": "horse2zebra", "root": str(root), "source_dir": "trainA", "test_dir": "testA",
            "direction": "AtoB"}


def _stand_in_dcgan(gen: nn.Module, data_root: Path, size: int, steps: int, n_images: int, lr: float,
                    qat_steps: int = 0) -> dict:
    """GAN training on the partial CIFAR-10 (at DCGAN's lr 2e-4 whatever ``lr``); returns the dataset entry."""
    z = torch.randn(100, gen.channels["input"], 1, 1, generator=torch.Generator().manual_seed(1))
    _train_dcgan(gen, data_root / "cifar10_partial" / "cifar10_partial.npz", steps, lr=2e-4,
                 qat=_QATSchedule(gen, steps, qat_steps, [z], noise=True))
    return {"name": "cifar10_partial", "root": str(data_root / "cifar10_partial")}


#: How each family's stand-in is trained (see the module docstring).
_STAND_INS = {"pix2pix": _stand_in_pix2pix, "cyclegan": _stand_in_cyclegan, "dcgan": _stand_in_dcgan}


class _QATSchedule:
    """The int8 simulation of a stand-in's last ``qat_steps`` training steps (:mod:`compress.qat`), its ranges
    recalibrated every :data:`compress.qat.RECALIBRATION_INTERVAL` steps on ``inputs`` (tensors of generator inputs
    in batches of 16; ``noise``: the input is noise, its range calibrated)."""

    def __init__(self, gen: nn.Module, steps: int, qat_steps: int, inputs: list[torch.Tensor], noise: bool = False):
        self.start = max(0, steps - qat_steps) if qat_steps else steps
        self.sim = QuantizationSimulation(gen, None if noise else IMAGE_RANGE) if qat_steps else None
        self.batches = [t[i:i + 16] for t in inputs for i in range(0, t.shape[0], 16)]

    def at(self, step: int):
        """The context of training step ``step`` (0-based): the simulation from ``start`` on, else nothing."""
        if self.sim is None or step < self.start:
            return contextlib.nullcontext()
        if (step - self.start) % RECALIBRATION_INTERVAL == 0:
            self.sim.calibrate(self.batches)
        return self.sim


def _train_l1(gen: nn.Module, a: torch.Tensor, b: torch.Tensor, steps: int, lr: float, batch: int = 8,
              qat: _QATSchedule | None = None) -> None:
    opt = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen.train()
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        idx = torch.randint(0, a.shape[0], (batch,), generator=g)
        x, y = a[idx], b[idx]
        flip = torch.rand(()) < 0.5
        if flip:
            x, y = x.flip(3), y.flip(3)
        with qat.at(step) if qat is not None else contextlib.nullcontext():
            loss = (gen(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def _train_dcgan(gen: nn.Module, npz: Path, steps: int, lr: float, batch: int = 32,
                 qat: _QATSchedule | None = None) -> None:
    from compress.models import DCGANDiscriminator

    with np.load(npz) as data:
        x = data["x_train"][:4096]
    real_all = uint8_to_float(torch.from_numpy(x))
    disc = DCGANDiscriminator(ndf=gen.ngf)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    gen.train()
    disc.train()
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        real = real_all[torch.randint(0, real_all.shape[0], (batch,), generator=g)]
        z = torch.randn(batch, gen.channels["input"], 1, 1, generator=g)
        with qat.at(step) if qat is not None else contextlib.nullcontext():
            fake = gen(z)
        loss_d = bce(disc(real), torch.ones(batch)) + bce(disc(fake.detach()), torch.zeros(batch))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = bce(disc(fake), torch.ones(batch))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
