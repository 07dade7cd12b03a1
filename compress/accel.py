"""The fast single-GPU path: every setting that changes when a run trains on CUDA, in one place (issue 18).

On a CUDA device a run gets

* **bf16 autocast** (``--precision``; ``auto`` = bf16 on CUDA) around the forward passes and losses of both GAN
  steps (:func:`compress.step.gan_step`); the backward passes, the Adam steps and the proximal step (eq. 5)
  stay outside it, on the fp32 parameters. The hypernetwork's weight generation (eqs. 1-4) is kept in fp32 even
  inside the autocast region (:meth:`compress.hyper.network.HyperNetwork.generated_weights`): a generated
  weight is a sum of m = 8 products plus a bias (eq. 4) whose terms can be much larger than the sum, and autocast
  would run eq. 4's ``baddbmm`` on factors rounded to bf16, an error bounded relative to the terms, not to the
  weight. In fp32 each weight is rounded once, by the convolution's own cast, to within 2^-9 (0.2%) of itself, as any
  weight of a plain network under autocast. No GradScaler: bf16 has fp32's exponent range (PyTorch AMP docs).
* **channels_last** memory (``--channels-last``, on by default on CUDA) for the networks and the image batches
  (NHWC is what cuDNN's tensor-core convolutions run on; PyTorch's channels_last tutorial),
* **cuDNN autotuning** (``torch.backends.cudnn.benchmark``: each convolution shape is timed once and the fastest
  algorithm kept; the shapes of a run are fixed),
* the training set **held in GPU memory** (``--data-on-device``, off by default; :mod:`compress.data.device`),
* optional **torch.compile** (``--compile``) of the plain networks (:meth:`Accel.prepare_networks`),
* fused Adam (:meth:`compress.trainer.Trainer.build_optimizers`, on the CPU too).

On any other device every option is ignored (and logged when it was asked for), so a CPU run computes what it
computed before this module existed (``tests/test_accel.py`` compares generator weights bit for bit).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
import torch.nn as nn


LOGGER = logging.getLogger("coronetgan.accel")

#: values of ``--precision``: ``auto`` is bf16 on CUDA, fp32 elsewhere.
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class Accel:
    """The device settings of one run (see the module docstring). Build it with :meth:`for_run`; the
    constructor takes the settings as they are, on any device (tests use it to run the CUDA path's code on
    the CPU).

    Attributes:
        device: the run's device.
        bf16: autocast the GAN steps' forward passes to bfloat16.
        channels_last: NHWC memory for networks and 4-d image batches.
        data_on_device: hold the training set on ``device`` (:class:`compress.data.device.DeviceBatches`).
        compile: ``nn.Module.compile()`` the plain (not hypernetwork-driven) networks.
    """

    device: torch.device
    bf16: bool = False
    channels_last: bool = False
    data_on_device: bool = False
    compile: bool = False

    @classmethod
    def for_run(cls, cfg, device: torch.device) -> "Accel":
        """The settings of run ``cfg`` (a :class:`compress.config.RunConfig`) on ``device``: the requested ones on
        CUDA (and ``cudnn.benchmark`` switched on), none elsewhere."""
        if device.type != "cuda":
            asked = [flag for flag, on in (("--precision bf16", cfg.precision == "bf16"),
                                           ("--data-on-device", cfg.data_on_device), ("--compile", cfg.compile))
                     if on]
            if asked:
                LOGGER.info("%s: CUDA-only, ignored on device %s (CPU runs stay as they are)", ", ".join(asked),
                            device)
            return cls(device)
        # autotune once per convolution shape; a run's shapes are fixed, so the search pays it in its first steps
        torch.backends.cudnn.benchmark = True
        return cls(device, bf16=cfg.precision in ("auto", "bf16"), channels_last=cfg.channels_last,
                   data_on_device=cfg.data_on_device, compile=cfg.compile)

    def describe(self) -> str:
        """The active settings in words, for the log."""
        on = [name for name, flag in (("bf16 autocast", self.bf16), ("channels_last", self.channels_last),
                                      ("data on device", self.data_on_device), ("torch.compile", self.compile))
              if flag]
        if self.device.type == "cuda":
            on.append("cudnn.benchmark")
        return ", ".join(on) or "none (plain fp32)"

    def autocast(self) -> ContextManager:
        """The autocast region of a GAN step's forward passes and losses (a no-op unless bf16)."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def prepare_networks(self, *nets: nn.Module) -> None:
        """channels_last and ``compile`` applied in place to ``nets`` before their optimizer is built.

        A hypernetwork-driven network keeps its hypernetwork parameters as they are (W2 is 4-d, (n, c, k^2, m),
        but no image: in NHWC order every eq. 4 product would first copy it back); only the wrapped network is
        converted. ``compile`` skips hypernetwork-driven networks: their convolution weights are new tensors every
        step (generated by eqs. 1-4 and handed to the network by ``torch.func.functional_call``), which a compiled
        forward would guard on and recompile for. ``nn.Module.compile`` keeps the state_dict keys, so
        checkpoints and ``generator.pt`` are unchanged.
        """
        from compress.hyper import HyperNetwork

        for net in nets:
            hyper = isinstance(net, HyperNetwork)
            if self.channels_last:
                (net.network if hyper else net).to(memory_format=torch.channels_last)
            if self.compile and not hyper:
                net.compile()

    def prepare_batch(self, batch):
        """A batch already on the device with its 4-d floating tensors in channels_last memory (when on)."""
        if not self.channels_last:
            return batch

        def fmt(v):
            if torch.is_tensor(v) and v.dim() == 4 and v.is_floating_point():
                return v.contiguous(memory_format=torch.channels_last)
            return v

        if isinstance(batch, dict):
            return {k: fmt(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return [fmt(v) for v in batch]
        return fmt(batch)

    def held_batches(self, dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                     drop_last: bool = True, num_workers: int = 0) -> "HeldBatches":
        """``--data-on-device``: endless batches from the training set held in device memory
        (:class:`compress.data.device.DeviceBatches`, shuffled with ``seed``, this ``rank``'s share)."""
        from compress.data.device import DeviceBatches

        held = DeviceBatches(dataset, batch_size, self.device, seed=seed, rank=rank, world_size=world_size,
                             drop_last=drop_last, num_workers=num_workers)
        return HeldBatches(held, self.prepare_batch)


class HeldBatches:
    """The batches of ``--data-on-device`` behind the interface of :class:`compress.data.stream.BatchStream`.

    Their position is not part of a checkpoint: a resumed run draws a fresh order (logged), unlike the default
    loader, whose resumed order is the uninterrupted run's.
    """

    def __init__(self, held, prepare: Callable):
        self._it, self._prepare = iter(held), prepare

    def __iter__(self) -> "HeldBatches":
        return self

    def __next__(self):
        return self._prepare(next(self._it))

    def state_dict(self) -> dict:
        """Nothing: the position in data held on the device is not saved (:meth:`load_state_dict` says so)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Warn that a resumed run draws a fresh batch order (``state`` is empty)."""
        LOGGER.warning("--data-on-device: the resumed run draws a fresh batch order (the position of the data held "
                       "on the device is not saved)")
