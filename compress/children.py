"""Child processes that do not outlive the process that started them.

A converter run as a subprocess (onnx2tf in :mod:`export.tflite_convert`) would keep running, and keep writing
into a staging folder nobody removes, when its parent is killed (kill -9 cannot be caught). On Linux the child
asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere this is a no-op and
only the parent's own cleanup (``subprocess.run`` kills its child on any exception, Ctrl-C included) applies.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:
    """``preexec_fn``: SIGKILL this (child) process when its parent exits (Linux ``prctl``)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def child_options() -> dict[str, Any]:
    """Keyword arguments for :func:`subprocess.run` / :class:`subprocess.Popen` that end the child with its
    parent (Linux; an empty dict elsewhere)."""
    return {"preexec_fn": _die_with_parent} if sys.platform.startswith("linux") else {}
