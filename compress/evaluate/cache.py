"""On-disk cache of FID/KID reference statistics (used by :mod:`compress.evaluate.reference`).

A cache entry is one ``.npz`` file holding ``mu`` (2048,) float64, ``sigma`` (2048, 2048) float64,
``features`` (N, 2048) float32 (the Inception pool3 features, kept for KID) and ``meta`` (a JSON string).
Its name is ``<label>-<key[:20]>.npz`` where ``label`` names the dataset and split (for a folder
``.../horse2zebra/testA`` it is ``horse2zebra_testA``) and ``key`` is a SHA-256 over

* the content: for a folder, the sorted list of (relative file name, size, SHA-256 of the bytes) of every
  image file; for an array, its dtype, shape and the SHA-256 of its bytes;
* the preprocessing settings: the Inception file's sha1, the protocol (resize and value mapping), the
  input size (299) and a format version.

So an entry is found again only when the images are byte-for-byte the same and were preprocessed the same
way; editing, adding, removing or renaming one image gives a new key (the old entry stays on disk and is
simply no longer used). Touching a file without changing its bytes keeps the key. Files are written
atomically with :func:`compress.io.atomic_path`.

While an entry is being computed, the features of the images done so far are kept beside it in
``<label>-<key[:20]>.partial.npz`` (``features`` (n, 2048) float64 of the first n images in order, ``key``):
a computation stopped by Ctrl-C, SIGTERM or a crash goes on from there (:func:`load_partial`), and the file is
removed once the entry is written.

The default folder is ``$CORONETGAN_FID_CACHE`` when set, else ``~/.cache/coronetgan/fid``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from compress.io import atomic_path
from compress.io import sha256_file

log = logging.getLogger("coronetgan.evaluate.cache")  # under the CLI's logger: its lines reach RUN/log.txt

#: Bumped whenever the content of a cache entry changes meaning.
CACHE_FORMAT = 1

#: Counts of cache look-ups in this process: ``hit``, ``miss`` (no entry) and ``invalid`` (unreadable entry).
CACHE_COUNTERS: Counter = Counter()

_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$CORONETGAN_FID_CACHE`` when set, else ``~/.cache/coronetgan/fid``."""
    env = os.environ.get("CORONETGAN_FID_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "coronetgan" / "fid"


def folder_fingerprint(folder: Path, files: Iterable[Path]) -> list[list[Any]]:
    """``[[relative name, size in bytes, sha256], ...]`` sorted by name, for the given files of ``folder``."""
    rows = []
    for f in files:
        rows.append([f.relative_to(folder).as_posix(), f.stat().st_size, sha256_file(f)])
    return sorted(rows)


def array_fingerprint(array: np.ndarray) -> dict[str, Any]:
    """dtype, shape and SHA-256 of the C-ordered bytes of ``array``."""
    arr = np.ascontiguousarray(array)
    return {"dtype": str(arr.dtype), "shape": list(arr.shape), "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}


def cache_key(content: Any, settings: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of (format version, content fingerprint, preprocessing settings)."""
    blob = json.dumps({"format": CACHE_FORMAT, "content": content, "settings": dict(settings)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def label_for(path: Path) -> str:
    """A file-name-safe label naming dataset and split: ``.../horse2zebra/testA`` -> ``horse2zebra_testA``."""
    path = Path(os.path.abspath(path))
    parts = [p for p in (path.parent.name, path.name) if p]
    return sanitize_label("_".join(parts) or "root")


def sanitize_label(label: str) -> str:
    """Keep letters, digits, ``-``, ``_`` and ``.``; replace anything else with ``_`` (at most 80 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._")[:80] or "data"


def entry_path(cache_dir: Path, label: str, key: str) -> Path:
    """Where the entry for ``key`` lives."""
    return Path(cache_dir) / f"{sanitize_label(label)}-{key[:20]}.npz"


def load_entry(path: Path, key: str) -> dict[str, Any] | None:
    """Read a cache entry; ``None`` (and a counted ``miss``/``invalid``) when absent, unreadable or for another key.

    Returns ``{"mu", "sigma", "features" (float64), "meta"}``.
    """
    if not path.is_file():
        CACHE_COUNTERS["miss"] += 1
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            mu = np.asarray(z["mu"], dtype=np.float64)
            sigma = np.asarray(z["sigma"], dtype=np.float64)
            features = np.asarray(z["features"], dtype=np.float64)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        log.warning("FID cache entry %s is unreadable (%s); recomputing", path, exc)
        CACHE_COUNTERS["invalid"] += 1
        return None
    d = mu.shape[0] if mu.ndim == 1 else -1
    if (meta.get("key") != key or sigma.shape != (d, d) or features.ndim != 2 or features.shape[1] != d):
        log.warning("FID cache entry %s does not match its key or shapes; recomputing", path)
        CACHE_COUNTERS["invalid"] += 1
        return None
    CACHE_COUNTERS["hit"] += 1
    return {"mu": mu, "sigma": sigma, "features": features, "meta": meta}


def save_entry(path: Path, *, mu: np.ndarray, sigma: np.ndarray, features: np.ndarray,
               meta: Mapping[str, Any]) -> Path:
    """Write a cache entry atomically (temporary file in the same folder, then rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
                     features=np.asarray(features, np.float32),
                     meta=np.array(json.dumps(dict(meta), sort_keys=True)))
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; a cache is as readable as any other file
    return path


def partial_path(entry: Path) -> Path:
    """Where the features done so far of ``entry`` (an :func:`entry_path`) are kept while it is computed."""
    return entry.with_name(entry.name[:-len(".npz")] + ".partial.npz")


def save_partial(entry: Path, key: str, features: np.ndarray) -> None:
    """Keep the (n, 2048) float64 features of the first n images of ``entry``'s set (atomically: a partial file
    is either the previous one or this one)."""
    path = partial_path(entry)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, features=np.asarray(features, np.float64), key=np.array(key))


def load_partial(entry: Path, key: str) -> np.ndarray | None:
    """The features done so far of ``entry`` ((n, 2048) float64), or None when there are none, they are for
    another key or unreadable (a warning; the computation then starts from the first image)."""
    path = partial_path(entry)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            saved_key = str(z["key"])
            features = np.asarray(z["features"], dtype=np.float64)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        log.warning("FID partial features %s are unreadable (%s); starting from the first image", path, exc)
        return None
    if saved_key != key or features.ndim != 2 or not np.isfinite(features).all():
        log.warning("FID partial features %s are for another image set or damaged; starting from the first image",
                    path)
        return None
    return features
