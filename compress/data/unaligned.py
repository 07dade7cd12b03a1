"""Unpaired domains for CycleGAN (reference ``data/unaligned_dataset.py``): ``ROOT/PHASEA/``, ``ROOT/PHASEB/``."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from compress.data.aligned import check_direction
from compress.data.images import list_images, load_rgb
from compress.data.transforms import CROP_SIZE, LOAD_SIZE, Preprocess, apply, sample_params
from compress.data.validate import ScanCache, check_image, filter_items
from compress.errors import InputError

LOGGER = logging.getLogger("coronetgan.data")


class UnalignedDataset(Dataset):
    """Two unpaired image domains; item ``{"A": (3,C,C), "B": (3,C,C), "path_A": str, "path_B": str}``.

    float32 in [-1, 1], C = ``crop_size`` ((N, 3, C, C) when batched). As in the CycleGAN reference,
    ``len = max(len(A), len(B))``, item i takes ``A[i % len(A)]`` and a random B (``serial=True``:
    ``B[i % len(B)]``); A and B get independent crops/flips.

    Args:
        root: folder holding ``{phase}A/`` and ``{phase}B/`` (e.g. ``horse2zebra/``).
        phase: ``train`` or ``test``.
        direction: ``AtoB`` or ``BtoA`` (``BtoA`` reads domain A from ``{phase}B/`` and B from ``{phase}A/``).
        serial: pick B in order, not at random; default: ``not train`` (serial in eval mode).
        load_size, crop_size, flip, preprocess, train: see :class:`~compress.data.transforms.Preprocess`
            (defaults 286/256/random flip/resize_and_crop: CycleGAN reference options).
        skip_bad, validate, generator: as in :class:`~compress.data.aligned.AlignedDataset`.

    Raises:
        InputError: missing/empty domain folders or bad options (at construction); an unreadable,
            truncated or too-small image (in ``__getitem__``, naming the file).
    """

    def __init__(self, root: str | os.PathLike, phase: str = "train", direction: str = "AtoB",
                 serial: bool | None = None, load_size: int = LOAD_SIZE, crop_size: int = CROP_SIZE,
                 flip: bool | float = True, preprocess: str = "resize_and_crop", train: bool = True,
                 skip_bad: bool = False, validate: bool = False, generator: torch.Generator | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"unaligned dataset folder {self.root} "
                             + ("is a file" if self.root.exists() else "does not exist") + " (expected a folder "
                             f"holding {phase}A/ and {phase}B/)")
        dirs = (self.root / f"{phase}A", self.root / f"{phase}B")
        if check_direction(direction):
            dirs = dirs[::-1]
        self.dir_a, self.dir_b = dirs
        self.opt = Preprocess(load_size, crop_size, flip, preprocess, train)
        self.serial = (not train) if serial is None else bool(serial)
        self.generator = generator
        self.paths_a = list_images(self.dir_a, "domain A folder")
        self.paths_b = list_images(self.dir_b, "domain B folder")
        self.skipped: list[tuple[Path, str]] = []
        if skip_bad or validate:
            cache = ScanCache(self.root)
            check = lambda p: check_image(p, self.opt, cache=cache)  # noqa: E731
            try:
                self.paths_a, bad_a = filter_items(self.paths_a, check, skip_bad, str(self.dir_a), progress=True)
                self.paths_b, bad_b = filter_items(self.paths_b, check, skip_bad, str(self.dir_b), progress=True)
            finally:
                cache.save()
            self.skipped = bad_a + bad_b
            if self.skipped:
                LOGGER.warning("%s: %d bad file(s) skipped in total", self.root, len(self.skipped))

    def __len__(self) -> int:
        return max(len(self.paths_a), len(self.paths_b))

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        path_a = self.paths_a[index % len(self.paths_a)]
        if self.serial:
            path_b = self.paths_b[index % len(self.paths_b)]
        else:
            path_b = self.paths_b[int(torch.randint(0, len(self.paths_b), (), generator=self.generator))]
        out = {}
        for key, path in (("A", path_a), ("B", path_b)):
            img = load_rgb(path)
            out[key] = apply(img, sample_params(img.size, self.opt, self.generator), self.opt, path)
        return {**out, "path_A": str(path_a), "path_B": str(path_b)}
