"""What a family's networks accept: constructor options (``--generator``/``--discriminator`` KEY=VALUE) and
image sizes (``--image-size``), checked before anything is built.

A family declares :class:`Option` objects per constructor argument a user may set
(:attr:`compress.families.base.Family.generator_options`) and its image-size rule
(:meth:`compress.families.base.Family.check_image_size`); :func:`check_options` applies the declarations to
the values of a run configuration, so that a bad value is refused up front with the flag, the value and what
is expected, not by a traceback from inside a network constructor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from compress.errors import InputError


@dataclass(frozen=True)
class Option:
    """One constructor argument a user may set.

    Attributes:
        kind: ``int``, ``float`` or ``str``.
        minimum: smallest accepted number (int/float), inclusive; None: no lower bound.
        below: float options: values must be smaller than this (exclusive); None: no upper bound.
        choices: accepted strings (str options).
        meaning: what the argument is, for messages ("generator width").
    """

    kind: type
    minimum: float | None = None
    below: float | None = None
    choices: tuple[str, ...] = ()
    meaning: str = ""

    def expected(self) -> str:
        """What the option accepts, in words (the end of an error message)."""
        if self.kind is str:
            return "one of " + ", ".join(self.choices)
        what = "an integer" if self.kind is int else "a finite number"
        parts = [f">= {self.minimum:g}" if self.minimum is not None else "",
                 f"< {self.below:g}" if self.below is not None else ""]
        bounds = " and ".join(p for p in parts if p)
        return f"{what} {bounds}".strip()

    def check(self, flag: str, key: str, value: Any) -> None:
        """Raise :class:`InputError` naming ``flag key=value`` when ``value`` is not acceptable."""
        ok = True
        if self.kind is str:
            ok = isinstance(value, str) and (not self.choices or value in self.choices)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            ok = False
        elif self.kind is int and not isinstance(value, int):
            ok = False
        elif not math.isfinite(value):
            ok = False
        else:
            ok = (self.minimum is None or value >= self.minimum) and (self.below is None or value < self.below)
        if not ok:
            meaning = f" ({self.meaning})" if self.meaning else ""
            raise InputError(f"{flag} {key}={value!r}: expected {self.expected()}{meaning}")


#: Width of a network: channels of its first layer.
WIDTH = Option(int, minimum=1, meaning="width of the first layer, channels")
#: Normalisation layers (compress.models.base.norm_layer).
NORM = Option(str, choices=("batch", "instance"), meaning="normalisation layers")


def check_options(options: Mapping[str, Option] | None, values: Mapping[str, Any], flag: str) -> None:
    """Check the constructor arguments ``values`` against a family's declared ``options``.

    Args:
        options: name -> :class:`Option`, or None when the family declares none (its constructor checks them).
        values: the run configuration's arguments (``RunConfig.generator`` or ``.discriminator``).
        flag: ``--generator`` or ``--discriminator``, for messages.
    Raises:
        InputError: an argument the family does not declare (the message lists the declared ones) or a value
            its :class:`Option` refuses.
    """
    if options is None:
        return
    if not isinstance(values, Mapping):
        raise InputError(f"{flag}: {values!r} is not a set of KEY=VALUE arguments; expected keys among "
                         f"{', '.join(options)}")
    for key, value in values.items():
        if key not in options:
            raise InputError(f"{flag} {key}={value!r}: unknown key {key!r}; expected one of {', '.join(options)}")
        options[key].check(flag, key, value)
