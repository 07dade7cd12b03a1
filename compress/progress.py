"""Whether progress bars are shown: one switch for the bars of library code that has no ``progress`` argument
(the data readers under an evaluation), set by a command line's ``--quiet`` (:func:`quiet`)."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_SHOWN: contextvars.ContextVar[bool] = contextvars.ContextVar("coronetgan_progress_shown", default=True)


def shown() -> bool:
    """True unless inside :func:`quiet`."""
    return _SHOWN.get()


@contextlib.contextmanager
def quiet(active: bool = True) -> Iterator[None]:
    """No progress bars of this project's code inside the block (when ``active``)."""
    token = _SHOWN.set(False) if active else None
    try:
        yield
    finally:
        if token is not None:
            _SHOWN.reset(token)
