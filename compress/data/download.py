"""Network download (short timeouts, progress, hashes) and safe archive extraction."""
from __future__ import annotations

import hashlib
import http.client
import json
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
from compress.io import atomic_write_json

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


def open_url(url: str, timeout: float = CONNECT_TIMEOUT, headers: dict[str, str] | None = None):
    """Open ``url`` for reading with the extra request ``headers``, giving up after ``timeout`` s for the DNS
    lookup and for each socket operation (the one network call of this package; tests monkeypatch it)."""
    _resolve_host(url, timeout)
    return urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "coronetgan", **(headers or {})}),
                                  timeout=timeout)


def partial_download(dest: Path) -> Path:
    """Where the bytes received so far for ``dest`` are kept between tries (``<dest>.part``; its validator beside
    it in ``<dest>.part.json``)."""
    return dest.with_name(dest.name + ".part")


def _resume_point(part: Path, url: str) -> tuple[int, dict[str, str]]:
    """(bytes already received, request headers asking for the rest) for a kept partial download of ``url``;
    (0, {}) when there is none or it was for another URL. ``If-Range`` makes a server whose file changed since
    send the whole new file (200) instead of the rest of the old one."""
    meta = part.with_name(part.name + ".json")
    try:
        saved = json.loads(meta.read_text())
        have = part.stat().st_size
    except (OSError, ValueError):
        return 0, {}
    if saved.get("url") != url or not have or not saved.get("validator"):
        return 0, {}
    return have, {"Range": f"bytes={have}-", "If-Range": saved["validator"]}


def download_file(url: str, dest: Path, timeout: float = CONNECT_TIMEOUT, hint: str = "") -> dict[str, str]:
    """Download ``url`` to ``dest`` with a tqdm bar (``timeout`` s per network operation); return
    ``{"sha256": ..., "md5": ...}`` of the whole file.

    The bytes are received into :func:`partial_download` (``<dest>.part``) and renamed to ``dest`` when complete
    (fsynced first). A transfer that fails or is interrupted keeps them; the next call with the same ``url`` asks
    the server for the rest (HTTP ``Range`` with ``If-Range`` on the ETag or Last-Modified date the server gave)
    and appends it when the server answers 206 with the expected start, otherwise starts over.

    Raises:
        InputError: the server cannot be reached or the transfer fails (a dropped connection included); names
            ``url``, says how much is kept for the next try and appends ``hint`` (how to use a mirror instead).
            Nothing is ever left at ``dest`` but a complete download.
    """
    dest = Path(dest)
    part = partial_download(dest)
    meta = part.with_name(part.name + ".json")
    have, headers = _resume_point(part, url)
    sha, md5 = hashlib.sha256(), hashlib.md5()
    received = 0
    try:
        with open_url(url, timeout, headers) as resp:
            status = getattr(resp, "status", 200)
            if have and not (status == 206 and str(resp.headers.get("Content-Range", "")).startswith(
                    f"bytes {have}-")):
                have = 0                       # the server sent the whole file (changed, or no ranges): again
            validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            atomic_write_json(meta, {"url": url, "validator": validator})
            length = int(resp.headers.get("Content-Length") or 0)
            with open(part, "r+b" if have else "wb") as out:
                if have:
                    with open(part, "rb") as kept:   # the hashes cover the whole file
                        for block in iter(lambda: kept.read(1 << 20), b""):
                            sha.update(block)
                            md5.update(block)
                    out.seek(have)
                    out.truncate()
                with tqdm(total=(have + length) or None, initial=have, unit="B", unit_scale=True,
                          desc=f"download {dest.name}") as bar:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        out.write(block)
                        sha.update(block)
                        md5.update(block)
                        received += len(block)
                        bar.update(len(block))
                out.flush()
                os.fsync(out.fileno())
            if length and received < length:   # read(n) returns b"" on a dropped connection: no error of its own
                raise http.client.IncompleteRead(b"", length - received)
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
        # URLError, HTTPError, socket errors, and a connection dropped before Content-Length (IncompleteRead)
        reason = getattr(exc, "reason", None) or exc
        kept = part.stat().st_size if part.is_file() else 0
        if kept and not (meta.is_file() and _resume_point(part, url)[0]):
            kept = 0                            # no validator: the next try cannot resume, so keep nothing
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
        more = f" {kept} bytes are kept in {part}; the same command again continues the download." if kept else ""
        raise InputError(f"could not download {url} ({type(exc).__name__}: {reason}).{more}{hint}") from exc
    os.replace(part, dest)
    meta.unlink(missing_ok=True)
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
