"""Errors raised for bad user input.

Every stage of the pipeline (data -> compress -> export -> quantize -> bench) raises
:class:`InputError` when something a user gave us (a file, a folder, a flag, a value) is not
what was expected. The message always names the offending file, flag or value and says what
was expected instead. Command-line entry points catch it and print the message without a
traceback (exit status 2).
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message names the file, flag or value and what was expected."""


class TrainingError(RuntimeError):
    """A run that cannot go on (a non-finite loss, weights that became NaN): the message says where it stopped,
    what was kept and what to change. Command lines print it without a traceback (exit status 1)."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``exc``'s message (at most ``limit`` characters; "" for an empty message):
    what a one-line error quotes of a library's multi-line exception."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:limit] if lines else ""
