"""Atomic file writes: nothing already written is lost or left half-written.

Every artifact (checkpoints, reports, manifests, tables, images) is written to a temporary file in
the destination folder and then renamed over the destination with :func:`os.replace`, which is atomic
on POSIX file systems. A crash mid-write leaves either the old file or no file, never a truncated one.
Files and folders get the modes of ordinary files (0o666 / 0o777 less the umask), not the private 0o600 of
:func:`tempfile.mkstemp`, and an OS error (a full disk, a read-only folder) names the destination, not the
temporary file.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from compress.errors import InputError


def umask() -> int:
    """The process's umask (read from ``/proc/self/status`` where possible: setting it to read it back is not
    thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ensure_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` and its parents (like ``mkdir -p``). Returns ``Path(folder)``.

    Raises:
        NotADirectoryError: ``folder`` or a folder above it is a file (naming that file, where ``mkdir`` would
            say "File exists" or name the folder below it).
        OSError: another OS error (read-only, permission...).
    """
    folder = Path(folder)
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(p))
            break
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _named(exc: OSError, dest: Path) -> OSError:
    """``exc`` as the same kind of OSError naming ``dest`` (the temporary file's name means nothing to a user)."""
    return OSError(exc.errno, exc.strerror, str(dest)) if exc.errno is not None else exc


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it to ``dest``, on error delete it.

    Use for writers that insist on a file name (``torch.save``, ``PIL.Image.save``, onnx2tf...).
    The temporary name keeps the destination's suffix so that format detection by suffix works.
    The file gets mode 0o666 less the umask.

    Raises:
        OSError: the folder cannot be created or written (no space, read-only...); the error names ``dest``.
    """
    dest = Path(dest)
    ensure_dir(dest.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    except OSError as exc:
        raise _named(exc, dest) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~umask())
        os.replace(tmp_path, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp_path), tmp_path):
            raise _named(exc, dest) from exc
        raise


def read_json(path: str | os.PathLike, missing_hint: str = "") -> Any:
    """The JSON value in ``path`` (a file a user can hand over: a run's config, report or evaluation).

    Raises:
        InputError: the file is missing (``"{path} is missing; {missing_hint}"``), or not valid UTF-8 JSON
            (``"{path} is not valid JSON (...)"``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is missing" + (f"; {missing_hint}" if missing_hint else ""))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from None


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


class _RecordingWriter:
    """A file for ``torch.save`` that keeps the OSError of a failed write, or the Ctrl-C / SIGTERM that arrived
    during one: torch's zip writer turns both into ``RuntimeError: ... unexpected pos``."""

    def __init__(self, fh):
        self.fh = fh
        self.error: BaseException | None = None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except (OSError, KeyboardInterrupt) as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def atomic_torch_save(obj: Any, dest: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``dest`` atomically (fsynced). Returns ``Path(dest)``.

    Raises:
        OSError: the write failed (no space left...), naming ``dest``.
        KeyboardInterrupt: Ctrl-C (or SIGTERM) during the write; ``dest`` is left as it was.
    """
    import torch

    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            writer = _RecordingWriter(fh)
            try:
                torch.save(obj, writer)
            except RuntimeError:
                if writer.error is not None:
                    raise writer.error from None
                raise
            fh.flush()
            os.fsync(fh.fileno())
    return Path(dest)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def is_folder_name(name: object) -> bool:
    """Whether ``name`` names one folder inside another: a non-empty string without a path separator or NUL that
    is not ``.`` or ``..`` (user-given names that become output folders are checked with it)."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


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
    ensure_dir(dest.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    except OSError as exc:
        raise _named(exc, dest) from exc
    try:
        os.chmod(tmp, 0o777 & ~umask())
        yield tmp
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process
        return True
    return True


def staging_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new private folder ``parent/<prefix>-<pid>-XXXXXXXX`` for work that is moved into place when complete.

    Folders of the same ``prefix`` left in ``parent`` by processes that are gone (killed with kill -9, which
    skips their cleanup) are removed first; those of live processes are left alone. The caller removes its
    own folder (``shutil.rmtree`` in a ``finally``).

    Raises:
        OSError: ``parent`` cannot be created or written.
    """
    import re
    import shutil

    parent = ensure_dir(parent)
    pattern = re.compile(re.escape(prefix) + r"-([0-9]+)-[^/]+")
    for old in parent.iterdir():
        m = pattern.fullmatch(old.name)
        if m and old.is_dir() and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    try:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise _named(exc, parent) from exc
