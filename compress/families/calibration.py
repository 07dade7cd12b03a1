"""Calibration (representative dataset) and held-out inputs of a run's generator, NCHW float32.

The two kinds the families use (:meth:`compress.families.base.Family.input_sets`; the int8 export and the
parity gates of :mod:`export` read them):

* :func:`image_input_sets`: real **source-domain** images of the run's dataset (``architecture.json``
  ``"dataset"``, written by ``python -m compress``). ``root`` is the dataset folder, ``source_dir`` the training
  folder of the source domain (``trainA``, or ``train`` for side-by-side A|B files), ``test_dir`` the held-out
  folder (``testA``, ``val``...). When ``test_dir`` is absent it is derived from ``source_dir``
  (``train*`` -> ``test*`` or ``val*``); when that does not exist either, the last ``heldout`` images of the
  source folder are held out and never used for calibration. Side-by-side files (width == 2 x height,
  edges2shoes) are split: the left half is A, the right half B; ``direction`` ``AtoB`` (default) takes A.
  Each image is converted to RGB, resized to the generator's H x W (bicubic, as the pix2pix/CycleGAN test
  transforms do when load size == crop size), and scaled ``x / 127.5 - 1`` to [-1, 1].
* :func:`noise_input_sets`: z ~ N(0, 1) of shape (nz, 1, 1); calibration uses seed :data:`CALIBRATION_SEED`,
  held-out inputs seed :data:`HELDOUT_SEED` (different streams, so they never coincide).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from compress.data.codec import uint8_to_float
from compress.data.images import list_images, load_rgb
from compress.errors import InputError

LOGGER = logging.getLogger("coronetgan.export")

CALIBRATION_SEED = 0
HELDOUT_SEED = 1


@dataclass
class InputSets:
    """Calibration and held-out inputs, NCHW float32 in [-1, 1] (or N(0, 1) noise for DCGAN)."""

    calibration: np.ndarray
    heldout: np.ndarray
    description: dict
    #: the image files behind ``calibration``, in order (empty for noise): a pix2pix export reads the other half
    #: of exactly these pairs (export/representative.py)
    calibration_files: tuple[Path, ...] = ()


def image_to_input(img: Image.Image, size: tuple[int, int], half: str | None = None) -> np.ndarray:
    """One RGB image -> (3, H, W) float32 in [-1, 1].

    Args:
        img: RGB image.
        size: (H, W) of the generator input.
        half: "A" (left half) / "B" (right half) of a side-by-side A|B image, or None for the whole image.
    """
    if half is not None:
        w, h = img.size
        img = img.crop((0, 0, w // 2, h)) if half == "A" else img.crop((w // 2, 0, w, h))
    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), Image.BICUBIC)
    return uint8_to_float(np.asarray(img, dtype=np.uint8))


def load_images(files: Sequence[Path], size: tuple[int, int], side_by_side: bool | None = None,
                direction: str = "AtoB") -> np.ndarray:
    """Load image files as (N, 3, H, W) float32 in [-1, 1].

    ``side_by_side`` None: decided per file (width == 2 x height means an A|B pair). Raises InputError for
    unreadable files (the message names the file).
    """
    out = []
    for path in files:
        img = load_rgb(Path(path))
        sbs = side_by_side if side_by_side is not None else img.size[0] == 2 * img.size[1]
        half = ("A" if direction != "BtoA" else "B") if sbs else None
        out.append(image_to_input(img, size, half))
    return np.stack(out).astype(np.float32)


def noise_inputs(count: int, nz: int, seed: int) -> np.ndarray:
    """(count, nz, 1, 1) float32 samples of N(0, 1) from ``numpy.random.default_rng(seed)``."""
    return np.random.default_rng(seed).standard_normal((count, nz, 1, 1)).astype(np.float32)


def noise_input_sets(family: str, nz: int, *, calibration_dir: str | os.PathLike | None, calibration_count: int,
                     heldout_count: int, need_calibration: bool) -> InputSets:
    """Seeded N(0, 1) inputs (count, nz, 1, 1) for the generator of a noise-input ``family``;
    ``calibration_dir`` is ignored (with a warning)."""
    if calibration_dir is not None:
        LOGGER.warning("--calibration-dir is ignored for %s: its input is noise z ~ N(0, 1)", family)
    count = calibration_count if need_calibration else 0
    return InputSets(noise_inputs(count, nz, CALIBRATION_SEED), noise_inputs(heldout_count, nz, HELDOUT_SEED),
                     {"kind": "noise", "distribution": "N(0,1)", "shape": [nz, 1, 1],
                      "calibration_seed": CALIBRATION_SEED, "heldout_seed": HELDOUT_SEED,
                      "calibration_count": count, "heldout_count": heldout_count})


def _derive_test_dir(root: Path, source_dir: str) -> Path | None:
    """The held-out twin of a training folder: ``train*`` -> ``test*``, else ``val*``, when it exists."""
    for t in ("test", "val"):
        cand = root / (t + source_dir[len("train"):])
        if cand.is_dir():
            return cand
    return None


def _derive_train_dir(root: Path, source_dir: str) -> Path | None:
    """The training twin of a held-out folder: ``test*``/``val*`` -> ``train*``, when it exists."""
    for prefix in ("test", "val"):
        if source_dir.startswith(prefix):
            cand = root / ("train" + source_dir[len(prefix):])
            if cand.is_dir():
                return cand
    return None


def image_input_sets(dataset: Mapping[str, Any], size: tuple[int, int], *,
                     calibration_dir: str | os.PathLike | None, calibration_count: int, heldout_count: int,
                     need_calibration: bool) -> InputSets:
    """Source-domain images of the run's dataset (see the module docstring), (N, 3, H, W) in [-1, 1].

    Args:
        dataset: ``architecture.json``'s ``"dataset"`` (``root``, ``source_dir``, ``test_dir``, ``layout``,
            ``direction``).
        size: (H, W) of the generator input.
        calibration_dir, calibration_count, heldout_count, need_calibration: see
            :meth:`compress.families.base.Family.input_sets`.
    Raises:
        InputError: no dataset root/source_dir and no ``calibration_dir``; an empty or unreadable folder; a
            single folder too small to hold both sets.
    """
    ds = dict(dataset or {})
    direction = ds.get("direction", "AtoB")
    sbs = True if ds.get("layout") == "side_by_side" else None
    root = Path(ds["root"]) if ds.get("root") else None
    source = (root / ds["source_dir"]) if root is not None and ds.get("source_dir") else None
    if source is None and calibration_dir is None:
        raise InputError("architecture.json has no dataset root/source_dir; expected "
                         '"dataset": {"name", "root", "source_dir"} or pass --calibration-dir DIR')
    heldout_dir: Path | None = None
    if root is not None:
        if ds.get("test_dir") and (root / ds["test_dir"]).is_dir():
            heldout_dir = root / ds["test_dir"]
        elif source is not None:
            if source.name.startswith("train"):
                heldout_dir = _derive_test_dir(root, source.name)
            else:  # the architecture names a test folder: hold it out, calibrate on its train twin
                heldout_dir = source
                source = _derive_train_dir(root, source.name) or source
    cal_dir = Path(calibration_dir) if calibration_dir is not None else source
    if heldout_dir is None:
        heldout_dir = cal_dir
    heldout_files = list_images(heldout_dir, what="held-out image folder")
    cal_files: list[Path] = []
    if need_calibration:
        cal_files = list_images(cal_dir, what="calibration image folder")
    same_folder = heldout_dir.resolve() == Path(cal_dir).resolve()
    # one folder: disjoint parts (the last images held out); else the first images of the held-out folder
    heldout_files = heldout_files[-heldout_count:] if same_folder else heldout_files[:heldout_count]
    # never calibrate on a held-out image, however the folders were named (relative, symlinked, or a calibration
    # folder that contains the held-out one: list_images is recursive)
    held_paths = {f.resolve() for f in heldout_files}
    overlap = [f for f in cal_files if f.resolve() in held_paths]
    cal_files = [f for f in cal_files if f.resolve() not in held_paths]
    if overlap and not same_folder:
        LOGGER.warning("calibration folder %s holds %d of the held-out images (%s); they are left out of the "
                       "calibration", cal_dir, len(overlap), heldout_dir)
    if need_calibration and not cal_files:
        raise InputError(f"calibration image folder {cal_dir} holds only {len(overlap)} images, all "
                         "needed as held-out inputs; expected more images or a separate --calibration-dir")
    if need_calibration and len(cal_files) < calibration_count:
        LOGGER.warning("calibration folder %s has %d images, fewer than the %d asked for: using all of them",
                       cal_dir, len(cal_files), calibration_count)
    cal_files = cal_files[:calibration_count]
    cal = load_images(cal_files, size, sbs, direction) if need_calibration else np.zeros((0, 3, *size), np.float32)
    held = load_images(heldout_files, size, sbs, direction)
    return InputSets(cal, held, calibration_files=tuple(cal_files) if need_calibration else (), description={
        "kind": "images", "value_range": [-1, 1], "scaling": "x / 127.5 - 1", "resize": "bicubic",
        "size_hw": list(size), "direction": direction,
        "calibration_dir": str(cal_dir) if need_calibration else None, "calibration_count": len(cal_files),
        "heldout_dir": str(heldout_dir), "heldout_count": len(heldout_files),
        "heldout_files": [f.name for f in heldout_files], "heldout_left_out_of_calibration": len(overlap)})
