"""``open_dataset``: the right Dataset class for a dataset name or folder (used by the training CLI)."""
from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from compress.data.aligned import AlignedDataset
from compress.data.catalog import find_spec
from compress.data.cifar import CIFAR10Dataset, find_cifar_source
from compress.data.fetch import DEFAULT_DEST, resolve_dataset
from compress.data.unaligned import UnalignedDataset
from compress.errors import InputError

KINDS = ("aligned", "unaligned", "cifar10")


def infer_kind(root: Path) -> str | None:
    """``aligned``/``unaligned``/``cifar10`` from a known folder name (``facades_tiny`` -> aligned) or from a
    CIFAR npz/batches layout; None when only the user can tell (e.g. trainA/ + trainB/ fits both)."""
    spec = find_spec(root.name) or (find_spec(root.stem) if root.is_file() else None)
    if spec is not None:
        return spec.kind
    try:
        find_cifar_source(root)
        return "cifar10"
    except InputError:
        pass
    return None


def open_dataset(name_or_path: str | os.PathLike, kind: str | None = None, phase: str = "train",
                 mirror: str | os.PathLike | None = None, data_dir: str | os.PathLike = DEFAULT_DEST,
                 **options) -> Dataset:
    """Resolve ``name_or_path`` (:func:`~compress.data.fetch.resolve_dataset`) and build its Dataset.

    ``kind`` is inferred for known datasets; ``phase`` is the folder phase (``train``/``test``/``val``) or the
    CIFAR split (``train``/``test``). ``options`` go to :class:`AlignedDataset`, :class:`UnalignedDataset`
    or :class:`CIFAR10Dataset` (e.g. ``train=False``, ``crop_size=256``, ``skip_bad=True``).

    Raises:
        InputError: unknown kind, a kind that cannot be inferred, or anything the loaders raise.
    """
    root = resolve_dataset(name_or_path, mirror, data_dir)
    kind = kind or infer_kind(root)
    if kind is None:
        raise InputError(f"{root}: cannot tell the dataset kind from its name; pass kind= one of {', '.join(KINDS)}")
    if kind == "aligned":
        return AlignedDataset(root, phase, **options)
    if kind == "unaligned":
        return UnalignedDataset(root, phase, **options)
    if kind == "cifar10":
        return CIFAR10Dataset(root, phase, **options)
    raise InputError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
