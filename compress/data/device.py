"""A small training set held in GPU memory: ``--data-on-device`` (issue 18, the fast single-GPU path).

At the paper's CycleGAN size a GPU step takes tens of milliseconds, about what decoding, resizing and cropping two
256 px JPEGs costs on one CPU core; holding the decoded images on the GPU takes the loader off the critical path.

What is held: each image once, **resized to the load size and not yet cropped**, as uint8 (N, 3, L, L) (CIFAR-10:
the (N, 3, 32, 32) uint8 array as it is); every batch then draws its random crop and flip on the CPU RNG and slices
them out on the device. The pixels of a crop are those the CPU loader produces for the same crop and flip: the
resize is the dataset's own (bicubic to ``load_size``, done once through the dataset in eval mode), cropping and
flipping copy pixels, and the float conversion is :func:`compress.data.codec.uint8_to_float`
(``tests/test_accel.py``). What differs from the DataLoader path is only which random numbers are drawn: the
shuffle and the crops use two ``torch.Generator`` objects of their own (seeded by the run's seed; the crops also by
the rank), so a run with ``--data-on-device`` is reproducible but draws other crops than one without.

Supported: :class:`~compress.data.CIFAR10Dataset` and the aligned/unaligned image datasets with the reference
``resize_and_crop`` preprocessing (every family's training set), also inside a ``Subset`` (``--max-train-images``).
horse2zebra at 286 px: 2,401 images x 245 KiB = 0.57 GiB.
"""
from __future__ import annotations

import copy
import logging
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from compress.data.aligned import AlignedDataset
from compress.data.cifar import CIFAR10Dataset
from compress.data.codec import float_to_uint8, uint8_to_float
from compress.data.transforms import Preprocess
from compress.data.unaligned import UnalignedDataset
from compress.errors import InputError

LOGGER = logging.getLogger("coronetgan.data")

#: Largest share of the GPU's memory the held training set may take (the networks need the rest).
MAX_MEMORY_SHARE = 0.25


def crop_flip(images: torch.Tensor, index: int, xy: tuple[int, int] | None, flip: bool, size: int) -> torch.Tensor:
    """One training image: ``images[index]`` (uint8 (3, L, L)) cropped at ``xy`` = (x, y) to ``size`` pixels (no
    crop when ``xy`` is None) and mirrored left-right when ``flip`` -- what
    :func:`compress.data.transforms.apply` does to the resized image. Returns uint8 (3, size, size), a view or
    a copy."""
    img = images[index]
    if xy is not None:
        x, y = xy
        img = img[:, y:y + size, x:x + size]
    return img.flip(-1) if flip else img


def _unwrap(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """(the dataset under any ``Subset`` wrappers, the indices of it that ``dataset`` holds)."""
    indices = list(range(len(dataset)))
    while isinstance(dataset, Subset):
        indices = [int(dataset.indices[i]) for i in indices]
        dataset = dataset.dataset
    return dataset, indices


def _decode(dataset: Dataset, indices: list[int], keys: tuple[str, ...], num_workers: int) -> dict[str, torch.Tensor]:
    """Items ``indices`` of ``dataset`` (float images in [-1, 1]) back to uint8 (N, 3, H, W), per key."""
    loader = DataLoader(Subset(dataset, indices), batch_size=32, shuffle=False, num_workers=num_workers)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for batch in loader:
        for k in keys:
            parts[k].append(float_to_uint8(batch[k], channels_last=False))
    return {k: torch.cat(v) for k, v in parts.items()}


class DeviceBatches:
    """Endless shuffled training batches drawn from a training set held on ``device`` (module docstring).

    Args:
        dataset: the training set as the trainer built it (possibly a ``Subset``).
        batch_size: items per batch (per rank).
        device: where the images are held and the batches are made.
        seed: seeds the shuffle (the same on every rank) and, with ``rank``, the crops and flips.
        rank, world_size: this process's share: every epoch's permutation is split ``perm[rank::world_size]``.
        drop_last: drop an epoch's last incomplete batch (the trainer's DataLoader setting).
        num_workers: DataLoader workers for the one-off decoding.
        max_bytes: refuse a training set larger than this (bytes); default: a quarter of the GPU's memory on
            CUDA, no limit elsewhere.
    Batches have the DataLoader's structure: ``{"A", "B", "path_A", "path_B"}`` (unaligned), ``{"A", "B",
    "path"}`` (aligned), ``[images, labels]`` (CIFAR-10); images float32 (N, 3, C, C) in [-1, 1] on ``device``.

    Raises:
        InputError: a dataset or preprocessing this class does not hold, or a training set over ``max_bytes``
            (the message names ``--data-on-device``).
    """

    def __init__(self, dataset: Dataset, batch_size: int, device: torch.device, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True, num_workers: int = 0, max_bytes: int | None = None):
        base, self.indices = _unwrap(dataset)
        self.base, self.batch_size, self.device = base, batch_size, torch.device(device)
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.perm_rng = torch.Generator().manual_seed(seed)
        self.aug_rng = torch.Generator().manual_seed(seed * 1_000_003 + rank)
        if isinstance(base, CIFAR10Dataset):
            self.kind, self.flip_prob, self.crop = "cifar", (0.5 if base.flip else 0.0), None
            held = {"images": base.images[self.indices]}
            self.labels = base.labels[self.indices].to(self.device)
        elif isinstance(base, (AlignedDataset, UnalignedDataset)):
            opt: Preprocess = base.opt
            if opt.preprocess != "resize_and_crop" or not opt.train:
                raise InputError(f"--data-on-device: the training set uses preprocess={opt.preprocess!r} "
                                 f"(train={opt.train}); expected the reference 'resize_and_crop' training "
                                 "preprocessing, or run without --data-on-device")
            self.kind = "aligned" if isinstance(base, AlignedDataset) else "unaligned"
            self.flip_prob, self.crop, self.load = opt.flip_prob, opt.crop_size, opt.load_size
            plain = copy.copy(base)                          # the same files, resized to load_size, no crop/flip
            plain.opt = Preprocess(opt.load_size, opt.load_size, False, "resize_and_crop", train=False)
            if self.kind == "unaligned":
                plain.serial = True
                self.paths_a = [str(base.paths_a[i % len(base.paths_a)]) for i in self.indices]
                self.paths_b = [str(p) for p in base.paths_b]
                held = {"A": _decode(plain, self.indices, ("A",), num_workers)["A"],
                        "B": _decode(plain, list(range(len(base.paths_b))), ("B",), num_workers)["B"]}
            else:
                self.paths = [str(base.items[i] if base.layout == "combined" else base.items[i][0])
                              for i in self.indices]
                held = _decode(plain, self.indices, ("A", "B"), num_workers)
        else:
            raise InputError(f"--data-on-device: {type(base).__name__} is not held on the device; expected a "
                             "CIFAR10Dataset, AlignedDataset or UnalignedDataset, or run without --data-on-device")
        size = sum(t.numel() for t in held.values())
        if max_bytes is None and self.device.type == "cuda":
            max_bytes = int(MAX_MEMORY_SHARE * torch.cuda.get_device_properties(self.device).total_memory)
        if max_bytes is not None and size > max_bytes:
            raise InputError(f"--data-on-device: the training set needs {size / 2**30:.2f} GiB on {self.device}, "
                             f"more than the {max_bytes / 2**30:.2f} GiB allowed ({MAX_MEMORY_SHARE:.0%} of the "
                             "GPU's memory); expected a smaller set (--max-train-images) or no --data-on-device")
        self.held = {k: v.to(self.device) for k, v in held.items()}
        LOGGER.info("--data-on-device: %d training items held on %s (%.1f MiB uint8)", len(self.indices),
                    self.device, size / 2**20)

    def _params(self) -> tuple[tuple[int, int] | None, bool]:
        """One crop corner and flip, drawn as :func:`compress.data.transforms.sample_params` draws them."""
        xy = None
        if self.crop is not None:
            span = self.load - self.crop + 1
            xy = (int(torch.randint(0, span, (), generator=self.aug_rng)),
                  int(torch.randint(0, span, (), generator=self.aug_rng)))
        return xy, bool(torch.rand((), generator=self.aug_rng).item() < self.flip_prob)

    def _images(self, key: str, rows: list[int], params: list) -> torch.Tensor:
        u8 = torch.stack([crop_flip(self.held[key], r, xy, flip, self.crop) for r, (xy, flip) in zip(rows, params)])
        return uint8_to_float(u8, channels_last=False)

    def _batch(self, rows: list[int]):
        if self.kind == "cifar":
            params = [self._params() for _ in rows]
            return [self._images("images", rows, params), self.labels[rows]]
        if self.kind == "aligned":
            params = [self._params() for _ in rows]          # one draw: the same crop and flip for A and B
            return {"A": self._images("A", rows, params), "B": self._images("B", rows, params),
                    "path": [self.paths[r] for r in rows]}
        rows_b = [int(torch.randint(0, len(self.paths_b), (), generator=self.aug_rng)) for _ in rows]
        params_a = [self._params() for _ in rows]
        params_b = [self._params() for _ in rows]
        return {"A": self._images("A", rows, params_a), "B": self._images("B", rows_b, params_b),
                "path_A": [self.paths_a[r] for r in rows], "path_B": [self.paths_b[r] for r in rows_b]}

    def __iter__(self) -> Iterator:
        while True:
            perm = torch.randperm(len(self.indices), generator=self.perm_rng)[self.rank::self.world_size].tolist()
            for start in range(0, len(perm), self.batch_size):
                rows = perm[start:start + self.batch_size]
                if len(rows) < self.batch_size and self.drop_last and len(perm) >= self.batch_size:
                    break
                yield self._batch(rows)
