"""Time a .tflite model with the LiteRT interpreter on this machine's CPU.

Shared by the host backend (``--device host``) and the virtual device's ``benchmark_model``. Times are
µs (as benchmark_model prints them) unless a name ends in ``_ms``.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import percentile

__all__ = ["runtime", "load_interpreter", "random_inputs", "time_invokes", "block_stats", "op_names", "format_stats"]


def runtime():
    """The ``ai_edge_litert.interpreter`` module (imported on first use: the runtime library loads then)."""
    from ai_edge_litert import interpreter

    return interpreter


def load_interpreter(path: str | os.PathLike, threads: int | None = None):
    """Load ``path`` into an ``ai_edge_litert`` Interpreter with tensors allocated.

    ``threads`` ≤ 0 or ``None`` lets LiteRT choose. Raises ``ValueError``/``RuntimeError`` from LiteRT when
    the file is not a valid model or its tensors cannot be allocated.
    """
    Interpreter = runtime().Interpreter
    kw: dict[str, Any] = {"model_path": str(path)}
    if threads and threads > 0:
        kw["num_threads"] = int(threads)
    interp = Interpreter(**kw)
    interp.allocate_tensors()
    return interp


def random_inputs(interp, seed: int = 0) -> None:
    """Fill every input tensor with random values of its dtype (uniform [-1, 1] for floats)."""
    rng = np.random.default_rng(seed)
    for d in interp.get_input_details():
        shape, dt = d["shape"], np.dtype(d["dtype"])
        if np.issubdtype(dt, np.floating):
            arr = rng.uniform(-1, 1, size=shape).astype(dt)
        elif np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)
        else:
            arr = np.zeros(shape, dtype=dt)
        interp.set_tensor(d["index"], arr)


def time_invokes(interp, min_runs: int, min_secs: float = 0.0, max_secs: float = 150.0) -> list[float]:
    """Invoke at least ``min_runs`` times and for at least ``min_secs`` s, stopping after ``max_secs`` s.

    Same rule as benchmark_model. Returns the wall time of each invoke in µs.
    """
    times: list[float] = []
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if len(times) >= min_runs and elapsed >= min_secs:
            break
        if elapsed > max_secs and times:
            break
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def block_stats(times_us: list[float]) -> dict[str, float]:
    """benchmark_model's statistics of one block (µs): count, first, curr, min, max, avg, std, p5, median, p95."""
    s = sorted(times_us)
    n = len(times_us)
    avg = sum(times_us) / n
    std = math.sqrt(sum((t - avg) ** 2 for t in times_us) / n)
    return {"count": n, "first": times_us[0], "curr": times_us[-1], "min": s[0], "max": s[-1], "avg": avg,
            "std": std, "p5": percentile(s, 5), "median": percentile(s, 50), "p95": percentile(s, 95)}


def format_stats(st: dict[str, float], newer: bool = True) -> str:
    """The ``count=… first=… …`` line as benchmark_model prints it (µs, integers except ``avg``)."""
    line = (f"count={st['count']} first={int(st['first'])} curr={int(st['curr'])} min={int(st['min'])} "
            f"max={int(st['max'])} avg={st['avg']:.6g} std={int(round(st['std']))}")
    if newer:
        line += f" p5={int(st['p5'])} median={int(st['median'])} p95={int(st['p95'])}"
    return line


def op_names(path: str | os.PathLike) -> list[str]:
    """Builtin op names of the graph in ``path`` in execution order (e.g. ``CONV_2D``); empty if LiteRT hides
    them. Read without LiteRT's default delegate (XNNPACK), which would replace nodes by ``DELEGATE`` ones."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interp = Interpreter(model_path=str(path),
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        return [str(op.get("op_name", "?")) for op in interp._get_ops_details()]  # noqa: SLF001
    except Exception:  # pragma: no cover - private API may vanish
        return []


def file_size_mb(path: str | os.PathLike) -> float:
    """File size in MB (10^6 bytes)."""
    return Path(path).stat().st_size / 1e6
