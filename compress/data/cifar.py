"""CIFAR-10 (Krizhevsky 2009) from the project's npz or from the official ``cifar-10-batches-py`` pickles."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from compress.data.codec import uint8_to_float
from compress.errors import InputError

SPLITS = ("train", "test")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))  # official file names
TEST_BATCH = "test_batch"
BATCHES_DIR = "cifar-10-batches-py"  # folder inside the official cifar-10-python.tar.gz
NUM_CLASSES = 10
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Globals a CIFAR batch (a pickled dict of numpy arrays) needs at pickle protocols 0-5, under numpy 1 and 2
# module names; anything else is refused. Protocol 5 rebuilds arrays with ``_frombuffer`` (bytes + dtype +
# shape), which cannot build an object array: numpy refuses object dtypes from a buffer.
_SAFE_GLOBALS = {(f"{core}.{module}", name) for core in ("numpy.core", "numpy._core")
                 for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                                      ("numeric", "_frombuffer"))}
_SAFE_GLOBALS |= {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a CIFAR batch)")
        return super().find_class(module, name)


def _check_arrays(x: np.ndarray, y: np.ndarray, where: str, layout: str) -> None:
    if x.dtype != np.uint8:
        raise InputError(f"{where}: images have dtype {x.dtype}; expected uint8")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{where}: labels have shape {y.shape} dtype {y.dtype}; expected {len(x)} integer labels")
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise InputError(f"{where}: labels range {y.min()}..{y.max()}; expected 0..{NUM_CLASSES - 1}")
    if len(x) == 0:
        raise InputError(f"{where}: holds 0 images; expected at least one ({layout})")


def load_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read ``x_{split}`` (N,32,32,3) uint8 HWC and ``y_{split}`` (N,) from an npz; return NCHW uint8, labels, names.

    Raises:
        InputError: unreadable npz, missing key, wrong shape/dtype, labels outside 0..9.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            need = {f"x_{split}", f"y_{split}"}
            if not need <= keys:
                raise InputError(f"{path}: missing key(s) {', '.join(sorted(need - keys))}; expected "
                                 f"x_train, y_train, x_test, y_test (found: {', '.join(sorted(keys)) or 'none'})")
            x, y = z[f"x_{split}"], z[f"y_{split}"]
            names = tuple(str(n) for n in z["label_names"]) if "label_names" in keys else LABEL_NAMES
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a readable npz file ({type(exc).__name__}: {exc})") from exc
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise InputError(f"{path}: x_{split} has shape {x.shape}; expected (N, 32, 32, 3) uint8 HWC")
    _check_arrays(x, y, f"{path} x_{split}/y_{split}", "npz")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y.astype(np.int64), names


def _load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path}: CIFAR-10 batch file not found (expected the official "
                         f"{BATCHES_DIR}/ files {', '.join(TRAIN_BATCHES)}, {TEST_BATCH})")
    try:
        with open(path, "rb") as fh:
            d = _SafeUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            OSError) as exc:
        raise InputError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(d, dict):
        raise InputError(f"{path}: holds a {type(d).__name__}; expected a pickled dict with b'data' and b'labels'")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise InputError(f"{path}: dict keys {sorted(map(str, d))}; expected b'data' and b'labels'")
    data, labels = np.asarray(data), np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise InputError(f"{path}: b'data' has shape {data.shape}; expected (N, 3072) uint8 (3x32x32 planes)")
    _check_arrays(data, labels, str(path), "official batch")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read the official python batches in ``folder`` (NCHW uint8, int64 labels, label names).

    Raises:
        InputError: a missing batch file or a file that is not an official batch dict.
    """
    files = TRAIN_BATCHES if split == "train" else (TEST_BATCH,)
    parts = [_load_batch(folder / f) for f in files]
    names = LABEL_NAMES
    meta = folder / "batches.meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as fh:
                m = _SafeUnpickler(fh, encoding="bytes").load()
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in m[b"label_names"])
        except Exception:  # noqa: BLE001 - names are cosmetic: keep the canonical ones
            pass
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), names


def find_cifar_source(source: str | os.PathLike) -> tuple[str, Path]:
    """Locate CIFAR-10 data: ``("npz", file)`` or ``("batches", folder)``.

    Accepts an .npz file, a folder holding one .npz, a folder holding ``data_batch_1`` ..., or a folder
    holding ``cifar-10-batches-py/``. Raises :class:`InputError` naming ``source`` otherwise.
    """
    src = Path(source)
    if src.is_file():
        if src.suffix != ".npz":
            raise InputError(f"{src}: expected a CIFAR-10 .npz file or a folder with the official batches")
        return "npz", src
    if not src.is_dir():
        raise InputError(f"CIFAR-10 source {src} does not exist (expected an .npz file, or a folder holding "
                         f"{BATCHES_DIR}/ or data_batch_1..5 + test_batch)")
    for folder in (src, src / BATCHES_DIR):
        if (folder / TRAIN_BATCHES[0]).exists() or (folder / TEST_BATCH).exists():
            return "batches", folder
    npz = sorted(src.glob("*.npz"))
    if len(npz) == 1:
        return "npz", npz[0]
    if len(npz) > 1:
        raise InputError(f"{src}: holds {len(npz)} .npz files ({', '.join(p.name for p in npz)}); pass the file itself")
    raise InputError(f"{src}: no CIFAR-10 data found; expected an .npz (x_train, y_train, x_test, y_test) or "
                     f"the official {BATCHES_DIR}/ files {', '.join(TRAIN_BATCHES)}, {TEST_BATCH}")


class CIFAR10Dataset(Dataset):
    """CIFAR-10 images; item ``(image (3, 32, 32) float32 in [-1, 1], label int)``, batched (N, 3, 32, 32).

    Args:
        source: npz file (keys ``x_train`` (N,32,32,3) uint8 HWC, ``y_train``, ``x_test``, ``y_test``,
            optional ``label_names``) or a folder with the official python batches (``data_batch_1..5``,
            ``test_batch``: pickled dicts, ``b"data"`` (N, 3072) uint8 as R, G, B 32x32 planes,
            ``b"labels"``), or a folder holding either (see :func:`find_cifar_source`).
        split: ``train`` or ``test``.
        flip: random horizontal flip with probability 0.5 (off by default: DCGAN on CIFAR uses none).
        generator: optional ``torch.Generator`` for the flip.

    Attributes: ``images`` uint8 (N, 3, 32, 32), ``labels`` int64 (N,), ``classes`` (10 names).

    Raises:
        InputError: missing source, unknown split, missing keys/files, wrong shapes or dtypes, labels
            outside 0..9 (all at construction; pickles are read with an unpickler that only admits numpy).
    """

    def __init__(self, source: str | os.PathLike, split: str = "train", flip: bool = False,
                 generator: torch.Generator | None = None):
        if split not in SPLITS:
            raise InputError(f"split={split!r}: expected 'train' or 'test'")
        self.kind, self.source = find_cifar_source(source)
        loader = load_npz if self.kind == "npz" else load_batches
        x, y, self.classes = loader(self.source, split)
        self.images = torch.from_numpy(x)
        self.labels = torch.from_numpy(y)
        self.flip = flip
        self.generator = generator

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = uint8_to_float(self.images[index], channels_last=False)
        if self.flip and torch.rand((), generator=self.generator).item() < 0.5:
            img = img.flip(-1)
        return img, int(self.labels[index])
