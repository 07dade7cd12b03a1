"""Network download (short timeouts, progress, hashes) and safe archive extraction."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from compress.errors import InputError
from compress.io import atomic_path

CONNECT_TIMEOUT = 10.0  # seconds: an offline machine fails within this


def _resolve_host(url: str, timeout: float) -> None:
    """DNS lookup in a thread so that a hanging resolver also gives up after ``timeout`` seconds."""
    parts = urllib.parse.urlsplit(url)
    result: list = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(parts.hostname, parts.port or 80))
        except OSError as exc:
            result.append(exc)

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        raise TimeoutError(f"DNS lookup of {parts.hostname} took more than {timeout:g} s")
    if isinstance(result[0], OSError):
        raise result[0]


def open_url(url: str, timeout: float = CONNECT_TIMEOUT):
    """Open ``url`` for reading, giving up after ``timeout`` s for the DNS lookup and for each socket operation
    (the one network call of this package; tests monkeypatch it)."""
    _resolve_host(url, timeout)
    return urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "coronetgan"}),
                                  timeout=timeout)


def download_file(url: str, dest: Path, timeout: float = CONNECT_TIMEOUT, hint: str = "") -> dict[str, str]:
    """Download ``url`` to ``dest`` atomically with a tqdm bar (``timeout`` s per network operation); return
    ``{"sha256": ..., "md5": ...}``.

    Raises:
        InputError: the server cannot be reached or the transfer fails; names ``url`` and appends ``hint``
            (how to use a mirror instead). Nothing is left at ``dest`` on failure.
    """
    sha, md5 = hashlib.sha256(), hashlib.md5()
    try:
        with open_url(url, timeout) as resp, atomic_path(dest) as tmp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    sha.update(block)
                    md5.update(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
    except (urllib.error.URLError, OSError, TimeoutError) as exc:  # URLError, HTTPError, socket errors
        reason = getattr(exc, "reason", exc)
        raise InputError(f"could not download {url} ({type(exc).__name__}: {reason}).{hint}") from exc
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def extract_archive(archive: Path, into: Path) -> Path:
    """Extract a .zip or .tar(.gz) into ``into`` refusing absolute paths, ``..`` and links out of it.

    Returns the single top-level folder of the archive if it has one, else ``into``.

    Raises:
        InputError: unreadable archive or a member that would land outside ``into``.
    """
    into.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                root = into.resolve()
                for member in zf.namelist():
                    if not (into / member).resolve().is_relative_to(root):
                        raise InputError(f"{archive}: member {member!r} would be written outside {into}")
                zf.extractall(into)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(into, filter="data")  # refuses absolute paths, '..', devices, outside links
    except InputError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{archive}: cannot extract ({type(exc).__name__}: {exc}); expected a .zip or "
                         ".tar.gz dataset archive") from exc
    entries = [p for p in into.iterdir() if p.name != "__MACOSX"]
    shutil.rmtree(into / "__MACOSX", ignore_errors=True)
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into
