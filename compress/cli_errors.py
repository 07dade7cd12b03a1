"""How every command line of the project ends: one line on stderr and a documented exit status, never a
traceback for a user's mistake, a full disk or Ctrl-C.

:func:`run_cli` wraps the body of a CLI (``python -m compress``, ``compress.evaluate``, ``compress.data``,
``export``, ``bench.pipeline``; ``bench/run_adb.py`` uses :func:`os_error_message` and :func:`os_error_exit`
beside its own interrupt handling). The exit statuses and messages are listed in docs/errors.md:

* 2: bad input (:class:`compress.errors.InputError`), or an OS error about a path the user chose (a folder
  under a file, a read-only or forbidden folder, a missing file: :data:`PATH_ERRNOS`);
* 1: the work failed (:class:`compress.errors.TrainingError`, or an OS error of the machine: no space left,
  an I/O error);
* 130 / 143: interrupted by Ctrl-C (SIGINT) / terminated (SIGTERM); what was written stays consistent
  (atomic writes) and ``finally`` blocks have run (staging folders removed, converter children killed).
"""
from __future__ import annotations

import contextlib
import errno
import logging
import signal
import sys
from typing import Callable, Iterator

from compress.errors import InputError, TrainingError

EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: OS errors about a path the user gave or chose: exit 2 like other bad input.
PATH_ERRNOS = frozenset({errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT,
                         errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP})

_REASONS = {
    errno.ENOSPC: "no space left on the device; free some space and run the command again",
    errno.EDQUOT: "disk quota exceeded; free some space and run the command again",
    errno.EROFS: "the file system is read-only; expected a writable folder",
    errno.EACCES: "permission denied; expected a folder this user may write (and files it may read)",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "not a folder (this path or a folder above it is a file); expected a folder",
    errno.EISDIR: "is a folder; expected a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.EIO: "input/output error (failing disk or network file system?)",
    errno.ENAMETOOLONG: "file name too long",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that cleanup code runs."""


def os_error_message(exc: OSError) -> str:
    """One line for an OS error: the path(s) it names, the cause in words and the errno name, e.g.
    ``runs/a/generator.pt: no space left on the device; ... [ENOSPC]``."""
    code = exc.errno
    reason = _REASONS.get(code, exc.strerror or str(exc))
    name = f" [{errno.errorcode[code]}]" if code in errno.errorcode else ""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = (" -> ".join(paths) + ": ") if paths else ""
    return f"{where}{reason}{name}"


def os_error_exit(exc: OSError) -> int:
    """Exit status of an OS error: 2 for :data:`PATH_ERRNOS` (a path the user chose), else 1."""
    return EXIT_INPUT if exc.errno in PATH_ERRNOS else EXIT_FAILED


#: The signal that interrupted the CLI body (SIGINT or SIGTERM), None while it runs undisturbed.
_PENDING: dict[str, int | None] = {"signum": None}


#: Depth of :func:`deferred_interrupts` blocks being run.
_DEFER = {"depth": 0}


def _raise_terminated(signum: int, _frame) -> None:
    signal.signal(signum, signal.SIG_IGN)  # once: a second SIGTERM must not cut the cleanup short
    first = _PENDING["signum"] is None
    _PENDING["signum"] = signum
    if not (first and _DEFER["depth"]):
        raise Terminated()


def _raise_interrupted(signum: int, _frame) -> None:
    first = _PENDING["signum"] is None
    _PENDING["signum"] = signum
    if not (first and _DEFER["depth"]):  # a second Ctrl-C is not held: the user insists
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold the first Ctrl-C / SIGTERM that arrives inside the block until the caller asks
    (:func:`raise_if_interrupted`): a training step then either runs to its end or not
    at all, so the state after it can be checkpointed. A second Ctrl-C inside the block is raised at once. Has an
    effect under :func:`run_cli` only (its signal handlers)."""
    _DEFER["depth"] += 1
    try:
        yield
    finally:
        _DEFER["depth"] -= 1


def pending_signal() -> int | None:
    """The Ctrl-C / SIGTERM (its signal number) held by :func:`deferred_interrupts` and not yet acted on; None
    when there is none."""
    return _PENDING["signum"]


def interruption(signum: int, text: str | None = None) -> KeyboardInterrupt:
    """The exception :func:`run_cli` turns into its interrupted (SIGINT, exit 130) or terminated (SIGTERM, exit
    143) line; ``text`` is appended to that line after a colon."""
    cls = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    return cls(text) if text else cls()


def raise_if_interrupted() -> None:
    """Raise again a Ctrl-C (KeyboardInterrupt) or SIGTERM (:class:`Terminated`) that arrived while :func:`run_cli`
    ran its body and whose exception may have been lost.

    Python prints and then ignores an exception raised inside a finalizer (``__del__``, a weakref callback, a
    garbage-collection pass); a signal that lands there would let a training run go on. Loops that run for
    long (the trainer's steps) call this once per step.

    Raises:
        KeyboardInterrupt / Terminated: a signal was received and not yet acted on by the caller.
    """
    signum = _PENDING["signum"]
    if signum is not None:
        raise interruption(signum)


def log_to_run_folder(line: str, level: int) -> None:
    """Write ``line`` (what the CLI prints on stderr as it ends) to the log files of the ``coronetgan`` logger (a
    run folder's ``log.txt``), so the run keeps the reason it ended; the console already has it."""
    logger = logging.getLogger("coronetgan")
    record = logger.makeRecord(logger.name, level, __file__, 0, line, None, None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def end_line(line: str, level: int = logging.ERROR) -> None:
    """Print the line a command ends with on stderr, and write it to the run folder's log file (the log files of
    the ``coronetgan`` logger, when the command opened one)."""
    print(line, file=sys.stderr)
    log_to_run_folder(line, level)


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI ``body`` (returns its exit status) and turn the ends a user can cause into one stderr line.

    InputError -> ``error: MESSAGE``, exit 2; TrainingError -> ``error: MESSAGE``, exit 1; OSError ->
    ``error: PATH: CAUSE [ERRNO]``, exit 2 or 1 (:func:`os_error_exit`); Ctrl-C -> ``interrupted (Ctrl-C)``,
    exit 130; SIGTERM -> ``terminated (SIGTERM)``, exit 143. A KeyboardInterrupt raised with a text (e.g. how to
    resume) gets it after a colon. SIGTERM is turned into :class:`Terminated` while ``body`` runs (main thread
    only), and failures of log handlers are not printed as tracebacks (a full disk fails every log line). The
    line is also written to the log files of the ``coronetgan`` logger (the run folder's ``log.txt``).
    Anything else (a bug) keeps its traceback.
    """
    previous = previous_int = None
    _PENDING["signum"] = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # an ignored SIGINT (nohup) stays so
            previous_int = signal.signal(signal.SIGINT, _raise_interrupted)
    except ValueError:  # not the main thread: signals stay as they are
        pass
    logging.raiseExceptions = False
    try:
        return body()
    except InputError as exc:
        end_line(f"error: {exc}")
        return EXIT_INPUT
    except TrainingError as exc:
        end_line(f"error: {exc}")
        return EXIT_FAILED
    except OSError as exc:
        end_line(f"error: {os_error_message(exc)}")
        return os_error_exit(exc)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
        end_line(what + (f": {exc.args[0]}" if exc.args else ""), logging.WARNING)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
        _PENDING["signum"] = None
        sys.stderr.flush()

