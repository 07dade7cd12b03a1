"""Finding and decoding image files, with errors that name the file.

Every image is fully decoded (``Image.load()``) and converted to 8-bit RGB. Truncated files raise:
this module never sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` (PIL's default, ``False``, makes
``load()`` raise ``OSError: image file is truncated``), so a half-written JPEG is never silently
padded with grey.
"""
from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile

from compress.errors import InputError

LOGGER = logging.getLogger("coronetgan.data")

#: Suffixes the pix2pix/CycleGAN reference code (``data/image_folder.py``) accepts, plus .webp/.tif and
#: pytorch-fid's .pgm (``IMAGE_EXTENSIONS`` of pytorch_fid/fid_score.py).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp", ".pgm")

_WARNED_TRUNCATED = False


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name ends with one of :data:`IMG_EXTENSIONS` (case-insensitive)."""
    return str(path).lower().endswith(IMG_EXTENSIONS)


def walk_files(folder: str | os.PathLike, recursive: bool = True) -> Iterator[Path]:
    """The files under ``folder`` (top-down; only the folder itself unless ``recursive``), following links to
    folders as the reference ``make_dataset`` does, but each real folder once: a link back to a folder above
    (``loop -> .``) would otherwise list every file again at each depth, or never end."""
    seen: set[str] = set()
    walk = os.walk(folder, followlinks=True)
    for dirpath, dirs, files in (walk if recursive else itertools.islice(walk, 1)):  # top-down: first = folder
        real = os.path.realpath(dirpath)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(dirpath, d)) not in seen]
        for name in files:
            yield Path(dirpath) / name


def list_images(folder: str | os.PathLike, what: str = "image folder", *, min_count: int = 1,
                recursive: bool = True) -> list[Path]:
    """Sorted image files (suffixes :data:`IMG_EXTENSIONS`, case-insensitive) of ``folder``.

    Cheap: only names are checked, nothing is opened.

    Args:
        folder: the folder to list.
        what: what the folder is, for messages (e.g. ``"domain A folder"``, ``"calibration image folder"``).
        min_count: fewest image files accepted (FID/KID statistics need 2).
        recursive: True (default) walks sub-folders too, following links, like the reference
            ``make_dataset``; False lists only the folder itself, like pytorch-fid's folder reading.

    Raises:
        InputError: ``folder`` does not exist, is not a folder, or holds fewer than ``min_count`` image files
            (the message names the folder, the count, the expected suffixes and a few of the other files found).
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{what} {folder} does not exist (expected a folder of images)")
    if not folder.is_dir():
        raise InputError(f"{what} {folder} is not a folder (expected a folder of images)")
    found, others = [], []
    for path in walk_files(folder, recursive):
        (found if is_image_file(path.name) else others).append(path)
    if len(found) < min_count:
        if not found and not others:
            detail = "it is empty"
        else:
            detail = f"it holds {len(found)} image file(s)" + (
                f" and {len(others)} other file(s), e.g. {', '.join(p.name for p in sorted(others)[:3])}"
                if others else "")
        need = "files" if min_count <= 1 else f"at least {min_count} files"
        raise InputError(f"{what} {folder} has {'too few' if found else 'no'} image files ({detail}); expected "
                         f"{need} ending in {', '.join(IMG_EXTENSIONS)}")
    return sorted(found)


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: L/LA/1/P/PA/RGBA/CMYK/YCbCr via ``convert``; 16/32-bit int
    grey is scaled from 0..65535; float images are rejected. RGBA drops alpha, as the reference does."""
    if img.mode == "RGB":
        return img
    if img.mode in ("P", "PA"):
        return img.convert("RGBA").convert("RGB")  # palette transparency goes through RGBA (PIL advice)
    if img.mode.startswith("I"):  # I;16, I;16B, I (16-bit PNG/TIFF grey)
        arr = np.asarray(img, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "F":
        raise InputError(f"{path}: 32-bit float image (mode F) is not supported; expected an 8-bit "
                         "RGB, grayscale, palette or RGBA image")
    return img.convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open ``path``, decode it completely and return an RGB ``PIL.Image`` (size W x H unchanged).

    Grayscale (``L``), palette (``P``), RGBA and other 8-bit modes are converted to RGB.

    Raises:
        InputError: the file is missing, is not an image (e.g. text named ``.jpg``), is truncated or
            otherwise undecodable; the message names the file and the cause.
    """
    path = Path(path)
    global _WARNED_TRUNCATED
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _WARNED_TRUNCATED:  # flipped by other code: say so once
        _WARNED_TRUNCATED = True
        LOGGER.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set outside compress.data): "
                       "truncated images may load silently")
    try:
        with Image.open(path) as img:
            img.load()  # force the full decode: truncated data raises here, not later
            rgb = _to_rgb(img, path)
            return rgb.copy() if rgb is img else rgb  # a copy survives closing the file
    except InputError:
        raise
    except FileNotFoundError as exc:
        raise InputError(f"{path}: file not found (expected an image file)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: not a readable image ({type(exc).__name__}: {exc}); expected a "
                         "complete image file") from exc
