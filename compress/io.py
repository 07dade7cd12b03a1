"""Atomic file writes: nothing already written is lost or left half-written.

Every artifact (checkpoints, reports, manifests, tables, images) is written to a temporary file in
the destination folder and then renamed over the destination with :func:`os.replace`, which is atomic
on POSIX file systems. A crash mid-write leaves either the old file or no file, never a truncated one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it to ``dest``, on error delete it.

    Use for writers that insist on a file name (``torch.save``, ``PIL.Image.save``, onnx2tf...).
    The temporary name keeps the destination's suffix so that format detection by suffix works.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically (temp file + fsync + rename). Returns ``Path(dest)``."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``dest`` atomically. Returns ``Path(dest)``."""
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON to ``dest`` atomically. Returns ``Path(dest)``."""
    return atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, dest: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``dest`` atomically. Returns ``Path(dest)``."""
    import torch

    with atomic_path(dest) as tmp:
        torch.save(obj, tmp)
    return Path(dest)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def replace_dir(tmp: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Rename the finished folder ``tmp`` to ``final``. An existing ``final`` is first renamed aside, then
    deleted once the new folder is in place, so ``final`` is always either the old or the new complete folder."""
    import shutil
    import time

    tmp, final = Path(tmp), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.time_ns()}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``dest``; on success it replaces ``dest``
    (:func:`replace_dir`), on error it is removed and ``dest`` is left as it was."""
    import shutil

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
