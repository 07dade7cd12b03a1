"""Latency tables for release reports: Markdown, CSV, JSON and a PNG chart, one row per model × dtype.

The rows and what their statistics mean are :mod:`bench.rows`; this module formats them. Markdown and CSV
carry the same fields (per-run ones such as the runner in the Markdown header, per-row ones in the table);
every free text (labels from file names, messages) is escaped for Markdown.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Any, Iterable

from compress.io import atomic_path, atomic_write_json, atomic_write_text

from bench.rows import PLAIN_FLAGS

COLUMNS = ["model", "dtype", "device", "figures", "median_ms", "p95_ms", "mean_ms", "std_ms", "min_ms",
           "repeat_spread_ms", "inferences", "init_ms", "first_ms", "warmup_ms", "peak_mem_mb", "size_mb", "macs",
           "input", "delegate", "cpu_ops", "gpu_precision", "thermal", "repeats_ok", "speedup", "speedup_basis",
           "macs_ratio", "stats_form", "runner_version", "flags", "status", "problem", "dtype_label"]
_MD_SPECIAL = re.compile(r"([\\`*_<>\[\]|])")
FIGURES_BANNER = {
    "virtual": "> **VIRTUAL DEVICE** - host CPU (LiteRT) behind a simulated phone; these are not phone figures.",
    "host": "> **HOST FIGURES** - measured by a runner on this machine's CPU, not by benchmark_model on a phone; "
            "these are not phone figures.",
}


def md_escape(text: Any) -> str:
    """``text`` safe inside a Markdown table cell: ``\\ ` * _ < > [ ] |`` backslash-escaped, line breaks as spaces."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\r", " ").replace("\n", " ")


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


def _facts_lines(report: dict[str, Any]) -> list[str]:
    f = report["device"]
    name = f.get("model") or ""
    if f.get("manufacturer") and not name.lower().startswith(f["manufacturer"].lower()):
        name = f"{f['manufacturer']} {name}"
    facts = [("device", name.strip()), ("SoC", f.get("soc")),
             ("Android", f"{f.get('android')} (SDK {f.get('sdk')})" if f.get("android") else None),
             ("GPU", f.get("gpu_renderer")), ("GPU driver", f.get("gpu_driver")), ("serial", f.get("serial")),
             ("runtime", f.get("runtime"))]
    lines = [f"- {k}: {md_escape(v)}" for k, v in facts if v]
    r = report.get("runner") or {}
    if r:
        kind = {"host": " (--runner-kind host: host figures)", "virtual": " (virtual device runner)"}.get(
            r.get("kind"), "")
        lines.append(f"- runner: `{md_escape(r.get('name'))}` sha256 `{r.get('sha256')}`{kind}")
    versions = sorted({str(row["runner_version"]) for row in report["rows"] if row.get("runner_version")})
    if versions:
        lines.append(f"- runner version: {md_escape(', '.join(versions))}")
    c = report["config"]
    lines.append(f"- protocol: {c['warmup']} warm-up + {c['runs']} timed runs × {c['repeats']} repeats, "
                 f"{c['cooldown_s']:g} s cool-down, "
                 + (f"GPU delegate ({c['gpu_backend']})" if c["use_gpu"] and f.get("kind") != "host"
                    else f"CPU, {c['threads']} threads"))
    t = report["timings"]
    lines.append(f"- started {report['started']}, bench overhead {t.get('overhead_s', 0):.2f} s around "
                 f"{t.get('runner_wall_s') or t.get('runner_s', 0):.2f} s of runner time "
                 f"(+ {t.get('cooldown_s', 0):.0f} s cool-down)")
    return lines


def _row_cells(row: dict[str, Any]) -> list[str]:
    speed = "-"
    if row.get("speedup"):
        speed = f"{row['speedup']:.2f}×" + (" (mean)" if row.get("speedup_basis") == "mean" else "")
    flags = ", ".join(x if x in PLAIN_FLAGS else f"**{x}**" for x in row["flags"]) or "-"
    return [md_escape(row["model"]), row.get("dtype_label") or row["dtype"], _fmt(row["median_ms"]),
            _fmt(row["p95_ms"]), _fmt(row["mean_ms"]),
            _fmt(row["std_ms"]), _fmt(row["min_ms"]), _fmt(row["repeat_spread_ms"]), _fmt(row["inferences"]),
            _fmt(row["init_ms"], 1), _fmt(row["first_ms"]), _fmt(row["warmup_ms"]), _fmt(row["peak_mem_mb"], 1),
            _fmt(row["size_mb"], 3), format_macs(row["macs"]), row.get("input", "-"), md_escape(row["delegate"]),
            md_escape(row["cpu_ops"]),
            md_escape(row["gpu_precision"]), md_escape(row["thermal"]), row["repeats_ok"], speed,
            f"{row['macs_ratio']:.2f}×" if row.get("macs_ratio") else "-", flags]


MD_HEADER = ["model", "dtype", "median ms", "p95 ms", "mean ms", "std ms", "min ms", "spread ms", "inferences",
             "init ms", "first ms", "warm-up ms", "peak MB", "size MB", "MACs", "input", "delegate", "CPU ops",
             "GPU precision", "thermal", "repeats ok", "speedup", "MACs ratio", "flags"]


def to_markdown(report: dict[str, Any]) -> str:
    """The Markdown report: header with device facts and runner, the latency table, notes."""
    rows = report["rows"]
    lines = [f"# Latency: {md_escape(report['device_label'])}", ""]
    figures = report.get("figures") or report["device"].get("kind")
    if report["device"].get("kind") == "host":
        lines += ["> **HOST CPU** - LiteRT on this machine's CPU, no GPU delegate; these are not phone figures.", ""]
    elif figures in FIGURES_BANNER:
        lines += [FIGURES_BANNER[figures], ""]
    lines += _facts_lines(report)
    if report.get("aborted"):
        word = "Interrupted" if report.get("interrupted") else "Run aborted"
        lines += ["", f"**{word}:** {md_escape(report['aborted'])}. The rows below marked not-run were not "
                  "measured; rerun the same command to measure only those."]
    if report.get("reused"):
        lines += ["", f"Resumed: {len(report['reused'])} row(s) reused from the interrupted run of "
                  f"{report.get('resumed_from')}: {md_escape(', '.join(report['reused']))}."]
    lines += ["", "| " + " | ".join(MD_HEADER) + " |", "|" + "---|" * len(MD_HEADER)]
    lines += ["| " + " | ".join(_row_cells(row)) + " |" for row in rows]
    if report.get("reference"):
        lines += ["", f"speedup: latency of `{md_escape(report['reference'])}` ÷ the row's, same dtype (medians; "
                  "means where marked); MACs ratio: its MACs ÷ the row's."]
    problems = [r for r in rows if r.get("problem")]
    if problems:
        lines += ["", "Problems:"] + [f"- {md_escape(r['model'])} {r['dtype']} ({r['status']}): "
                                      f"{md_escape(r['problem'])}" for r in problems]
    older = [f"{md_escape(r['model'])} {r['dtype']}" for r in rows if r.get("stats_form") == "older"]
    if older:
        lines += ["", f"Older benchmark_model output form (no per-inference percentiles, so no median/p95; spread "
                  f"over repeat means): {', '.join(older)}."]
    lines += ["", "median/p95: per-inference percentiles printed by benchmark_model for each repeat (median over "
              "repeats); mean/std: over all timed inferences; min: fastest inference; spread: largest minus "
              "smallest repeat median; init/first/warm-up: runner's Init, First inference and Warmup (avg); peak: "
              "peak memory footprint. CPU ops: ops the GPU delegate left to the CPU (node counts). Thermal: "
              "Android thermal status before the first → after the last repeat (0 none … 3 severe); THROTTLED "
              "from 2 (moderate).", ""]
    return "\n".join(lines)


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    """CSV text with the :data:`COLUMNS` (flags joined by ``;``)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "flags": ";".join(r["flags"])})
    return buf.getvalue()


def _bar_value(r: dict[str, Any]) -> tuple[float | None, float | None]:
    """(bar height, whisker top): median and p95, or mean and mean + std where no median was printed."""
    if r["median_ms"] is not None:
        return r["median_ms"], r["p95_ms"]
    if r["mean_ms"] is not None:
        return r["mean_ms"], r["mean_ms"] + (r["std_ms"] or 0.0)
    return None, None


def chart_note(row: dict[str, Any] | None) -> str:
    """The short form of a row's dtype label for a chart, ``mixed: 1 of 18 float`` for ``int8 (mixed: 1 of 18
    convolutions float)``; ``""`` when the file is plainly its dtype (or the row has no label)."""
    label = (row or {}).get("dtype_label") or ""
    m = re.search(r"mixed: (\d+) of (\d+)", label)
    return f"mixed: {m[1]} of {m[2]} float" if m else ""


def plot(report: dict[str, Any], dest) -> None:
    """Grouped bar chart per model and dtype: median latency (ms) with a whisker to p95 (mean and mean + std for
    the older output form); flagged rows hatched; a mixed int8 file's bar says so (:func:`chart_note`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if _bar_value(r)[0] is not None]
    labels = list(dict.fromkeys(r["model"] for r in rows))
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(labels) * max(1, len(dtypes)) ** 0.5 + 2), 4), dpi=100)
    width = 0.8 / max(1, len(dtypes))
    for j, dt in enumerate(dtypes):
        for i, lab in enumerate(labels):
            r = next((x for x in rows if x["model"] == lab and x["dtype"] == dt), None)
            if r is None:
                continue
            h, top = _bar_value(r)
            bad = [fl for fl in r["flags"] if fl not in PLAIN_FLAGS]
            x = i + (j - (len(dtypes) - 1) / 2) * width
            ax.bar(x, h, width * 0.95, color=f"C{j}", label=dt if i == 0 else None,
                   hatch="//" if bad else None, edgecolor="black" if bad else None,
                   yerr=[[0], [max(0.0, (top or h) - h)]], capsize=3)
            if chart_note(r):
                ax.text(x, h / 2, chart_note(r), rotation=90, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel("median latency (ms), bar to p95")
    figures = report.get("figures") or report["device"].get("kind")
    note = {"virtual": " - virtual device: host CPU figures", "host": " - host figures, not a phone's"}
    ax.set_title(report["device_label"] + note.get(figures, ""), fontsize=10)
    ax.legend(title="dtype", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_all(report: dict[str, Any], out_dir, stem: str = "latency", chart: bool = True) -> dict[str, str]:
    """Write ``<stem>.md``, ``.csv``, ``.json`` (and ``.png`` if ``chart`` and a row has a figure) into
    ``out_dir`` atomically; a ``.png`` left by an earlier run is removed otherwise (it would pass for this
    run's). Returns the paths written by kind (``md``, ``csv``, ``json``, ``png``).
    """
    from pathlib import Path

    out = Path(out_dir)
    paths = {"md": out / f"{stem}.md", "csv": out / f"{stem}.csv", "json": out / f"{stem}.json",
             "png": out / f"{stem}.png"}
    atomic_write_text(paths["md"], to_markdown(report))
    atomic_write_text(paths["csv"], to_csv(report["rows"]))
    atomic_write_json(paths["json"], report)
    if chart and any(_bar_value(r)[0] is not None for r in report["rows"]):
        plot(report, paths["png"])
    else:
        paths.pop("png").unlink(missing_ok=True)
    return {k: str(v) for k, v in paths.items()}
