"""One writer per run folder: the lock file ``RUN/.coronetgan.lock``.

``python -m compress`` (and :func:`compress.compress_model`), ``python -m compress.evaluate`` and
``python -m export`` hold it while they write a run folder; a second process on the same folder is refused
with the holder's command, pid, host and start time. Two runs writing one folder would otherwise both exit 0
while one's checkpoints, metrics and results overwrite the other's.

The lock is an ``flock`` on the file (released by the kernel when the holder dies, even by kill -9); the file
holds the holder's description as JSON for the message. A lock file left by a process that is gone (killed) is
a stale lock: the next process takes it over with a warning. A folder where the lock file cannot be created
(read-only, not ours) cannot be written by anyone, so nothing is locked there.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from compress.errors import InputError
from compress.io import ensure_dir

LOGGER = logging.getLogger("coronetgan.runlock")
LOCK_FILE = ".coronetgan.lock"


def _describe(holder: dict) -> str:
    return (f"{holder.get('command', 'another process')} (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}, since {holder.get('started', '?')})")


def _read(fd: int) -> dict:
    try:
        data = os.pread(fd, 65536, 0)
        holder = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        return {"command": "an unknown process"}
    return holder if isinstance(holder, dict) else {"command": "an unknown process"}


def _open_locked(path: Path, run_dir: Path) -> int | None:
    """An fd of ``path`` holding its flock, or None when the folder cannot hold a lock file (read-only)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise InputError(f"{run_dir} is in use by {_describe(holder)}; one process at a time may write a run "
                             "folder: wait for it to finish, or choose another folder") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)   # the holder released (and removed) it between our open and flock: try again


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, command: str | None = None) -> Iterator[None]:
    """Hold the lock of ``run_dir`` (created if missing) for the duration of the ``with`` block.

    Args:
        run_dir: the run folder.
        command: how the holder is named to a refused process (default: this process's command line).
    Raises:
        InputError: another live process holds the lock (the message names it and the folder).
        OSError: the folder cannot be created (a path under a file...).
    """
    run_dir = ensure_dir(run_dir)
    path = run_dir / LOCK_FILE
    fd = _open_locked(path, run_dir)
    if fd is None:
        LOGGER.debug("%s: not writable, so not locked", run_dir)
        yield
        return
    try:
        stale = _read(fd)
        if stale:
            LOGGER.warning("%s: taking over the lock left by %s, which is no longer running (killed?)",
                           run_dir, _describe(stale))
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "command": command or " ".join([Path(sys.executable).name, *sys.argv]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode("utf-8"), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()   # before the unlock: a process that opened this file now retries on a new one
        os.close(fd)
