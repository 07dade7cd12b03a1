"""Training batches in a seeded order whose position is saved in checkpoints: :class:`BatchStream`.

A resumed run must read the same images, with the same random crops and flips, as the uninterrupted run
would have. ``DataLoader(shuffle=True)`` draws each epoch's order and every crop from torch's global RNG (in
worker processes from seeds drawn at each epoch's start), so the order cannot be continued from a checkpoint.
Here the order and the augmentation depend only on the seed, the epoch and the position:

* epoch ``e``'s order is ``torch.randperm(n)`` of a generator seeded from (seed, e);
* the item in slot ``k`` of epoch ``e`` gets its own ``torch.Generator`` seeded from (seed, e, k) for its random
  crop/flip (and CycleGAN's random B image), set as the dataset's ``generator`` (the datasets of
  :mod:`compress.data` take one); so workers, prefetching and restarts do not change what an item is;
* :meth:`BatchStream.state_dict` is (epoch, batches consumed in it, dataset size); a resumed stream skips
  to that position without loading the skipped batches.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

LOGGER = logging.getLogger("coronetgan.data")
#: Tags that keep the seeds of the epoch orders, the items and the DataLoader workers apart.
ORDER, ITEM, WORKERS = 0, 1, 2


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence: nearby inputs give unrelated seeds)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]) >> 1


def _base(dataset: Dataset) -> Dataset:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


class SeededItems(Dataset):
    """``dataset`` indexed by ``(index, item_seed)``: the item's randomness comes from a generator seeded with
    ``item_seed`` (via the base dataset's ``generator`` attribute; a dataset without one is read as it is)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.base = _base(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, item_seed = key
        if hasattr(self.base, "generator"):
            self.base.generator = torch.Generator().manual_seed(item_seed)
        return self.dataset[index]


class BatchStream:
    """Endless training batches (module docstring), each moved to ``device``.

    Args:
        dataset: the training items.
        batch_size: items per batch; ``drop_last`` drops an epoch's short last batch.
        seed: the run's seed.
        num_workers: DataLoader worker processes (0: load in this process).
        device: where batches go.
        rank, world_size: data-parallel training (torchrun): every rank draws the same epoch order and takes
            every ``world_size``-th batch from ``rank`` on (equal counts: the last incomplete round is dropped).
        transform: applied to each batch once on the device (e.g. the channels_last memory format).
    """

    def __init__(self, dataset: Dataset, batch_size: int, drop_last: bool, seed: int, num_workers: int = 0,
                 device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1,
                 transform: Callable[[Any], Any] | None = None):
        self.items = SeededItems(dataset)
        self.size = len(dataset)
        self.batch_size, self.drop_last, self.seed = batch_size, drop_last, seed
        self.num_workers, self.device = num_workers, torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.transform = transform
        self.epoch, self.position = 0, 0
        self._it: Iterator | None = None

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """Epoch ``epoch``'s batches as lists of (dataset index, item seed)."""
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(_seed(self.seed, ORDER, epoch))).tolist()
        keys = [(index, _seed(self.seed, ITEM, epoch, slot)) for slot, index in enumerate(order)]
        batches = [keys[i:i + self.batch_size] for i in range(0, self.size, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.world_size > 1:
            rounds = len(batches) // self.world_size
            batches = batches[self.rank: rounds * self.world_size: self.world_size]
        return batches

    @property
    def size_per_rank(self) -> int:
        """Training items this rank reads per epoch (the whole set without data parallelism)."""
        return self.size if self.world_size == 1 else max(1, self.size // self.world_size)

    def _loader(self) -> Iterator:
        batches = self.epoch_batches(self.epoch)[self.position:]
        # a private generator: a DataLoader iterator draws its workers' base seed from it, and a draw from torch's
        # global RNG here would shift the dropout / noise of every later step of a resumed run
        private = torch.Generator().manual_seed(_seed(self.seed, WORKERS, self.epoch))
        return iter(DataLoader(self.items, batch_sampler=batches, num_workers=self.num_workers, generator=private))

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Any:
        while True:
            if self._it is None:
                self._it = self._loader()
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                self.epoch, self.position = self.epoch + 1, 0
                continue
            self.position += 1
            batch = to_device(batch, self.device)
            return self.transform(batch) if self.transform is not None else batch

    def state_dict(self) -> dict[str, int]:
        """Where the stream is: ``{"epoch", "position"}`` (batches consumed in that epoch) and ``"size"``."""
        return {"epoch": self.epoch, "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from :meth:`state_dict`. A dataset of another size (bad images now skipped with
        ``--skip-bad``) cannot continue the old order: the next epoch starts, with a warning."""
        self._it = None
        if int(state.get("size", self.size)) != self.size:
            LOGGER.warning("the training set has %d items, the checkpoint's order was for %d: starting epoch %d "
                           "afresh (the resumed run reads other batches than the interrupted one would have)",
                           self.size, state["size"], int(state["epoch"]) + 1)
            self.epoch, self.position = int(state["epoch"]) + 1, 0
            return
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def to_device(batch, device: torch.device):
    """A batch (tensor, list/tuple or dict of tensors and other values) with its tensors moved to ``device``."""
    if isinstance(batch, dict):
        return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return [v.to(device) if torch.is_tensor(v) else v for v in batch]
    return batch.to(device)
