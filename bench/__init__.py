"""bench: time .tflite generators on a phone's GPU over adb, on a virtual device, or on the host CPU.

The one Python entry point is :func:`bench_models` (:mod:`bench.measure`); the command line is
``python bench/run_adb.py`` = ``python -m bench`` (:mod:`bench.cli`), the whole pipeline ``python -m bench.pipeline``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.measure import bench_models

__all__ = ["bench_models"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the virtual device's runner imports this package at every start (once per timed
    # repeat), and bench_models' tables and backends would add ~25 ms to each of those runner wall times.
    if name == "bench_models":
        from bench.measure import bench_models

        return bench_models
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
