"""Statistics of image sets (mean, covariance and features of the pool3 features), and the reference statistics
of real image sets, cached on disk keyed on the images' content (:mod:`compress.evaluate.cache`).

``mu`` = mean, ``sigma`` = ``np.cov(rowvar=False)`` (unbiased, N - 1), float64, as pytorch-fid; the features
are kept for KID.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import InputError
from compress.evaluate import cache
from compress.evaluate.features import (DEFAULT_BATCH_SIZE, as_uint8_nchw, features_from_files,
                                        features_from_uint8, folder_images)
from compress.evaluate.inception import FEATURE_DIM, INCEPTION_SHA1, INCEPTION_SIZE, check_protocol
from compress.evaluate.metrics import as_features, compute_statistics

log = logging.getLogger("coronetgan.evaluate.reference")  # under the CLI's logger: its lines reach RUN/log.txt


@dataclass
class Statistics:
    """Statistics of one image set.

    Attributes:
        mu: (2048,) float64 mean of the pool3 features.
        sigma: (2048, 2048) float64 covariance (N - 1).
        features: (N, 2048) float64 features (kept for KID).
        source: the folder or label they were computed from.
        key: the cache key (hex SHA-256), ``None`` when not cacheable (tensors).
        cache_path: the cache file, ``None`` when caching was off.
        from_cache: True when read from the cache rather than computed.
        meta: what the cache entry records (key, source, n, preprocessing settings, creation time).
    """

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    source: str = ""
    key: str | None = None
    cache_path: Path | None = None
    from_cache: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of images."""
        return int(self.features.shape[0])

    @classmethod
    def from_features(cls, features, source: str = "", **kw) -> "Statistics":
        """Build from (N, 2048) features (N >= 2).

        Raises:
            InputError: fewer than 2 rows, not 2-d, or non-finite values.
        """
        f = as_features(features, f"statistics of {source or 'features'}")
        mu, sigma = compute_statistics(f)
        return cls(mu=mu, sigma=sigma, features=f, source=source, **kw)


def _settings(protocol: str) -> dict[str, Any]:
    return {"inception_sha1": INCEPTION_SHA1, "protocol": protocol, "size": INCEPTION_SIZE,
            "feature_dim": FEATURE_DIM, "read": "compress.data.load_rgb (16-bit grey scaled) uint8 / 255"}


def _content(source, files: list[Path] | None = None) -> dict[str, Any]:
    """What the cache key hashes of an image set: per file its name, size and SHA-256 (a folder, the given
    ``files`` of it or :func:`folder_images`), or the array's dtype, shape and SHA-256."""
    if isinstance(source, np.ndarray):
        return {"kind": "array", **cache.array_fingerprint(source)}
    folder = Path(source)
    return {"kind": "folder", "files": cache.folder_fingerprint(folder, files or folder_images(folder, min_count=2))}


def reference_key(source, protocol: str = "pytorch-fid") -> str:
    """The content key :func:`reference_statistics` gives ``source`` (a folder or a uint8 array): it changes when
    any image is added, removed, renamed or edited. Hashes every file; reads no pixels through the Inception.

    Raises:
        InputError: as :func:`reference_statistics` for a folder with fewer than 2 images, or another kind."""
    if not isinstance(source, (str, os.PathLike, np.ndarray)):
        raise InputError(f"reference_key: expected a folder or a uint8 array, got {type(source).__name__}")
    check_protocol(protocol)
    return cache.cache_key(_content(source), _settings(protocol))


def reference_statistics(source, cache_dir: str | os.PathLike | None = None, *, name: str | None = None,
                         use_cache: bool = True, batch_size: int = DEFAULT_BATCH_SIZE, device=None,
                         protocol: str = "pytorch-fid", progress: bool = True, model_path=None) -> Statistics:
    """Statistics (mu, sigma, features) of a real image set, cached on disk per dataset and split.

    Args:
        source: a folder of image files (e.g. ``.../horse2zebra/testB``, read as
            :func:`compress.evaluate.features.folder_images`) or a uint8 array (N, H, W, 3) / (N, 3, H, W).
        cache_dir: cache folder; default :func:`compress.evaluate.cache.default_cache_dir`
            (``$CORONETGAN_FID_CACHE`` or ``~/.cache/coronetgan/fid``).
        name: label of the cache file (default: ``<parent>_<folder>`` for folders, ``array`` for arrays).
        use_cache: False computes and writes nothing.
        batch_size, device, protocol, progress, model_path: as
            :func:`compress.evaluate.features.features_from_folder`.

    A computation stopped by Ctrl-C, SIGTERM or a crash keeps the features done so far
    (:func:`compress.evaluate.cache.save_partial`); the next call with the same images goes on from there.

    The cache key hashes the sorted relative file names with each file's size and content SHA-256 (or the
    array's bytes) together with the preprocessing settings, so any changed image gives a new entry; see
    :mod:`compress.evaluate.cache`. Look-ups are counted in ``compress.evaluate.cache.CACHE_COUNTERS``.

    Returns:
        :class:`Statistics` (``from_cache`` tells whether it was a hit).

    Raises:
        InputError: not a folder / uint8 array, fewer than 2 images (the message names the folder), an
            unreadable image, bad protocol.
    """
    check_protocol(protocol)
    settings = _settings(protocol)
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        files = folder_images(folder, min_count=2)
        label = name or cache.label_for(folder)
        src = str(folder)
        content = _content(folder, files) if use_cache else None
        total = len(files)

        def compute(start: int = 0, on_progress=None) -> np.ndarray:
            return features_from_files(files, batch_size=batch_size, device=device, protocol=protocol,
                                       progress=progress, model_path=model_path, desc=f"FID features ({folder.name})",
                                       on_progress=on_progress, start=start)
    elif isinstance(source, np.ndarray):
        arr = as_uint8_nchw(source, "reference_statistics")
        if arr.shape[0] < 2:
            raise InputError(f"reference_statistics: array {name or ''} holds {arr.shape[0]} image(s); need at least 2")
        label = name or "array"
        src = f"array:{label}"
        content = _content(source) if use_cache else None
        total = int(arr.shape[0])

        def compute(start: int = 0, on_progress=None) -> np.ndarray:
            return features_from_uint8(arr, batch_size=batch_size, device=device, protocol=protocol,
                                       progress=progress, model_path=model_path, on_progress=on_progress,
                                       start=start)
    else:
        raise InputError(f"reference_statistics: expected a folder or a uint8 array, got {type(source).__name__}")

    if not use_cache:
        return Statistics.from_features(compute(), source=src)

    key = cache.cache_key(content, settings)
    path = cache.entry_path(Path(cache_dir) if cache_dir is not None else cache.default_cache_dir(), label, key)
    entry = cache.load_entry(path, key)
    if entry is not None:
        log.info("FID statistics of %s: cache hit %s", src, path)
        return Statistics(mu=entry["mu"], sigma=entry["sigma"], features=entry["features"], source=src, key=key,
                          cache_path=path, from_cache=True, meta=entry["meta"])
    done = cache.load_partial(path, key)
    if done is not None and len(done) <= total:
        log.info("FID statistics of %s: resuming after %d of %d images (%s)", src, len(done), total,
                 cache.partial_path(path))
    else:
        done = np.zeros((0, FEATURE_DIM))
        log.info("FID statistics of %s: computing (cache miss, key %s)", src, key[:20])
    new = compute(len(done), lambda feats: cache.save_partial(path, key, np.concatenate([done, feats])))
    stats = Statistics.from_features(np.concatenate([done, new]), source=src, key=key, cache_path=path)
    stats.meta = {"key": key, "source": src, "n": stats.n, "settings": settings,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    cache.save_entry(path, mu=stats.mu, sigma=stats.sigma, features=stats.features, meta=stats.meta)
    cache.partial_path(path).unlink(missing_ok=True)
    return stats
