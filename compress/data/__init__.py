"""Data stage: dataset fetch (official URL or mirror, checksums) and loaders.

Loaders return float32 tensors in [-1, 1], (3, H, W) per item, (N, 3, H, W) batched:

* :class:`AlignedDataset` - Pix2Pix pairs (A|B side by side, or split ``trainA/N_A`` + ``trainB/N_B``).
* :class:`UnalignedDataset` - CycleGAN domains ``trainA/ trainB/ testA/ testB/``.
* :class:`CIFAR10Dataset` - CIFAR-10 from the npz or the official python batches.

Fetching: :func:`fetch_dataset`, :func:`resolve_dataset`; CLI ``python -m compress.data fetch NAME``.
Bad input raises :class:`compress.errors.InputError` naming the file/folder; logger ``coronetgan.data``.

Names are imported lazily (PEP 562) so that the fetch CLI does not pay for importing torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "AlignedDataset": "aligned", "UnalignedDataset": "unaligned", "CIFAR10Dataset": "cifar",
    "fetch_dataset": "fetch", "resolve_dataset": "fetch", "ENV_MIRROR": "fetch",
    "DATASETS": "catalog", "DatasetSpec": "catalog", "get_spec": "catalog",
    "IMG_EXTENSIONS": "images", "list_images": "images", "load_rgb": "images",
    "Preprocess": "transforms", "LOAD_SIZE": "transforms", "CROP_SIZE": "transforms",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'compress.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"compress.data.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
