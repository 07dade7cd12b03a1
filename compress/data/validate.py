"""The up-front scan of a dataset: every image decoded once before training (``validate=True``, and
``skip_bad=True`` which also drops the bad ones), with a progress bar and a cache.

A bad file is then reported before the first training step, with the ``--skip-bad`` hint, instead of when
training reaches it. The scan's result per file (decoded size, or why it cannot be decoded) is cached in
``$CORONETGAN_SCAN_CACHE`` (default ``~/.cache/coronetgan/scan``), one JSON file per dataset folder, keyed on
each file's path, size and modification time (ns): an unchanged dataset is not decoded again, a changed or
new file is.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import PIL
from tqdm import tqdm

from compress.data.images import load_rgb
from compress.progress import shown
from compress.data.transforms import Preprocess, check_size
from compress.errors import InputError

LOGGER = logging.getLogger("coronetgan.data")
T = TypeVar("T")
ENV_SCAN_CACHE = "CORONETGAN_SCAN_CACHE"
#: Bumped when what is cached changes (with PIL's version: a new decoder may read other files).
SCAN_CACHE_VERSION = 1
SKIP_BAD_HINT = "rerun with --skip-bad to leave them out"


def scan_cache_dir() -> Path:
    """``$CORONETGAN_SCAN_CACHE``, else ``~/.cache/coronetgan/scan``."""
    env = os.environ.get(ENV_SCAN_CACHE)
    return Path(env) if env else Path.home() / ".cache" / "coronetgan" / "scan"


class ScanCache:
    """Decoded sizes (W, H) or decode errors of the image files of one dataset folder (module docstring).

    Args:
        root: the dataset folder (names the cache file).
    """

    def __init__(self, root: str | os.PathLike):
        key = hashlib.sha256(str(Path(root).resolve()).encode("utf-8")).hexdigest()[:24]
        self.path = scan_cache_dir() / f"{key}.json"
        self.entries: dict[str, list] = {}
        self.changed = False
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") == SCAN_CACHE_VERSION and data.get("pil") == PIL.__version__:
                self.entries = dict(data["files"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass   # no cache yet, or an unreadable one: decode everything

    def image_size(self, path: Path) -> tuple[int, int]:
        """(W, H) of the fully decoded image ``path``, from the cache when its size and mtime are unchanged.

        Raises:
            InputError: the file cannot be decoded (:func:`compress.data.images.load_rgb`; cached too).
        """
        path = Path(path)
        try:
            st = path.stat()
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = None
        key = str(path.resolve())
        hit = self.entries.get(key)
        if stamp is not None and hit is not None and hit[:2] == stamp:
            if len(hit) == 3:
                raise InputError(hit[2])
            return hit[2], hit[3]
        try:
            size = load_rgb(path).size
        except InputError as exc:
            if stamp is not None:
                self.entries[key] = [*stamp, str(exc)]
                self.changed = True
            raise
        if stamp is not None:
            self.entries[key] = [*stamp, *size]
            self.changed = True
        return size

    def save(self) -> None:
        """Write the cache when it changed (atomically); a cache folder that cannot be written is skipped."""
        if not self.changed:
            return
        from compress.io import atomic_write_text

        try:
            atomic_write_text(self.path, json.dumps({"version": SCAN_CACHE_VERSION, "pil": PIL.__version__,
                                                     "files": self.entries}))
            self.changed = False
        except OSError as exc:
            LOGGER.debug("scan cache %s not written: %s", self.path, exc)


def check_image(path: Path, opt: Preprocess | None = None, split_ab: bool = False,
                cache: ScanCache | None = None) -> None:
    """Decode ``path`` fully (or take its size from ``cache``) and check its size against ``opt`` (each half of
    it if ``split_ab``).

    Raises:
        InputError: unreadable/truncated/non-image file, or too small for a crop without resize.
    """
    w, h = cache.image_size(path) if cache is not None else load_rgb(path).size
    if opt is not None:
        check_size(path, (w // 2, h) if split_ab else (w, h), opt)


def filter_items(items: Iterable[T], check: Callable[[T], None], skip_bad: bool, where: str,
                 progress: bool = False) -> tuple[list[T], list[tuple[T, str]]]:
    """Run ``check`` on every item (a tqdm bar when ``progress``); return (good items, [(bad item, reason)]).

    With ``skip_bad`` the bad items are dropped and their count is logged (logger ``coronetgan.data``);
    without it the first bad item's message is raised with the number of bad files found and the
    ``--skip-bad`` hint.

    Raises:
        InputError: a bad item and ``skip_bad`` is False; or nothing usable is left.
    """
    items = list(items)
    good, bad = [], []
    for item in tqdm(items, desc=f"checking {where}", unit="file", disable=not (progress and shown()), leave=False):
        try:
            check(item)
        except InputError as exc:
            bad.append((item, str(exc)))
        else:
            good.append(item)
    if bad and not skip_bad:
        raise InputError(f"{len(bad)} bad file(s) in {where}; first: {bad[0][1]}; {SKIP_BAD_HINT}")
    if bad:
        LOGGER.warning("skipped %d bad file(s) in %s (--skip-bad): %s%s", len(bad), where,
                       "; ".join(r for _, r in bad[:3]), " ..." if len(bad) > 3 else "")
    if not good:
        raise InputError(f"{where}: no usable files left after skipping {len(bad)} bad file(s)")
    return good, bad
