"""Aligned image pairs for Pix2Pix (reference ``data/aligned_dataset.py``), two layouts.

* combined: ``ROOT/PHASE/*.jpg``, each file holds A and B side by side (edges2shoes: 512x256, A = edge map
  on the left, B = photo on the right). A and B get the SAME crop and flip.
* split halves: ``ROOT/PHASEA/N_A.jpg`` paired with ``ROOT/PHASEB/N_B.jpg``, or ``N.jpg`` with ``N.jpg``
  (facades_tiny: A = photo, B = label map). Pairs are matched by file stem with a trailing ``_A``/``_B``
  removed.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from compress.data.images import is_image_file, list_images, load_rgb
from compress.data.transforms import CROP_SIZE, LOAD_SIZE, Preprocess, apply, sample_params
from compress.data.validate import ScanCache, check_image, filter_items
from compress.errors import InputError

LOGGER = logging.getLogger("coronetgan.data")
DIRECTIONS = ("AtoB", "BtoA")
LAYOUTS = ("auto", "combined", "split")


def check_direction(direction: str) -> bool:
    """Return True for ``BtoA``. Raises :class:`InputError` for anything but ``AtoB``/``BtoA``."""
    if direction not in DIRECTIONS:
        raise InputError(f"direction={direction!r}: expected 'AtoB' or 'BtoA'")
    return direction == "BtoA"


def pair_key(path: Path, folder: Path) -> str:
    """The name that pairs ``path`` (under ``folder``) with its partner in the twin folder: the relative path
    without suffix, a trailing ``_A``/``_B`` removed (``12_A.jpg`` and ``12_B.jpg``, or ``12.jpg`` in both)."""
    rel = path.relative_to(folder).with_suffix("")
    stem = rel.name[:-2] if rel.name.endswith(("_A", "_B")) else rel.name
    return str(rel.with_name(stem))


def pair_split_folders(dir_a: Path, dir_b: Path, skip_bad: bool = False) -> tuple[list[tuple[Path, Path]], list]:
    """Pair the files of ``dir_a`` and ``dir_b`` by stem (``_A``/``_B`` suffix removed).

    Returns (sorted pairs, unpaired files). Raises :class:`InputError` on a missing/empty folder, a stem
    used twice in one folder, or unpaired files unless ``skip_bad``.
    """
    maps = []
    for folder in (dir_a, dir_b):
        keyed: dict[str, Path] = {}
        for p in list_images(folder, "aligned image folder"):
            key = pair_key(p, folder)
            if key in keyed:
                raise InputError(f"{folder}: {keyed[key].name} and {p.name} both map to pair key {key!r}; "
                                 "expected one file per pair name")
            keyed[key] = p
        maps.append(keyed)
    a_map, b_map = maps
    pairs = [(a_map[k], b_map[k]) for k in sorted(a_map) if k in b_map]
    unpaired = [a_map[k] for k in sorted(set(a_map) - set(b_map))] + [b_map[k] for k in sorted(set(b_map) - set(a_map))]
    if unpaired and not skip_bad:
        names = ", ".join(str(p) for p in unpaired[:5])
        raise InputError(f"{len(unpaired)} file(s) in {dir_a} / {dir_b} have no partner (expected N_A.jpg in "
                         f"{dir_a.name}/ with N_B.jpg in {dir_b.name}/, or N.jpg in both): {names}")
    if not pairs:
        raise InputError(f"{dir_a} and {dir_b}: no file pairs found (expected matching names)")
    return pairs, unpaired


class AlignedDataset(Dataset):
    """Paired images for Pix2Pix; item ``{"A": (3,C,C) float32, "B": (3,C,C) float32, "path": str}``.

    Values in [-1, 1]; C = ``crop_size`` (batched by a DataLoader: (N, 3, C, C)). ``path`` is the combined
    file, or the file A was read from in the split layout.

    Args:
        root: dataset folder (e.g. ``edges2shoes/`` or ``facades_tiny/``).
        phase: ``train``, ``val`` or ``test``: the layout is ``root/phase/`` (combined) or
            ``root/phaseA/`` + ``root/phaseB/`` (split); ``root`` itself may also be a combined folder.
        direction: ``AtoB`` or ``BtoA`` (swaps what is returned as A and B).
        layout: ``auto``, ``combined`` or ``split``.
        load_size, crop_size, flip, preprocess, train: see :class:`~compress.data.transforms.Preprocess`
            (defaults 286/256/random flip/resize_and_crop: pix2pix reference options).
        skip_bad: decode every file once now, drop bad ones (and unpaired files), log the count on logger
            ``coronetgan.data``; ``skipped`` lists ``(path, reason)``.
        validate: decode every file now and raise on the first bad one (default: checked lazily per item).
            Both scans show a progress bar and reuse the results of an earlier scan of unchanged files
            (:class:`compress.data.validate.ScanCache`).
        generator: optional ``torch.Generator`` for the random crop/flip (default: torch's global RNG).

    Raises:
        InputError: missing/empty folders, no recognisable layout, unpaired files, bad options (at
            construction); an unreadable, truncated or too-small file (in ``__getitem__``, naming it).
    """

    def __init__(self, root: str | os.PathLike, phase: str = "train", direction: str = "AtoB",
                 layout: str = "auto", load_size: int = LOAD_SIZE, crop_size: int = CROP_SIZE,
                 flip: bool | float = True, preprocess: str = "resize_and_crop", train: bool = True,
                 skip_bad: bool = False, validate: bool = False, generator: torch.Generator | None = None):
        self.root = Path(root)
        self.btoa = check_direction(direction)
        if layout not in LAYOUTS:
            raise InputError(f"layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
        self.opt = Preprocess(load_size, crop_size, flip, preprocess, train)
        self.generator = generator
        self.layout = self._detect_layout(phase, layout)
        self.skipped: list[tuple[object, str]] = []
        cache = ScanCache(self.root) if skip_bad or validate else None
        if self.layout == "combined":
            self.items: list = list_images(self.folder, "aligned A|B image folder")
            check = lambda p: check_image(p, self.opt, split_ab=True, cache=cache)  # noqa: E731
        else:
            self.items, unpaired = pair_split_folders(self.dir_a, self.dir_b, skip_bad)
            self.skipped += [(p, "no partner file") for p in unpaired]
            check = lambda ab: (check_image(ab[0], self.opt, cache=cache),  # noqa: E731
                                check_image(ab[1], self.opt, cache=cache))
        if cache is not None:
            try:
                self.items, bad = filter_items(self.items, check, skip_bad, str(self.root / phase), progress=True)
            finally:
                cache.save()
            self.skipped += bad
        if self.skipped:
            LOGGER.warning("%s: %d item(s) skipped in total (--skip-bad), %d usable",
                           self.root, len(self.skipped), len(self.items))

    def _detect_layout(self, phase: str, layout: str) -> str:
        combined, dir_a, dir_b = self.root / phase, self.root / f"{phase}A", self.root / f"{phase}B"
        if not self.root.is_dir():
            raise InputError(f"aligned dataset folder {self.root} "
                             + ("is a file" if self.root.exists() else "does not exist") + f" (expected {combined}/ or "
                             f"{dir_a}/ + {dir_b}/)")
        if layout in ("auto", "combined") and combined.is_dir():
            self.folder = combined
            return "combined"
        if layout in ("auto", "split") and dir_a.is_dir() and dir_b.is_dir():
            self.dir_a, self.dir_b = dir_a, dir_b
            return "split"
        if layout in ("auto", "combined") and any(is_image_file(p) for p in os.listdir(self.root)):
            self.folder = self.root
            return "combined"
        raise InputError(f"{self.root}: no aligned layout for phase {phase!r}; expected {combined}/ holding "
                         f"A|B side-by-side images, or {dir_a}/ and {dir_b}/ holding paired images")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        if self.layout == "combined":
            ab = load_rgb(item)
            w, h = ab.size
            if w < 2:
                raise InputError(f"{item}: image is {w}x{h}; expected A and B side by side (width >= 2)")
            a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
            path_a = path_b = path = item
        else:
            path_a, path_b = item
            a, b = load_rgb(path_a), load_rgb(path_b)
            path = path_a
        if self.btoa:
            a, b, path_a, path_b = b, a, path_b, path_a
            path = path_a
        params = sample_params(a.size, self.opt, self.generator)  # one draw: same crop and flip for A and B
        return {"A": apply(a, params, self.opt, path_a), "B": apply(b, params, self.opt, path_b), "path": str(path)}
