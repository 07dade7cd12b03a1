"""The exported input shape of a compress run, and its representative (calibration) and held-out inputs.

:func:`export_input_shape` is the shape the ONNX/TFLite files take: the run's training shape, or S x S
(``--input-size S``) for a generator whose input is an image. The image generators of this project are fully
convolutional (convolutions, InstanceNorm/BatchNorm, reflection padding: no layer fixes H or W), so the
weights trained at 128 x 128 run unchanged at 256 x 256; a phone app feeds the size it has, and latency is
measured at that size (paper Table 3: 256 x 256). A generator whose input is a latent vector (DCGAN: z of
nz x 1 x 1 in, 32 x 32 out) has its output size fixed by its layers and refuses another size.

The run's family declares where the inputs come from (:meth:`compress.families.base.Family.input_sets`; the
two kinds, source-domain images in [-1, 1] resized to the exported H x W and seeded noise, are described in
:mod:`compress.families.calibration`). This module checks the counts and the input shape and asks the family.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from compress.errors import InputError, first_line
from compress.families import get_family
from compress.families.calibration import InputSets

#: Default number of calibration images (issue 4: "100 or more by default").
DEFAULT_CALIBRATION_COUNT = 100
#: Default number of held-out inputs for the parity gates.
DEFAULT_HELDOUT_COUNT = 8


def _training_shape(arch: Mapping[str, Any]) -> list[int]:
    shape = [int(s) for s in arch.get("input_shape", [])]
    if len(shape) != 4:
        raise InputError(f"architecture input_shape {shape}; expected [1, C, H, W]")
    return shape


def takes_image_input(arch: Mapping[str, Any], generator: torch.nn.Module | None = None) -> bool:
    """Whether the generator of ``arch`` takes an image, so that ``--input-size`` applies: its family's input
    shape follows the image size (pix2pix, CycleGAN; not DCGAN's z). ``generator`` defaults to the one
    ``arch`` describes (built with initial weights). Raises InputError for an unknown family or bad arguments."""
    from compress.artifacts import build_generator

    generator = generator if generator is not None else build_generator(arch)
    family = get_family(arch.get("family"), "architecture family")
    return family.input_shape(generator, 64)[2:] != family.input_shape(generator, 128)[2:]


def export_input_shape(arch: Mapping[str, Any], generator: torch.nn.Module,
                       input_size: int | None = None) -> tuple[int, int, int, int]:
    """The (1, C, H, W) input shape to export ``generator`` (the run described by ``arch``) at.

    ``input_size`` None: the run's training shape (``arch["input_shape"]``). Otherwise (1, C, S, S) from the
    family's :meth:`~compress.families.base.Family.input_shape`, checked by one forward pass of zeros: the
    output must come back S x S (a fully convolutional image generator).

    Raises:
        InputError: ``--input-size`` for a generator whose input is not an image (its family's input shape
            does not follow the image size: DCGAN's z), or a side the generator cannot take (its
            downsamplings do not divide it, or the output comes back at another size); a bad ``input_shape``
            in ``arch``, or one the generator cannot take; an unknown family.
    """
    trained = _training_shape(arch)
    if input_size is None:
        try:    # the recorded shape must be one the generator takes (architecture.json can be edited)
            with torch.no_grad():
                generator.eval()(torch.zeros(*trained))
        except RuntimeError as exc:
            raise InputError(f"architecture.json: input_shape {list(trained)} does not fit the generator "
                             f"({first_line(exc) or type(exc).__name__}); expected the input shape the run was "
                             "trained with") from None
        return tuple(trained)
    family = get_family(arch.get("family"), "architecture family")
    if not takes_image_input(arch, generator):
        with torch.no_grad():
            out = generator.eval()(torch.zeros(*trained))
        fixed = "x".join(map(str, out.shape[2:]))
        if tuple(out.shape[2:]) == (input_size, input_size):
            return tuple(trained)  # the size asked for is the one the architecture gives
        raise InputError(f"--input-size {input_size}: the {family.name} generator takes a "
                         f"{'x'.join(map(str, trained[1:]))} input (a latent vector, not an image); its output size "
                         f"is fixed at {fixed} by its layers. Export it without --input-size (or with --input-size "
                         f"{out.shape[-1]})")
    shape = tuple(int(s) for s in family.input_shape(generator, input_size))
    try:
        with torch.no_grad():
            out = generator.eval()(torch.zeros(*shape))
    except RuntimeError as exc:
        raise InputError(f"--input-size {input_size}: the {family.name} generator (trained at "
                         f"{trained[2]}x{trained[3]}) cannot take {input_size}x{input_size} inputs ({exc}); expected "
                         "a side that its downsampling layers divide evenly, e.g. 256") from None
    if tuple(out.shape[2:]) != (input_size, input_size):
        raise InputError(f"--input-size {input_size}: the {family.name} generator returns "
                         f"{'x'.join(map(str, out.shape[2:]))} outputs for {input_size}x{input_size} inputs; "
                         "expected a side that its downsampling layers divide evenly, e.g. 256")
    return shape


def resolve_input_sets(arch: Mapping[str, Any], *, input_shape: tuple[int, ...] | None = None,
                       calibration_dir: str | os.PathLike | None = None,
                       calibration_count: int = DEFAULT_CALIBRATION_COUNT,
                       heldout_count: int = DEFAULT_HELDOUT_COUNT, need_calibration: bool = True) -> InputSets:
    """Calibration and held-out inputs for the run described by ``arch``, at ``input_shape``.

    Args:
        arch: the run's architecture dict (``family``, ``input_shape``, ``dataset``).
        input_shape: the exported (1, C, H, W) (:func:`export_input_shape`); images are resized to its H x W.
            None: the architecture's training shape.
        calibration_dir: folder of source-domain images overriding the run's (``--calibration-dir``).
        calibration_count: number of calibration inputs (images are taken in sorted order; fewer are used,
            with a warning, when the folder holds fewer).
        heldout_count: number of held-out inputs for the parity gates.
        need_calibration: False skips loading calibration images (fp32/fp16-only exports).
    Raises:
        InputError: counts < 1, an input shape that is not [1, C, H, W], an unknown family, or what the
            family's inputs raise (dataset folder missing from the architecture or the disk, an empty or
            unreadable calibration folder).
    """
    if calibration_count < 1 or heldout_count < 1:
        raise InputError(f"--calibration-count {calibration_count} / held-out count {heldout_count}: expected >= 1")
    shape = [int(s) for s in input_shape] if input_shape is not None else _training_shape(arch)
    family = get_family(arch.get("family"), "architecture family")
    return family.input_sets(arch, shape, calibration_dir=calibration_dir, calibration_count=calibration_count,
                             heldout_count=heldout_count, need_calibration=need_calibration)
