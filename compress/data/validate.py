"""The up-front validation pass used by ``skip_bad=True`` (and ``validate=True``).

Each file is fully decoded once at dataset construction so that ``__len__`` counts only usable items.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from tqdm import tqdm

from compress.data.images import load_rgb
from compress.data.transforms import Preprocess, check_size
from compress.errors import InputError

LOGGER = logging.getLogger("coronetgan.data")
T = TypeVar("T")


def check_image(path: Path, opt: Preprocess | None = None, split_ab: bool = False) -> None:
    """Decode ``path`` fully and check its size against ``opt`` (each half of it if ``split_ab``).

    Raises:
        InputError: unreadable/truncated/non-image file, or too small for a crop without resize.
    """
    img = load_rgb(path)
    if opt is not None:
        w, h = img.size
        check_size(path, (w // 2, h) if split_ab else (w, h), opt)


def filter_items(items: Iterable[T], check: Callable[[T], None], skip_bad: bool, where: str,
                 progress: bool = False) -> tuple[list[T], list[tuple[T, str]]]:
    """Run ``check`` on every item; return (good items, [(bad item, reason)]).

    With ``skip_bad`` the bad items are dropped and their count is logged (logger ``coronetgan.data``);
    without it the first bad item's :class:`InputError` is re-raised with the number of bad files found.

    Raises:
        InputError: a bad item and ``skip_bad`` is False; or nothing usable is left.
    """
    items = list(items)
    good, bad = [], []
    for item in tqdm(items, desc=f"checking {where}", disable=not progress, leave=False):
        try:
            check(item)
        except InputError as exc:
            bad.append((item, str(exc)))
        else:
            good.append(item)
    if bad and not skip_bad:
        raise InputError(f"{len(bad)} bad file(s) in {where}; first: {bad[0][1]}")
    if bad:
        LOGGER.warning("skipped %d bad file(s) in %s (skip_bad=True): %s%s", len(bad), where,
                       "; ".join(r for _, r in bad[:3]), " ..." if len(bad) > 3 else "")
    if not good:
        raise InputError(f"{where}: no usable files left after skipping {len(bad)} bad file(s)")
    return good, bad
