"""Representative (calibration) and held-out inputs of a compress run, NCHW float32.

The run's family declares where they come from (:meth:`compress.families.base.Family.input_sets`; the two
kinds, source-domain images in [-1, 1] and seeded noise, are described in :mod:`compress.families.calibration`).
This module checks the counts and the architecture's input shape and asks the family.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from compress.errors import InputError
from compress.families import get_family
from compress.families.calibration import InputSets

#: Default number of calibration images (issue 4: "100 or more by default").
DEFAULT_CALIBRATION_COUNT = 100
#: Default number of held-out inputs for the parity gates.
DEFAULT_HELDOUT_COUNT = 8


def resolve_input_sets(arch: Mapping[str, Any], *, calibration_dir: str | os.PathLike | None = None,
                       calibration_count: int = DEFAULT_CALIBRATION_COUNT,
                       heldout_count: int = DEFAULT_HELDOUT_COUNT, need_calibration: bool = True) -> InputSets:
    """Calibration and held-out inputs for the run described by ``arch``.

    Args:
        arch: the run's architecture dict (``family``, ``input_shape``, ``dataset``).
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
    shape = [int(s) for s in arch.get("input_shape", [])]
    if len(shape) != 4:
        raise InputError(f"architecture input_shape {shape}; expected [1, C, H, W]")
    family = get_family(arch.get("family"), "architecture family")
    return family.input_sets(arch, shape, calibration_dir=calibration_dir, calibration_count=calibration_count,
                             heldout_count=heldout_count, need_calibration=need_calibration)
