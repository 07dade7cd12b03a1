"""Child processes that do not outlive the process that started them.

A converter run as a subprocess (onnx2tf in :mod:`export.tflite_convert`) would keep running, and keep writing
into a staging folder nobody removes, when its parent is killed (kill -9 cannot be caught). On Linux the child
asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere this is a no-op and
only the parent's own cleanup (``subprocess.run`` kills its child on any exception, Ctrl-C included) applies.

A command that has cleanup of its own to do (a pipeline stage: bench releases the phone and writes its tables,
compress keeps its checkpoint) is run by :func:`run_until_done` instead: the signal that stops the parent is
passed on to it once, and it gets time to finish.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import signal
import subprocess
import sys
from typing import Any, Callable, Iterator, Mapping, Sequence

from compress.cli_errors import Terminated

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: Seconds a command run by :func:`run_until_done` gets to clean up after Ctrl-C / SIGTERM before SIGKILL
#: (bench's adb cleanup and device-lock release, a checkpoint write: seconds; a minute leaves room for a slow disk).
CLEANUP_GRACE_S = 60.0


def _die_with_parent(signum: int = signal.SIGKILL) -> None:
    """``preexec_fn``: send ``signum`` to this (child) process when its parent exits (Linux ``prctl``)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)


def child_options() -> dict[str, Any]:
    """Keyword arguments for :func:`subprocess.run` / :class:`subprocess.Popen` that end the child with its
    parent (Linux; an empty dict elsewhere)."""
    return {"preexec_fn": _die_with_parent} if sys.platform.startswith("linux") else {}


def run_until_done(cmd: Sequence[str], env: Mapping[str, str] | None = None,
                   grace_s: float | Callable[[], float] = CLEANUP_GRACE_S) -> int:
    """Run ``cmd`` to its end and return its exit status, passing this process's Ctrl-C or SIGTERM on to it once.

    ``subprocess.run`` gives its child 0.25 s after a Ctrl-C before SIGKILL and passes no SIGTERM on, which cuts a
    command's own cleanup short. Here the child runs in a process group of its own (a terminal's Ctrl-C reaches
    this process only, so the child gets exactly one SIGINT: a second one would interrupt its cleanup), stdin
    closed (a background process group must not read the terminal); when this process is interrupted the child
    gets the same signal and ``grace_s`` seconds to exit before SIGKILL, and a further Ctrl-C kills it at once.
    On Linux the child gets SIGTERM if this process dies (``PR_SET_PDEATHSIG``). Ctrl-Z (SIGTSTP) of this process
    stops the child's group too, and SIGCONT continues it (a shell's ``fg``/``bg``).

    ``grace_s`` may be a function, asked when the signal comes (e.g. from the command's step times so far: compress
    finishes the step in progress before it checkpoints); one that raises or gives no positive number means
    :data:`CLEANUP_GRACE_S`. The wait is announced on stderr.

    Returns:
        the exit status; a command ended by signal N gives 128 + N, as a shell reports it.
    Raises:
        KeyboardInterrupt / :class:`compress.cli_errors.Terminated`: the one that interrupted this process,
            once the child has ended.
        OSError: ``cmd`` cannot be started (named by ``subprocess``).
    """
    extra = ({"preexec_fn": lambda: _die_with_parent(signal.SIGTERM)} if sys.platform.startswith("linux") else {})
    proc = subprocess.Popen(list(cmd), env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
                            process_group=0, **extra)
    try:
        with _job_control_passed_to(proc):
            rc = proc.wait()
    except KeyboardInterrupt as exc:
        _stop(proc, signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT, grace_s, os.path.basename(cmd[0]))
        raise
    return shell_status(rc)


def _grace_seconds(grace_s: float | Callable[[], float]) -> float:
    """``grace_s``, or its value when it is a function; :data:`CLEANUP_GRACE_S` for a function that raises, and for
    any value that is not a finite positive number."""
    try:
        value = float(grace_s() if callable(grace_s) else grace_s)
    except Exception:  # noqa: BLE001 - the signal is being handled: a broken estimate must not lose the child
        return CLEANUP_GRACE_S
    return value if 0 < value < math.inf else CLEANUP_GRACE_S


def shell_status(returncode: int) -> int:
    """A ``subprocess`` return code as a shell reports it: a process ended by signal N (``-N``) is 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


@contextlib.contextmanager
def _job_control_passed_to(proc: subprocess.Popen) -> Iterator[None]:
    """While ``proc`` (the leader of its own process group) runs: SIGTSTP stops its group and then this process,
    SIGCONT continues its group. Only in the main thread (elsewhere signals cannot be handled)."""
    def stop(signum, frame):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)

    def cont(signum, frame):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)

    try:
        previous = {signal.SIGTSTP: signal.signal(signal.SIGTSTP, stop),
                    signal.SIGCONT: signal.signal(signal.SIGCONT, cont)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop(proc: subprocess.Popen, signum: int, grace_s: float | Callable[[], float], name: str) -> None:
    """Pass ``signum`` on first (nothing after it may keep the child from getting it: the grace estimate reads
    files, the announcement writes to a stderr a Ctrl-C may have closed), then wait up to the grace, then SIGKILL
    the child's group. A further Ctrl-C during the wait ends it at once."""
    try:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
        grace = _grace_seconds(grace_s)
        with contextlib.suppress(OSError):
            print(f"waiting up to {math.ceil(grace)} s for {name} (pid {proc.pid}) to finish and clean up; "
                  "Ctrl-C again stops it at once", file=sys.stderr, flush=True)
        proc.wait(grace)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):  # too slow, or asked again: stop it now
        pass
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: what the command started goes too
            proc.wait()
