"""Quantization-aware training (QAT): the int8 file's activation rounding simulated in the generator's forward
pass, so that the last steps of the converging stage train a generator whose int8 file loses less.

The export quantizes after training (post-training quantization, :mod:`quantize.int8`): every activation tensor
gets one int8 scale and zero point per tensor, from the min/max the representative dataset reaches; the generator's
input and output ranges are fixed in advance. Narrow generators lose most of their int8 quality there, in the
activations, not in the per-channel int8 weights (docs/export.md, "Not done"). This module simulates exactly that
rounding during training (Jacob et al., CVPR 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", section 3: fake quantization with a straight-through gradient):

* **Where** (:func:`simulation_points`): the input of every convolution of
  :meth:`~compress.models.base.PrunableNetwork.prunable_convs`, and its output as the int8 file holds it: after
  the BatchNorm that the export folds into it, or, for an InstanceNorm (not folded), both the convolution's
  output and the norm's. The generator's input and output are simulated on their fixed ranges.
* **Ranges** (:meth:`QuantizationSimulation.calibrate`): per-tensor min/max over representative inputs, as the
  export's calibration draws them (the family's source images, plus the paired target-domain images for
  families with ``calibrates_with_target_domain``: :mod:`export.representative`), from the current weights;
  the converging stage recalibrates every :data:`RECALIBRATION_INTERVAL` steps, since the weights move.
* **Rounding**: ``torch.fake_quantize_per_tensor_affine`` on the int8 grid [-128, 127] with TFLite's
  asymmetric scale ``(max - min) / 255`` and a zero point that represents 0 exactly (the range is widened to
  hold 0, as TFLite's quantizer does); its gradient is passed straight through inside the range and is zero
  outside it.

Weights are not simulated: the export's weights are per-output-channel int8 after BatchNorm folding and
equalisation (:mod:`quantize.equalize`), which this stage cannot know; their rounding is the small part of the
loss. Nothing of the simulation is saved: the generator stays a plain float network and the export quantizes it
as any other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from compress.models.base import PrunableNetwork

#: int8 grid of TFLite's activations (asymmetric, signed).
QMIN, QMAX = -128, 127
#: The generator's image range (input of the image families, and every family's output): fixed, not calibrated,
#: as the export fixes it (``quantize.int8.IMAGE_RANGE``).
IMAGE_RANGE = (-1.0, 1.0)
#: Converging steps between two recalibrations of the ranges (the weights move; a range from 50 steps earlier
#: differs by a few percent at the small preset's learning rate).
RECALIBRATION_INTERVAL = 50


@dataclass(frozen=True)
class SimulationPoint:
    """One activation tensor of the int8 file: the input (``where="input"``) or output of ``module`` (a module
    path of the generator; ``""`` is the generator itself), with a fixed range or None (calibrated)."""

    module: str
    where: str
    fixed: tuple[float, float] | None = None


def simulation_points(generator: PrunableNetwork, input_range: tuple[float, float] | None = IMAGE_RANGE
                      ) -> list[SimulationPoint]:
    """The activation tensors the int8 file quantizes (module docstring), in the order of
    ``generator.prunable_convs()``.

    Args:
        generator: a plain (materialised) generator.
        input_range: the fixed range of its input, or None to calibrate it (DCGAN's noise).
    Returns:
        The points; each ``(module, where)`` once.
    """
    modules = dict(generator.named_modules())
    points = [SimulationPoint("", "input", input_range), SimulationPoint("", "output", IMAGE_RANGE)]
    for conv in generator.prunable_convs():
        points.append(SimulationPoint(conv.name, "input"))
        norm = modules.get(conv.norm) if conv.norm else None
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm):   # BatchNorm is folded into the convolution
            points.append(SimulationPoint(conv.name, "output"))
        if norm is not None:
            points.append(SimulationPoint(conv.norm, "output"))
    seen, out = set(), []
    for p in points:
        if (p.module, p.where) not in seen:
            seen.add((p.module, p.where))
            out.append(p)
    return out


def fake_quantize(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``x`` rounded to the int8 grid of the range [lo, hi] (widened to hold 0), straight-through gradient.

    Args:
        x: any float tensor.
        lo, hi: the tensor's range (lo <= hi).
    Returns:
        A tensor of ``x``'s shape, each value one of 256 levels ``scale * (q - zero_point)``.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max((hi - lo) / (QMAX - QMIN), 1e-8)
    zero_point = int(min(QMAX, max(QMIN, round(QMIN - lo / scale))))
    # the kernel takes float32 only (autocast's bf16 activations on CUDA are rounded in float32 and cast back)
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, QMIN, QMAX).to(x.dtype)


class QuantizationSimulation:
    """Int8 activation rounding attached to a generator with forward hooks (module docstring).

    Use::

        sim = QuantizationSimulation(G)
        sim.calibrate([images])       # ranges from the current weights
        with sim:                     # G's forward passes round as the int8 file would
            fake = G(real_A)

    Args:
        generator: a plain (materialised) generator, any family.
        input_range: the fixed range of its input (images: [-1, 1]) or None to calibrate it (noise).
    """

    def __init__(self, generator: PrunableNetwork, input_range: tuple[float, float] | None = IMAGE_RANGE):
        self.generator = generator
        self.points = simulation_points(generator, input_range)
        #: (P, 2) min/max per point; fixed points hold their range, calibrated ones NaN until calibrated
        self.ranges = torch.tensor([p.fixed if p.fixed is not None else (float("nan"),) * 2 for p in self.points],
                                   dtype=torch.float64)
        self._handles: list = []

    @property
    def calibrated(self) -> bool:
        return bool(torch.isfinite(self.ranges).all())

    def _attach(self, on_tensor) -> None:
        modules = dict(self.generator.named_modules())
        for i, p in enumerate(self.points):
            module = modules[p.module]
            if p.where == "input":
                self._handles.append(module.register_forward_pre_hook(
                    lambda _m, args, i=i: (on_tensor(i, args[0]), *args[1:])))
            else:
                self._handles.append(module.register_forward_hook(lambda _m, _args, out, i=i: on_tensor(i, out)))

    def _detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor]) -> None:
        """Set every calibrated point's range to the min/max its tensor reaches over ``batches`` (the generator's
        inputs, e.g. (N, 3, H, W) images in [-1, 1]), with the generator in eval mode (as it is exported) and no
        rounding (as the export's calibration runs the float model).

        Raises:
            ValueError: no batch, or a non-finite activation (the weights are broken).
        """
        lo = torch.full((len(self.points),), float("inf"), dtype=torch.float64)
        hi = -lo.clone()

        def record(i: int, t: torch.Tensor) -> torch.Tensor:
            lo[i] = min(lo[i].item(), t.min().item())
            hi[i] = max(hi[i].item(), t.max().item())
            return t

        was_training = self.generator.training
        self.generator.eval()
        self._attach(record)
        try:
            n = sum(1 for b in batches if self.generator(b) is not None)
        finally:
            self._detach()
            self.generator.train(was_training)
        if n == 0:
            raise ValueError("QuantizationSimulation.calibrate: no batch to calibrate on")
        measured = torch.stack([lo, hi], 1)
        if not bool(torch.isfinite(measured).all()):
            raise ValueError("QuantizationSimulation.calibrate: an activation is not finite")
        fixed = torch.tensor([p.fixed is not None for p in self.points])
        self.ranges = torch.where(fixed[:, None], self.ranges, measured)

    def _round(self, i: int, t: torch.Tensor) -> torch.Tensor:
        lo, hi = self.ranges[i].tolist()
        return fake_quantize(t, lo, hi)

    def __enter__(self) -> "QuantizationSimulation":
        if not self.calibrated:
            raise RuntimeError("QuantizationSimulation: calibrate() before simulating")
        self._attach(self._round)
        return self

    def __exit__(self, *exc) -> None:
        self._detach()

    def state(self) -> dict:
        """The ranges as a checkpoint holds them: ``{"modules": [...], "where": [...], "ranges": (P, 2) tensor}``."""
        return {"modules": [p.module for p in self.points], "where": [p.where for p in self.points],
                "ranges": self.ranges.clone()}

    def load_state(self, state: dict) -> None:
        """Ranges saved by :meth:`state`.

        Raises:
            ValueError: the state names other points (another generator)."""
        if state.get("modules") != [p.module for p in self.points] or \
                state.get("where") != [p.where for p in self.points]:
            raise ValueError("the saved int8 simulation ranges belong to another generator")
        self.ranges = torch.as_tensor(state["ranges"], dtype=torch.float64).clone()


def representative_batches(batches: Sequence[dict], generator_input, target_domain: Sequence[str] = ()
                           ) -> list[torch.Tensor]:
    """The generator inputs that set the simulated ranges: each batch's generator input, plus its target-domain
    images (keys ``target_domain``, e.g. ``("B",)`` for pix2pix AtoB) as the export's representative dataset adds
    them (:mod:`export.representative`).

    Args:
        batches: training batches (dicts of (N, C, H, W) tensors, or the family's batch type).
        generator_input: the recipe's ``generator_input`` (batch -> tensor).
        target_domain: batch keys of the target-domain images to add.
    Returns:
        A list of (N, C, H, W) tensors.
    """
    out = []
    for b in batches:
        out.append(generator_input(b))
        out += [b[k] for k in target_domain]
    return out
