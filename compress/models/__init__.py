"""Reference GAN networks with prunable widths, and rebuilding a pruned generator from a run.

``build_generator(arch)`` / ``build_discriminator`` turn an architecture description (family + constructor
keyword arguments, per-latent channel counts included) into a plain ``nn.Module``; ``load_generator(run_dir)``
also loads ``generator.pt`` and checks that the weights fit the architecture.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from compress.errors import InputError
from compress.models.base import FIXED_LATENTS, INPUT, OUTPUT, PrunableConv, PrunableNetwork
from compress.models.dcgan import DCGANDiscriminator, DCGANGenerator
from compress.models.patchgan import PatchGANDiscriminator
from compress.models.resnet import ResnetGenerator
from compress.models.unet import UNetGenerator

FAMILIES = ("pix2pix", "cyclegan", "dcgan")
GENERATORS = {"pix2pix": UNetGenerator, "cyclegan": ResnetGenerator, "dcgan": DCGANGenerator}

__all__ = ["FAMILIES", "GENERATORS", "FIXED_LATENTS", "INPUT", "OUTPUT", "PrunableConv", "PrunableNetwork",
           "UNetGenerator", "ResnetGenerator", "DCGANGenerator", "DCGANDiscriminator", "PatchGANDiscriminator",
           "build_generator", "build_discriminator", "generator_input_shape", "load_architecture",
           "load_generator"]


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise InputError(f"model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return family


def build_generator(arch: Mapping[str, Any]) -> PrunableNetwork:
    """Build the plain generator described by ``arch`` = {"family": ..., "generator": {kwargs}}.

    Raises:
        InputError: unknown family or constructor arguments that the family does not take.
    """
    family = _check_family(arch.get("family", ""))
    kwargs = dict(arch.get("generator", {}))
    try:
        return GENERATORS[family](**kwargs)
    except TypeError as exc:
        raise InputError(f"architecture for {family}: bad generator arguments {sorted(kwargs)}: {exc}") from None


def build_discriminator(family: str, **kwargs) -> PrunableNetwork:
    """The reference discriminator of a family: PatchGAN (pix2pix: 6 input channels, BatchNorm;
    cyclegan: 3 input channels, InstanceNorm) or the DCGAN discriminator."""
    _check_family(family)
    if family == "dcgan":
        return DCGANDiscriminator(**kwargs)
    defaults = {"pix2pix": dict(in_channels=6, norm="batch"), "cyclegan": dict(in_channels=3, norm="instance")}
    return PatchGANDiscriminator(**{**defaults[family], "family": family, **kwargs})


def generator_input_shape(generator: PrunableNetwork, image_size: int = 256, batch: int = 1) -> tuple[int, ...]:
    """Input shape of a generator: (batch, nz, 1, 1) for DCGAN, else (batch, C, size, size)."""
    if generator.family == "dcgan":
        return (batch, generator.channels[INPUT], 1, 1)
    return (batch, generator.channels[INPUT], image_size, image_size)


def load_architecture(run_dir: str | Path) -> dict:
    """Read ``architecture.json`` of a run folder.

    Raises:
        InputError: missing folder/file or invalid JSON.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} does not exist; expected a folder written by `python -m compress`")
    path = run_dir / "architecture.json"
    if not path.is_file():
        raise InputError(f"{path} is missing; expected the architecture file that `python -m compress` writes "
                         "at the end of a run (is the run finished?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from None


def load_generator(run_dir: str | Path, weights: str = "generator.pt") -> tuple[PrunableNetwork, dict]:
    """Rebuild the pruned plain generator of a run and load its weights (``weights_only=True``).

    Returns:
        (generator in eval mode, architecture dict).
    Raises:
        InputError: missing/corrupt ``generator.pt``, or weights whose names/shapes do not match
            ``architecture.json`` (each mismatch is named).
    """
    run_dir = Path(run_dir)
    arch = load_architecture(run_dir)
    generator = build_generator(arch)
    path = run_dir / weights
    if not path.is_file():
        raise InputError(f"{path} is missing; expected the generator state_dict written at the end of the run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt archives
        raise InputError(f"{path} could not be read as a torch state_dict ({type(exc).__name__}: {exc}); "
                         "the file is corrupt or not a generator checkpoint") from None
    if not isinstance(state, dict):
        raise InputError(f"{path} holds a {type(state).__name__}; expected a state_dict")
    own = generator.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [f"{k}: weights {tuple(state[k].shape)} vs architecture {tuple(v.shape)}"
                 for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InputError(f"{path} does not match {run_dir / 'architecture.json'}: {shown}")
    generator.load_state_dict(state)
    return generator.eval(), arch
