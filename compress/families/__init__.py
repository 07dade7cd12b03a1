"""The registry of GAN families: every family is declared once, as a :class:`~compress.families.base.Family`.

:data:`FAMILIES` maps a family name (``--model``, ``architecture.json``'s ``"family"``) to its object, in the
order the command lines list them; :func:`get_family` looks one up, :func:`register` adds one. The trainer,
evaluation and export ask the family object for everything family-specific. A new family is one module with
a ``Family`` subclass, registered below.
"""
from __future__ import annotations

from compress.errors import InputError
from compress.families.base import Family
from compress.families.cyclegan import CycleGAN
from compress.families.dcgan import DCGAN
from compress.families.pix2pix import Pix2Pix
from compress.models.base import PrunableNetwork

__all__ = ["FAMILIES", "Family", "generator_input_shape", "get_family", "register"]

#: Registered families by name, in registration order.
FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` under ``family.name`` and return it.

    Raises:
        ValueError: a family of that name is already registered (a programming error, not user input).
    """
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name!r} is already registered ({FAMILIES[family.name]!r})")
    FAMILIES[family.name] = family
    return family


def get_family(name: str, what: str = "model family") -> Family:
    """The registered family called ``name``.

    Args:
        name: family name, e.g. ``"cyclegan"``.
        what: how the value is named in the error (a flag such as ``--model``, or a file).
    Raises:
        InputError: no family of that name; the message names it and the registered ones.
    """
    family = FAMILIES.get(name)
    if family is None:
        raise InputError(f"{what} {name!r}: expected one of {', '.join(FAMILIES)}")
    return family


def generator_input_shape(generator: PrunableNetwork, image_size: int = 256, batch: int = 1) -> tuple[int, ...]:
    """Input shape (NCHW) of a plain generator of a registered family (``generator.family``), e.g.
    (batch, 3, size, size) for the image-to-image families, (batch, nz, 1, 1) for DCGAN.

    Raises:
        InputError: the generator's family is not registered.
    """
    return get_family(generator.family).input_shape(generator, image_size, batch)


register(Pix2Pix())
register(CycleGAN())
register(DCGAN())
