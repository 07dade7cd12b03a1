"""Latency tables for release reports: Markdown, CSV, JSON and a PNG chart, one row per model × dtype.

Statistics of a row (all ms), from the repeats that ran cleanly:

* ``mean_ms``, ``std_ms`` - over every timed inference of every repeat (pooled from each repeat's count, avg
  and std, as benchmark_model prints no per-inference times);
* ``min_ms`` - fastest single inference;
* ``median_ms``, ``p90_ms`` - median and 90th percentile (linear interpolation) of the per-repeat latencies,
  a repeat's latency being its median where the build prints one (newer builds) and its mean otherwise;
* ``init_ms`` - median of the repeats' initialisation times (delegate creation and kernel compilation).
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from typing import Any, Iterable

from compress.io import atomic_path, atomic_write_json, atomic_write_text

from bench.results import THERMAL_NAMES, THROTTLE_STATUS, ModelResult
from bench.stats import percentile

COLUMNS = ["model", "dtype", "device", "median_ms", "p90_ms", "mean_ms", "std_ms", "min_ms", "init_ms",
           "size_mb", "macs", "delegate", "thermal", "repeats_ok", "speedup", "flags", "status"]


def _thermal_text(res: ModelResult) -> tuple[str, bool, int | None]:
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


def summarise(res: ModelResult, device_label: str, virtual: bool, host: bool) -> dict[str, Any]:
    """One table row (dict) for a model result; see the module docstring for the statistics."""
    spec = res.spec
    flags: list[str] = []
    if virtual:
        flags.append("virtual")
    if host:
        flags.append("host")
    good = [r for r in res.repeats if r.ok]
    problems = sorted({r.problem for r in res.repeats if r.problem})
    flags += problems
    if res.error:
        flags.append("error")
    row: dict[str, Any] = {
        "model": spec.label, "dtype": spec.dtype, "device": device_label, "size_mb": round(spec.size_mb, 4),
        "macs": spec.macs, "repeats_ok": f"{len(good)}/{len(res.repeats) if res.repeats else 0}",
        "median_ms": None, "p90_ms": None, "mean_ms": None, "std_ms": None, "min_ms": None, "init_ms": None,
        "speedup": None, "file": str(spec.path), "sha256": spec.sha256,
    }
    # delegate coverage over all repeats that printed something
    outs = [r.output for r in res.repeats if r.output is not None]
    covs = {o.delegate.coverage for o in outs if o.delegate.requested}
    if host:
        delegate = "none (CPU)"
    elif not outs:
        delegate = "n/a"
    elif not covs:
        delegate = "not applied"
        flags.append("no-delegate")
    else:
        worst = next(c for c in ("none", "partial", "unknown", "full") if c in covs)
        o = next(o for o in outs if o.delegate.coverage == worst)
        delegate = o.delegate.describe()
        if worst in ("partial", "none"):
            flags.append("partial-delegate" if worst == "partial" else "not-delegated")
    row["delegate"] = delegate
    thermal, throttled, worst_status = _thermal_text(res)
    row["thermal"], row["thermal_max_status"] = thermal, worst_status
    if throttled:
        flags.append("throttled")
    if good:
        blocks = [r.output.timed for r in good]
        n = sum(b.count for b in blocks)
        mean = sum(b.count * (b.avg or 0.0) for b in blocks) / n
        var = sum(b.count * ((b.std or 0.0) ** 2 + ((b.avg or 0.0) - mean) ** 2) for b in blocks) / n
        per_repeat = [(b.median if b.median is not None else b.avg) / 1000.0 for b in blocks]
        inits = [r.output.init_ms for r in good if r.output.init_ms is not None]
        row.update(mean_ms=mean / 1000.0, std_ms=math.sqrt(var) / 1000.0,
                   min_ms=min(b.min if b.min is not None else b.avg for b in blocks) / 1000.0,
                   median_ms=statistics.median(per_repeat), p90_ms=percentile(sorted(per_repeat), 90),
                   init_ms=statistics.median(inits) if inits else None, timed_inferences=n)
    if len(good) < len(res.repeats):
        if good:
            flags.append("some-repeats-failed")
    for k in ("median_ms", "p90_ms", "mean_ms", "std_ms", "min_ms", "init_ms"):
        if row[k] is not None:
            row[k] = round(row[k], 4)
    row["flags"] = sorted(set(flags), key=flags.index)
    row["status"] = "ok" if good else "failed"
    detail = "; ".join(r.detail for r in res.repeats if r.detail)
    row["problem"] = res.error or detail or None
    return row


def add_speedups(rows: list[dict[str, Any]], reference: str | None = None) -> str | None:
    """Fill ``speedup`` = reference model's median / row's median, per dtype (×). Returns the reference label.

    The reference is ``reference`` if given, else ``unpruned`` if present, else the first model. Nothing is
    filled when the run has a single model label.
    """
    labels = list(dict.fromkeys(r["model"] for r in rows))
    if len(labels) < 2:
        return None
    ref = reference if reference in labels else ("unpruned" if "unpruned" in labels else labels[0])
    base = {r["dtype"]: r["median_ms"] for r in rows if r["model"] == ref and r["median_ms"]}
    for r in rows:
        if r["median_ms"] and r["dtype"] in base:
            r["speedup"] = round(base[r["dtype"]] / r["median_ms"], 4)
    return ref


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def format_macs(v: Any, digits: int = 2) -> str:
    """MACs with a G/M/k unit (``-`` for None), e.g. 1.94e8 -> ``194.00 M``."""
    if v is None:
        return "-"
    v = float(v)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.{digits}f} {unit}"
    return f"{v:.0f}"


def to_markdown(report: dict[str, Any]) -> str:
    """The Markdown report: header with device facts and runner, the latency table, notes."""
    f, rows = report["device"], report["rows"]
    lines = [f"# Latency: {report['device_label']}", ""]
    if f.get("kind") == "virtual":
        lines += ["> **VIRTUAL DEVICE** - host CPU (LiteRT) behind a simulated phone; these are not phone "
                  "figures.", ""]
    elif f.get("kind") == "host":
        lines += ["> **HOST CPU** - LiteRT on this machine's CPU, no GPU delegate; these are not phone figures.", ""]
    name = f.get("model") or ""
    if f.get("manufacturer") and not name.lower().startswith(f["manufacturer"].lower()):
        name = f"{f['manufacturer']} {name}"
    facts = [("device", name.strip()), ("SoC", f.get("soc")),
             ("Android", f"{f.get('android')} (SDK {f.get('sdk')})" if f.get("android") else None),
             ("GPU", f.get("gpu_renderer")), ("GPU driver", f.get("gpu_driver")), ("serial", f.get("serial")),
             ("runtime", f.get("runtime"))]
    lines += [f"- {k}: {v}" for k, v in facts if v]
    r = report.get("runner") or {}
    if r:
        lines.append(f"- runner: `{r.get('name')}` sha256 `{r.get('sha256')}`")
    c = report["config"]
    lines.append(f"- protocol: {c['warmup']} warm-up + {c['runs']} timed runs × {c['repeats']} repeats, "
                 f"{c['cooldown_s']:g} s cool-down, "
                 + (f"GPU delegate ({c['gpu_backend']})" if c["use_gpu"] and f.get("kind") != "host"
                    else f"CPU, {c['threads']} threads"))
    lines.append(f"- started {report['started']}, bench overhead {report['timings'].get('overhead_s', 0):.2f} s "
                 f"around {report['timings'].get('runner_wall_s') or report['timings'].get('runner_s', 0):.2f} s of runner "
                 f"time (+ {report['timings'].get('cooldown_s', 0):.0f} s cool-down)")
    if report.get("aborted"):
        lines += ["", f"**Run aborted:** {report['aborted']} Rows below are what was measured before."]
    lines += ["", "| model | dtype | median ms | p90 ms | mean ms | std ms | min ms | init ms | size MB | MACs | "
              "delegate | thermal | speedup | flags |", "|" + "---|" * 14]
    for row in rows:
        lines.append("| " + " | ".join([
            row["model"], row["dtype"], _fmt(row["median_ms"]), _fmt(row["p90_ms"]), _fmt(row["mean_ms"]),
            _fmt(row["std_ms"]), _fmt(row["min_ms"]), _fmt(row["init_ms"], 1), _fmt(row["size_mb"], 3),
            format_macs(row["macs"]), row["delegate"], row["thermal"],
            f"{row['speedup']:.2f}×" if row.get("speedup") else "-",
            ", ".join(f"**{x}**" if x not in ("virtual", "host") else x for x in row["flags"]) or "-",
        ]) + " |")
    if report.get("reference"):
        lines += ["", f"speedup: median latency of `{report['reference']}` ÷ the row's, same dtype."]
    problems = [r for r in rows if r.get("problem")]
    if problems:
        lines += ["", "Problems:"] + [f"- {r['model']} {r['dtype']}: {r['problem']}" for r in problems]
    lines += ["", "median/p90: over per-repeat latencies (each repeat's median, or its mean on older builds); "
              "mean/std: over all timed inferences; min: fastest inference. Thermal: Android thermal status "
              "before the first → after the last repeat (0 none … 3 severe); THROTTLED from 2 (moderate).", ""]
    return "\n".join(lines)


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    """CSV text with the :data:`COLUMNS` (flags joined by ``;``)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS + ["problem"], extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "flags": ";".join(r["flags"])})
    return buf.getvalue()


def plot(report: dict[str, Any], dest) -> None:
    """Grouped bar chart of median latency (ms) per model and dtype, p90 as error bar; flagged rows hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    labels = list(dict.fromkeys(r["model"] for r in rows))
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(labels) * max(1, len(dtypes)) ** 0.5 + 2), 4), dpi=100)
    width = 0.8 / max(1, len(dtypes))
    for j, dt in enumerate(dtypes):
        for i, lab in enumerate(labels):
            r = next((x for x in rows if x["model"] == lab and x["dtype"] == dt), None)
            if r is None or r["median_ms"] is None:
                continue
            bad = [fl for fl in r["flags"] if fl not in ("virtual", "host")]
            x = i + (j - (len(dtypes) - 1) / 2) * width
            ax.bar(x, r["median_ms"], width * 0.95, color=f"C{j}", label=dt if i == 0 else None,
                   hatch="//" if bad else None, edgecolor="black" if bad else None,
                   yerr=[[0], [max(0.0, (r["p90_ms"] or r["median_ms"]) - r["median_ms"])]], capsize=3)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel("median latency (ms), bar to p90")
    kind = report["device"].get("kind")
    title = report["device_label"] + (" - virtual device: host CPU figures" if kind == "virtual" else "")
    ax.set_title(title, fontsize=10)
    ax.legend(title="dtype", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_all(report: dict[str, Any], out_dir, stem: str = "latency", chart: bool = True) -> dict[str, str]:
    """Write ``<stem>.md``, ``.csv``, ``.json`` (and ``.png`` if ``chart``) into ``out_dir`` atomically.

    Returns the paths written by kind (``md``, ``csv``, ``json``, ``png``).
    """
    from pathlib import Path

    out = Path(out_dir)
    paths = {"md": out / f"{stem}.md", "csv": out / f"{stem}.csv", "json": out / f"{stem}.json",
             "png": out / f"{stem}.png"}
    atomic_write_text(paths["md"], to_markdown(report))
    atomic_write_text(paths["csv"], to_csv(report["rows"]))
    atomic_write_json(paths["json"], report)
    if chart and any(r["median_ms"] is not None for r in report["rows"]):
        plot(report, paths["png"])
    else:
        paths.pop("png")
    return {k: str(v) for k, v in paths.items()}
