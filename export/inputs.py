"""Representative (calibration) and held-out inputs of a compress run, NCHW float32 in [-1, 1].

Where the inputs come from (``architecture.json`` ``"dataset"``, written by ``python -m compress``):

* pix2pix / cyclegan: real **source-domain** images of the run's dataset. ``root`` is the dataset folder,
  ``source_dir`` the training folder of the source domain (``trainA``, or ``train`` for side-by-side A|B
  files), ``test_dir`` the held-out folder (``testA``, ``val``...). When ``test_dir`` is absent it is derived
  from ``source_dir`` (``train*`` -> ``test*`` or ``val*``); when that does not exist either, the last
  ``heldout`` images of the source folder are held out and never used for calibration.
  Side-by-side files (width == 2 x height, edges2shoes) are split: the left half is A, the right half B;
  ``direction`` ``AtoB`` (default) takes A.
  Each image is converted to RGB, resized to the generator's H x W (bicubic, as the pix2pix/CycleGAN test
  transforms do when load size == crop size), and scaled ``x / 127.5 - 1`` to [-1, 1].
* dcgan: the input is z ~ N(0, 1) of shape (nz, 1, 1); calibration uses seed :data:`CALIBRATION_SEED`,
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
from compress.data.images import list_images
from compress.errors import InputError

LOGGER = logging.getLogger("coronetgan.export")

#: Default number of calibration images (issue 4: "100 or more by default").
DEFAULT_CALIBRATION_COUNT = 100
#: Default number of held-out inputs for the parity gates.
DEFAULT_HELDOUT_COUNT = 8
CALIBRATION_SEED = 0
HELDOUT_SEED = 1


def _load_rgb(path: Path) -> Image.Image:
    try:
        from compress.data.images import load_rgb
    except ImportError:  # pragma: no cover
        load_rgb = None
    if load_rgb is not None:
        return load_rgb(path)
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc


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
        img = _load_rgb(Path(path))
        sbs = side_by_side if side_by_side is not None else img.size[0] == 2 * img.size[1]
        half = ("A" if direction != "BtoA" else "B") if sbs else None
        out.append(image_to_input(img, size, half))
    return np.stack(out).astype(np.float32)


def noise_inputs(count: int, nz: int, seed: int) -> np.ndarray:
    """(count, nz, 1, 1) float32 samples of N(0, 1) from ``numpy.random.default_rng(seed)``."""
    return np.random.default_rng(seed).standard_normal((count, nz, 1, 1)).astype(np.float32)


@dataclass
class InputSets:
    """Calibration and held-out inputs, NCHW float32 in [-1, 1] (or N(0, 1) noise for DCGAN)."""

    calibration: np.ndarray
    heldout: np.ndarray
    description: dict


def _derive_test_dir(root: Path, source_dir: str) -> Path | None:
    for train, tests in (("train", ("test", "val")),):
        if source_dir.startswith(train):
            for t in tests:
                cand = root / (t + source_dir[len(train):])
                if cand.is_dir():
                    return cand
    return None


def _derive_train_dir(root: Path, source_dir: str) -> Path | None:
    for prefix in ("test", "val"):
        if source_dir.startswith(prefix):
            cand = root / ("train" + source_dir[len(prefix):])
            if cand.is_dir():
                return cand
    return None


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
        InputError: dataset folder missing from the architecture or the disk, an empty or unreadable
            calibration folder, counts < 1.
    """
    if calibration_count < 1 or heldout_count < 1:
        raise InputError(f"--calibration-count {calibration_count} / held-out count {heldout_count}: expected >= 1")
    shape = [int(s) for s in arch.get("input_shape", [])]
    if len(shape) != 4:
        raise InputError(f"architecture input_shape {shape}; expected [1, C, H, W]")
    family = arch.get("family")
    if family == "dcgan":
        nz = shape[1]
        if calibration_dir is not None:
            LOGGER.warning("--calibration-dir is ignored for dcgan: its input is noise z ~ N(0, 1)")
        return InputSets(noise_inputs(calibration_count if need_calibration else 0, nz, CALIBRATION_SEED),
                         noise_inputs(heldout_count, nz, HELDOUT_SEED),
                         {"kind": "noise", "distribution": "N(0,1)", "shape": [nz, 1, 1],
                          "calibration_seed": CALIBRATION_SEED, "heldout_seed": HELDOUT_SEED,
                          "calibration_count": calibration_count if need_calibration else 0,
                          "heldout_count": heldout_count})
    size = (shape[2], shape[3])
    ds = dict(arch.get("dataset") or {})
    direction = ds.get("direction", "AtoB")
    layout = ds.get("layout")
    sbs = True if layout == "side_by_side" else None
    root = Path(ds["root"]) if ds.get("root") else None
    source = (root / ds["source_dir"]) if root is not None and ds.get("source_dir") else None
    if source is None and calibration_dir is None:
        raise InputError("architecture.json has no dataset root/source_dir; expected "
                         '"dataset": {"name", "root", "source_dir"} or pass --calibration-dir DIR')
    # held-out folder
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
    heldout_files = list_images(heldout_dir, "held-out image folder")
    cal_files: list[Path] = []
    if need_calibration:
        cal_files = list_images(cal_dir, "calibration image folder")
    if heldout_dir.resolve() == Path(cal_dir).resolve():  # one folder: disjoint parts
        heldout_files = heldout_files[-heldout_count:]
        cal_files = [f for f in cal_files if f not in set(heldout_files)]
        if need_calibration and not cal_files:
            raise InputError(f"calibration image folder {cal_dir} holds only {len(heldout_files)} images, all "
                             "needed as held-out inputs; expected more images or a separate --calibration-dir")
    heldout_files = heldout_files[:heldout_count]
    if need_calibration and len(cal_files) < calibration_count:
        LOGGER.warning("calibration folder %s has %d images, fewer than the %d asked for: using all of them",
                       cal_dir, len(cal_files), calibration_count)
    cal_files = cal_files[:calibration_count]
    cal = load_images(cal_files, size, sbs, direction) if need_calibration else np.zeros((0, 3, *size), np.float32)
    held = load_images(heldout_files, size, sbs, direction)
    return InputSets(cal, held, {
        "kind": "images", "value_range": [-1, 1], "scaling": "x / 127.5 - 1", "resize": "bicubic",
        "size_hw": list(size), "direction": direction,
        "calibration_dir": str(cal_dir) if need_calibration else None, "calibration_count": len(cal_files),
        "heldout_dir": str(heldout_dir), "heldout_count": len(heldout_files),
        "heldout_files": [f.name for f in heldout_files]})
