"""One latency-table row per model × dtype: statistics that mean their names, and the columns phone teams read.

benchmark_model prints, per invocation (a *repeat*), statistics over that invocation's timed inferences:
``count``, ``min``, ``avg``, ``std`` and, in newer builds, the per-inference percentiles ``p5``, ``median`` and
``p95``; it prints no single inference times. So a row's fields are (all ms unless named otherwise):

* ``median_ms``, ``p95_ms`` - per-inference median and 95th percentile as the runner reports them for each
  repeat (newer builds), the median of those over the clean repeats (the pooled percentile of all
  inferences lies between the repeats' smallest and largest value). ``None`` for the older output form, which
  prints no percentiles: ``stats_form`` then says ``older`` and nothing passes for a median;
* ``mean_ms``, ``std_ms`` - over every timed inference of every clean repeat (pooled exactly from each
  repeat's count, avg and std); ``min_ms`` - fastest single inference; ``inferences`` - their count;
* ``repeat_spread_ms`` - run-to-run spread: largest minus smallest repeat median (repeat mean for the older
  form) over the clean repeats, ``None`` with one repeat;
* ``init_ms``, ``first_ms``, ``warmup_ms`` - medians over the repeats of the runner's ``Init`` (delegate
  creation, kernel compilation), ``First inference`` and ``Warmup (avg)``;
* ``peak_mem_mb`` - the largest peak memory footprint any repeat reported (MB, as AI Hub's peak memory);
* ``cpu_ops`` - the ops the GPU delegate left to the CPU, by name with their node counts in the graph;
* ``gpu_precision`` - ``fp16`` or ``fp32`` GPU arithmetic (``--gpu_precision_loss_allowed``), as printed;
* ``runner_version`` - the runtime version line of the runner's output, if it prints one;
* ``dtype_label`` - what the file is, read from it: ``int8 (mixed: N of M convolutions float)`` for an int8
  file with float convolutions (:func:`quantize.composition.int8_label`), else the dtype; the tables show it.

The speed-up column compares medians where both rows have them, else means (``speedup_basis``).
"""
from __future__ import annotations

import math
import statistics
from typing import Any

from bench.models import ModelSpec
from bench.results import THERMAL_NAMES, THROTTLE_STATUS, ModelResult

FIGURE_FLAGS = {"virtual": "virtual", "host": "host"}  # the machine behind a row's figures, as a flag
PLAIN_FLAGS = set(FIGURE_FLAGS.values())


def thermal_text(res: ModelResult) -> tuple[str, bool, int | None]:
    """``(text, throttled, worst status)``: Android thermal status before the first → after the last repeat,
    the hottest zone, and ``THROTTLED (name)`` when any reading reached :data:`THROTTLE_STATUS`."""
    stats = [t.status for r in res.repeats for t in (r.thermal_before, r.thermal_after) if t.status is not None]
    temps = [t.temp_mc for r in res.repeats for t in (r.thermal_before, r.thermal_after) if t.temp_mc is not None]
    worst = max(stats) if stats else None
    throttled = worst is not None and worst >= THROTTLE_STATUS
    if not res.repeats:
        return "n/a", False, None
    first, last = res.repeats[0].thermal_before, res.repeats[-1].thermal_after
    if first.status is None and last.status is None:
        text = "status n/a"
    else:
        text = f"{first.status if first.status is not None else '?'}→{last.status if last.status is not None else '?'}"
        if worst is not None and worst != last.status:
            text += f" (max {worst})"
    if temps:
        text += f", {max(temps) / 1000:.1f}°C max"
    if throttled:
        text += f" THROTTLED ({THERMAL_NAMES.get(worst, worst)})"
    return text, throttled, worst


def _ranges(ks: list[int]) -> str:
    """[1, 2, 3, 5] -> ``1-3, 5``."""
    out, start, prev = [], None, None
    for k in sorted(ks) + [None]:
        if start is None:
            start = prev = k
        elif k is not None and k == prev + 1:
            prev = k
        else:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = k
    return ", ".join(out)


def problem_text(res: ModelResult) -> str | None:
    """What went wrong with a model, each distinct message once (``repeats 1-3: runner exited 1: …``)."""
    by_detail: dict[str, list[int]] = {}
    for r in res.repeats:
        if r.detail:
            by_detail.setdefault(r.detail, []).append(r.index)
    parts = [res.error] if res.error else []
    for detail, ks in by_detail.items():
        if len(res.repeats) > 1:
            parts.append(f"repeat{'s' if len(ks) > 1 else ''} {_ranges(ks)}: {detail}")
        else:
            parts.append(detail)
    return "; ".join(parts) or None


def _median(vals: list[float]) -> float | None:
    return statistics.median(vals) if vals else None


def _cpu_ops(res: ModelResult, host: bool) -> str:
    if host:
        return "all (CPU)"
    outs = [r.output for r in res.repeats if r.output is not None and r.output.delegate.requested]
    if not outs:
        return "-"
    d = next((o.delegate for o in outs if o.delegate.coverage in ("none", "partial")), outs[0].delegate)
    if d.coverage == "none":
        return "all (not delegated)"
    names = list(dict.fromkeys(op for o in outs for op in o.delegate.unsupported_ops))
    ops = res.spec.ops or {}
    text = ", ".join(f"{n}×{ops[n]}" if n in ops else n for n in names)
    if d.nodes_total is not None and d.nodes_delegated is not None and d.nodes_total > d.nodes_delegated:
        text = (text + " " if text else "") + f"({d.nodes_total - d.nodes_delegated} of {d.nodes_total} nodes)"
    return text or "-"


def _gpu_precision(res: ModelResult, host: bool) -> str:
    outs = [r.output for r in res.repeats if r.output is not None]
    if host or (outs and not any(o.delegate.requested for o in outs)):
        return "n/a (CPU)"
    printed = [o.gpu_precision_loss for o in outs if o.gpu_precision_loss is not None]
    if printed:
        return "fp16" if any(printed) else "fp32"
    if not outs:
        return "-"
    # run_models.sh allows precision loss for fp16/int8 and forbids it for fp32
    return ("fp32" if res.spec.dtype == "fp32" else "fp16") + " (requested)"


def _delegate(res: ModelResult, host: bool, flags: list[str]) -> str:
    outs = [r.output for r in res.repeats if r.output is not None]
    covs = {o.delegate.coverage for o in outs if o.delegate.requested}
    if host:
        return "none (CPU)"
    if not outs:
        return "n/a"
    if not covs:
        flags.append("no-delegate")
        return "not applied"
    worst = next(c for c in ("none", "partial", "unknown", "full") if c in covs)
    if worst in ("partial", "none"):
        flags.append("partial-delegate" if worst == "partial" else "not-delegated")
    return next(o for o in outs if o.delegate.coverage == worst).delegate.describe()


def input_text(shape: list[int] | None) -> str:
    """``"256×256"`` for an image input (NHWC [1, H, W, C]); the whole shape joined by × for any other
    (DCGAN's z: ``1×1×1×100``); ``-`` when unknown."""
    if not shape:
        return "-"
    if len(shape) == 4 and shape[1] > 1 and shape[2] > 1:
        return f"{shape[1]}×{shape[2]}"
    return "×".join(map(str, shape))


def _base_row(spec: ModelSpec, device_label: str, figures: str) -> dict[str, Any]:
    return {
        "model": spec.label, "dtype": spec.dtype, "dtype_label": spec.dtype_label or spec.dtype,
        "input": input_text(spec.input_shape), "device": device_label,
        "figures": figures,
        "median_ms": None, "p95_ms": None, "mean_ms": None, "std_ms": None, "min_ms": None,
        "repeat_spread_ms": None, "inferences": None, "init_ms": None, "first_ms": None, "warmup_ms": None,
        "peak_mem_mb": None, "size_mb": round(spec.size_mb, 4), "macs": spec.macs, "delegate": "n/a",
        "cpu_ops": "-", "gpu_precision": "-", "thermal": "n/a", "thermal_max_status": None, "repeats_ok": "0/0",
        "speedup": None, "speedup_basis": None, "macs_ratio": None, "stats_form": None, "runner_version": None,
        "file": str(spec.path), "sha256": spec.sha256,
    }


def summarise(res: ModelResult, device_label: str, figures: str) -> dict[str, Any]:
    """One table row (dict) for a model result; ``figures`` is ``phone``, ``virtual`` or ``host`` (the machine
    behind the numbers). See the module docstring for the fields."""
    host = figures == "host" and not any(r.output is not None and r.output.delegate.requested
                                         for r in res.repeats)
    row = _base_row(res.spec, device_label, figures)
    flags: list[str] = [FIGURE_FLAGS[figures]] if figures in FIGURE_FLAGS else []
    good = [r for r in res.repeats if r.ok]
    flags += sorted({r.problem for r in res.repeats if r.problem})
    flags += sorted({r.cause for r in res.repeats if r.cause})
    if res.problem:
        flags.append(res.problem)
    elif res.error:
        flags.append("error")
    row["delegate"] = _delegate(res, host, flags)
    row["cpu_ops"] = _cpu_ops(res, host)
    row["gpu_precision"] = _gpu_precision(res, host)
    row["thermal"], throttled, row["thermal_max_status"] = thermal_text(res)
    if throttled:
        flags.append("throttled")
    row["repeats_ok"] = f"{len(good)}/{len(res.repeats)}"
    if good:
        outs = [r.output for r in good]
        blocks = [o.timed for o in outs]
        n = sum(b.count for b in blocks)
        mean = sum(b.count * (b.avg or 0.0) for b in blocks) / n
        var = sum(b.count * ((b.std or 0.0) ** 2 + ((b.avg or 0.0) - mean) ** 2) for b in blocks) / n
        newer = all(b.median is not None for b in blocks)
        central = [(b.median if newer else b.avg) or 0.0 for b in blocks]
        firsts = [o.first_us / 1000 for o in outs if o.first_us is not None]
        warms = [o.warmup_avg_us / 1000 for o in outs
                 if o.warmup_avg_us is not None and math.isfinite(o.warmup_avg_us)]
        peaks = [o.peak_memory_mb for o in outs if o.peak_memory_mb is not None]
        row.update(
            mean_ms=mean / 1000.0, std_ms=math.sqrt(var) / 1000.0, inferences=n,
            min_ms=min(b.min if b.min is not None else b.avg for b in blocks) / 1000.0,
            median_ms=_median([b.median / 1000.0 for b in blocks]) if newer else None,
            p95_ms=_median([b.p95 / 1000.0 for b in blocks if b.p95 is not None]) if newer else None,
            repeat_spread_ms=(max(central) - min(central)) / 1000.0 if len(blocks) > 1 else None,
            init_ms=_median([o.init_ms for o in outs if o.init_ms is not None]),
            first_ms=_median(firsts), warmup_ms=_median(warms), peak_mem_mb=max(peaks) if peaks else None,
            stats_form="newer" if newer else "older", runner_version=next((o.version for o in outs if o.version), None))
        if len(good) < len(res.repeats):
            flags.append("some-repeats-failed")
    for k in ("median_ms", "p95_ms", "mean_ms", "std_ms", "min_ms", "repeat_spread_ms", "init_ms", "first_ms",
              "warmup_ms", "peak_mem_mb"):
        if row[k] is not None:
            row[k] = round(row[k], 4)
    row["flags"] = list(dict.fromkeys(flags))
    row["status"] = "ok" if good else "failed"
    row["problem"] = problem_text(res)
    return row


def pending_row(spec: ModelSpec, device_label: str, figures: str, why: str) -> dict[str, Any]:
    """The row of a model this run has not measured (``status`` ``not-run``; ``why`` says why)."""
    row = _base_row(spec, device_label, figures)
    row.update(flags=[f for f in (FIGURE_FLAGS.get(figures), "not-run") if f], status="not-run", problem=why)
    return row


def add_speedups(rows: list[dict[str, Any]], reference: str | None = None) -> str | None:
    """Fill ``speedup`` = reference model's latency / the row's, per dtype (×), and ``speedup_basis``: the
    median where both rows have one, else the mean; and ``macs_ratio`` = reference model's MACs / the row's
    (what the speed-up would be if latency followed MACs). Returns the reference label.

    The reference is ``reference`` if given, else ``unpruned`` if present, else the first model. Nothing is
    filled when the run has a single model label.
    """
    labels = list(dict.fromkeys(r["model"] for r in rows))
    if len(labels) < 2:
        return None
    ref = reference if reference in labels else ("unpruned" if "unpruned" in labels else labels[0])
    base = {r["dtype"]: r for r in rows if r["model"] == ref and r["status"] == "ok"}
    for r in rows:
        b = base.get(r["dtype"])
        if b is None or r["status"] != "ok":
            continue
        if r.get("macs") and b.get("macs"):
            r["macs_ratio"] = round(b["macs"] / r["macs"], 4)
        key = "median_ms" if r["median_ms"] and b["median_ms"] else "mean_ms"
        if r[key] and b[key]:
            r["speedup"], r["speedup_basis"] = round(b[key] / r[key], 4), key[:-3]
    return ref
