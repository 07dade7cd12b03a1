"""Hashes, ``SHA256SUMS`` files (``sha256sum`` format) and the fetch manifest of a dataset folder."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from compress.errors import InputError
from compress.io import atomic_write_json

MANIFEST = ".coronetgan-fetch.json"  # written inside every fetched dataset folder
CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file (``sha256`` or ``md5``), read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def read_sha256sums(path: str | os.PathLike) -> dict[str, str]:
    """Parse ``<sha256>  ./folder/file`` lines into ``{"folder/file": sha256}`` (``./`` and ``*`` dropped).

    Raises:
        InputError: a file that is not UTF-8 text, or a line that is not ``<64 hex digits><space(s)><path>``
            (names file and line number).
    """
    sums = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected sha256sum lines "
                         "'<sha256>  ./path'") from None
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InputError(f"{path}:{no}: {line[:80]!r} is not a sha256sum line; expected '<sha256>  ./path'")
        name = parts[1].strip().lstrip("*")
        sums[name[2:] if name.startswith("./") else name] = digest
    return sums


def folder_files(folder: Path) -> list[Path]:
    """All regular files under ``folder`` (relative paths, sorted), the manifest excluded; links to folders
    followed once, as the mirror copy and the readers list them (:func:`compress.data.images.walk_files`)."""
    from compress.data.images import walk_files

    return sorted(p.relative_to(folder) for p in walk_files(folder) if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path, name: str, source: str, files: dict[str, str], **extra) -> Path:
    """Write ``folder/.coronetgan-fetch.json``: dataset name, source, time and ``{relpath: sha256}``."""
    info = {"dataset": name, "source": source, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": dict(sorted(files.items())), **extra}
    return atomic_write_json(folder / MANIFEST, info)


def verify_manifest(folder: Path) -> tuple[bool, str]:
    """Re-hash ``folder`` against its manifest: ``(True, "")`` when every listed file exists, matches and
    no file was added; otherwise ``(False, reason)``."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False, f"{manifest} not found"
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return False, f"{manifest} unreadable ({exc})"
    present = {str(p) for p in folder_files(folder)}
    if present != set(files):
        extra, missing = present - set(files), set(files) - present
        return False, f"{len(missing)} file(s) missing, {len(extra)} unexpected"
    for rel, digest in files.items():
        if file_digest(folder / rel) != digest:
            return False, f"{folder / rel} does not match its recorded sha256"
    return True, ""
