"""The representative dataset of int8: the run's source-domain images, plus, for paired (pix2pix) data, the
target-domain photos of the same training pairs.

int8 fixes every activation range from the representative dataset (min/max). A pix2pix generator calibrated on
edge maps alone meets photos with activations 2-3x beyond those ranges (measured on a CoroNetGAN-75%
edges2shoes U-Net, docs/export.md: clipped, the worst unseen photo fell to 21 dB), and users do feed it photos. The
training pairs hold photos already: the B side of each pair. Adding them makes the ranges cover both kinds of
input; the unseen photos of :mod:`export.photos` are still never used. CycleGAN's source images are photos
already; DCGAN's input is noise.

Which files: side-by-side A|B files (edges2shoes): the other half of the calibration files themselves; A/B
folders (``trainA`` + ``trainB``): the partners of the calibration files in the twin folder (paired by name as
the aligned loader pairs them), or its first files when no name pairs.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from compress.data.aligned import pair_key
from compress.data.images import list_images
from compress.families import FAMILIES
from compress.families.calibration import InputSets, load_images


def _twin_folder(folder: Path) -> Path | None:
    name = folder.name
    for a, b in (("A", "B"), ("B", "A")):
        if name.endswith(a) and (folder.parent / (name[:-1] + b)).is_dir():
            return folder.parent / (name[:-1] + b)
    return None


def target_domain_images(arch: Mapping[str, Any], sets: InputSets) -> tuple[np.ndarray, dict] | None:
    """The target-domain images of a pix2pix run's calibration pairs (module docstring), (N, 3, H, W) float32 in
    [-1, 1], with a JSON-ready description; None for families without ``calibrates_with_target_domain``
    (:class:`compress.families.Family`), for runs without calibration images, or
    when the dataset layout has no paired target images."""
    desc = sets.description
    family = FAMILIES.get(arch.get("family"))
    if family is None or not family.calibrates_with_target_domain or not desc.get("calibration_dir") \
            or len(sets.calibration) == 0:
        return None
    ds = dict(arch.get("dataset") or {})
    cal_dir = Path(desc["calibration_dir"])
    size = tuple(desc["size_hw"])
    cal_files = list(sets.calibration_files)  # exactly the files behind the calibration inputs
    if ds.get("layout") == "side_by_side":
        other = "BtoA" if ds.get("direction", "AtoB") != "BtoA" else "AtoB"
        images = load_images(cal_files, size, True, other)
        source = f"{cal_dir} (the other half of the same {len(cal_files)} A|B files)"
    else:
        twin = _twin_folder(cal_dir)
        if twin is None:
            return None
        partners = {pair_key(p, twin): p for p in list_images(twin, "target-domain image folder")}
        files = [partners[k] for k in (pair_key(f, cal_dir) for f in cal_files) if k in partners]
        if files:  # the partners of the calibration files (so none of a held-out image)
            source = f"{twin} (the partners of the {len(files)} calibration files)"
        else:  # names that do not pair: photos of the target domain all the same (they are for the ranges)
            files = list_images(twin, "target-domain image folder")[:len(cal_files)]
            source = f"{twin} (its first {len(files)} files: no file name pairs with a calibration file)"
        images = load_images(files, size, False)
    return images, {"target_domain_source": source, "target_domain_count": int(len(images))}


def representative_sets(arch: Mapping[str, Any], sets: InputSets) -> InputSets:
    """``sets`` with the target-domain images appended to its calibration inputs (and the description saying so);
    ``sets`` itself when there are none."""
    extra = target_domain_images(arch, sets)
    if extra is None:
        return sets
    images, desc = extra
    return dataclasses.replace(sets, calibration=np.concatenate([sets.calibration, images]).astype(np.float32),
                               description={**sets.description, **desc})
