"""Why a runner invocation failed: its exit status or signal and the one output line that decides it.

A failed benchmark_model run prints pages of parameter lines before the line that matters. :func:`diagnose`
finds that line (a missing shared library, running out of memory, a GPU delegate that could not be applied,
else the last ``ERROR`` line) and names its cause; :func:`exit_text` names an exit status or signal.
"""
from __future__ import annotations

import re
import signal

# (cause flag, pattern), most specific first: a missing library or OOM often also breaks the delegate
CAUSES = (
    ("missing-library", re.compile(r"CANNOT LINK EXECUTABLE|library \"[^\"]+\" not found|dlopen failed|"
                                   r"cannot locate symbol|error while loading shared libraries", re.IGNORECASE)),
    ("out-of-memory", re.compile(r"out of memory|bad_alloc|Cannot allocate memory|CL_OUT_OF_(?:HOST_)?"
                                 r"(?:RESOURCES|MEMORY)|MEM_OBJECT_ALLOCATION_FAILURE|lowmemorykiller|"
                                 r"Failed to allocate memory", re.IGNORECASE)),
    ("delegate-failed", re.compile(r"Failed to (?:apply|create|initiali[sz]e|prepare|modify graph with) [\w ]*"
                                   r"delegate|TfLiteGpuDelegate\w* (?:Init|Prepare|Invoke)|"
                                   r"(?:GPU|OpenCL|OpenGL)[\w ]* delegate[\w ]* (?:failed|error)", re.IGNORECASE)),
)
MAX_LINE = 400  # characters of a decisive line kept in messages (whole lines are short; garbage is not)


def diagnose(text: str) -> tuple[str | None, str | None]:
    """``(cause, line)`` of a failed run's output: the first line matching one of :data:`CAUSES` (cause
    ``missing-library``, ``out-of-memory`` or ``delegate-failed``), else ``(None, last ERROR line)``, else
    ``(None, last non-empty line)``; ``(None, None)`` for empty output."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("@@ ")]
    for cause, pat in CAUSES:
        for ln in lines:
            if pat.search(ln):
                return cause, ln[:MAX_LINE]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    if errors:
        return None, errors[-1][:MAX_LINE]
    return None, (lines[-1][:MAX_LINE] if lines else None)


def exit_text(code: int) -> str:
    """``exit 1``, or ``signal 11 (SIGSEGV)`` for a shell's 128+N status."""
    if code >= 128:
        n = code - 128
        try:
            name = signal.Signals(n).name
        except ValueError:
            name = "unknown signal"
        return f"signal {n} ({name})"
    return f"exit {code}"
