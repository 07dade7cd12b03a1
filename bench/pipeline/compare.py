"""Original beside compressed in the release: the paper-Table-3 headline, the latency tables and their plot.

Every bench target (a phone, the host CPU, the virtual device) timed the original (the unpruned generator of
the run's family and width, :mod:`export.original`) and the compressed generator in each dtype, at the same
input size. Per target and dtype this module pairs the two rows and derives:

* **speed-up** = original latency / compressed latency (medians; means where the runner printed no median),
  on the same machine, dtype and input;
* **MACs ratio** = original MACs / compressed MACs at the exported input size (the manifests' ``macs``,
  :mod:`compress.macs`): what the speed-up would be if latency followed MACs.

The machine behind each figure is named in the row itself: ``phone`` (figures of that phone), ``host`` (this
machine's CPU, LiteRT) or ``virtual`` (the host CPU behind a simulated phone); host and virtual figures are
never phone figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.tables import chart_note, format_macs, md_escape

DTYPES = ("fp32", "fp16", "int8")
#: Bar colours of the plot: original, compressed.
COLOURS = ("#9e9e9e", "#1f77b4")


def target_kind(lat: dict) -> str:
    """``phone``, ``host`` or ``virtual``: what kind of machine a bench target's ``latency.json`` is from."""
    k = lat.get("figures") or (lat.get("device") or {}).get("kind")  # figures: bench's --runner-kind host
    return k if k in ("host", "virtual") else "phone"


def chipset(lat: dict) -> str:
    """The chipset a target stands for: the phone profile's SoC and name (``SM8450 (Snapdragon 8 Gen 1)``),
    ``virtual`` appended for the virtual device; ``host CPU`` for the host."""
    from bench.profiles import HOST, get_profile
    from compress.errors import InputError

    d = lat.get("device") or {}
    kind = target_kind(lat)
    if kind == "host" and d.get("profile") in (None, HOST):
        return "host CPU"
    try:
        p = get_profile(str(d.get("profile")))
        text = f"{p['soc']} ({p['name']})"
    except InputError:
        text = str(d.get("soc") or lat.get("device_label") or "?")
    return text + (" virtual" if kind == "virtual" else "")


def _threads(config: dict) -> str:
    n = config.get("threads")
    return f"{n} thread" + ("" if n == 1 else "s")


def machine_cell(lat: dict) -> str:
    """The machine behind a target's figures, starting with its kind in bold (``**phone**``, ``**host**``,
    ``**virtual**``)."""
    d, c = lat.get("device") or {}, lat.get("config") or {}
    kind = target_kind(lat)
    if kind == "phone":
        name = " ".join(x for x in (d.get("manufacturer"), d.get("model")) if x) or lat.get("device_label", "?")
        how = f"GPU delegate ({c.get('gpu_backend')})" if c.get("use_gpu") else f"CPU, {_threads(c)}"
        gpu = f", {d['gpu_renderer']}" if d.get("gpu_renderer") else ""
        return f"**phone**: {name}{gpu}, {how}"
    if kind == "host":
        return (f"**host**: {d.get('soc') or '?'} CPU, {d.get('runtime') or 'LiteRT'}, {_threads(c)} "
                "(not a phone figure)")
    return (f"**virtual**: this host's CPU behind a simulated {d.get('soc') or d.get('profile') or 'phone'}, "
            f"{_threads(c)} (not a phone figure)")


def _latency(row: dict | None) -> tuple[float | None, str]:
    """(latency ms, basis): the median, else the mean; (None, "") for a row without figures."""
    if not row or row.get("status") != "ok":
        return None, ""
    if row.get("median_ms"):
        return row["median_ms"], "median"
    if row.get("mean_ms"):
        return row["mean_ms"], "mean"
    return None, ""


@dataclass
class Pair:
    """One target x dtype: the original's and the compressed generator's rows (``None`` when not benched)."""

    dtype: str
    original: dict | None
    compressed: dict | None

    @property
    def speedup(self) -> float | None:
        """original / compressed latency (×) on the same basis (both medians, else both means), or None."""
        o, c = self.original, self.compressed
        if not o or not c or o.get("status") != "ok" or c.get("status") != "ok":
            return None
        key = "median_ms" if o.get("median_ms") and c.get("median_ms") else "mean_ms"
        return o[key] / c[key] if o.get(key) and c.get(key) else None

    @property
    def macs_ratio(self) -> float | None:
        """original / compressed MACs (×) at the benched input size, or None."""
        o, c = (self.original or {}).get("macs"), (self.compressed or {}).get("macs")
        return o / c if o and c else None


def pairs(lat: dict, original: str | None, compressed: str | None) -> list[Pair]:
    """The :class:`Pair` of each dtype a target's ``latency.json`` holds, in fp32/fp16/int8 order. ``original``
    and ``compressed`` are the model labels of the two export manifests (``None`` for the original when it was
    not exported); with no label for the compressed generator every row that is not the original's is it."""
    rows = lat.get("rows", [])
    out = []
    for dt in [d for d in DTYPES if any(r["dtype"] == d for r in rows)]:
        o = next((r for r in rows if r["dtype"] == dt and original and r["model"] == original), None)
        c = next((r for r in rows if r["dtype"] == dt and r is not o
                  and (r["model"] == compressed if compressed else r["model"] != original)), None)
        out.append(Pair(dt, o, c))
    return out


def dtype_cell(p: Pair) -> str:
    """The dtype column of a pair: the dtype, and the label of either file that is not plainly it (``int8 (original
    file: int8 (mixed: 1 of 18 convolutions float))``: :func:`quantize.composition.int8_label`, via the rows)."""
    other = [(who, r["dtype_label"]) for who, r in (("original", p.original), ("compressed", p.compressed))
             if r and r.get("dtype_label") and r["dtype_label"] != p.dtype]
    return p.dtype + (" (" + "; ".join(f"{who} file: {label}" for who, label in other) + ")" if other else "")


def _ms(row: dict | None, with_p95: bool = False) -> str:
    v, basis = _latency(row)
    if v is None:
        return "-" if not row else f"not measured ({row.get('status')})"
    text = f"{v:.2f}" + (" (mean)" if basis == "mean" else "")
    if with_p95 and row.get("p95_ms"):
        text += f" / {row['p95_ms']:.2f}"
    return text


def _ratio(x: float | None, bold: bool = False) -> str:
    if x is None:
        return "-"
    return f"**{x:.2f}×**" if bold else f"{x:.2f}×"


def headline_markdown(targets: list[tuple[str, dict]], original: str | None, compressed: str | None,
                      size: str) -> list[str]:
    """The Table-3-style table: chipset × dtype × original ms, compressed ms, speed-up, MACs ratio, and the
    machine behind the figures in the row (Markdown lines)."""
    lines = ["| chipset | dtype | input | original ms | compressed ms | speed-up | MACs ratio | machine |",
             "|---|---|---|---|---|---|---|---|"]
    for _, lat in targets:
        for p in pairs(lat, original, compressed):
            inp = (p.compressed or p.original or {}).get("input") or size
            lines.append(f"| {md_escape(chipset(lat))} | {dtype_cell(p)} | {inp} | {_ms(p.original)} | "
                         f"{_ms(p.compressed)} | {_ratio(p.speedup, bold=True)} | {_ratio(p.macs_ratio)} | "
                         f"{machine_cell(lat)} |")
    return lines


def target_markdown(lat: dict, original: str | None, compressed: str | None) -> list[str]:
    """One target's latency table: per dtype, the original's and the compressed generator's median / p95 (ms),
    the speed-up beside the MACs ratio, the file sizes, the compressed file's delegate and the flags."""
    lines = ["| dtype | input | original median / p95 ms | compressed median / p95 ms | speed-up | MACs ratio | "
             "size MB original → compressed | delegate (compressed) | flags |",
             "|---|---|---|---|---|---|---|---|---|"]
    plain = {"host", "virtual"}
    for p in pairs(lat, original, compressed):
        rows = [r for r in (p.original, p.compressed) if r]
        flags = sorted({f for r in rows for f in r.get("flags", []) if f not in plain})
        size = " → ".join(f"{r['size_mb']:.3f}" if r.get("size_mb") is not None else "-"
                          for r in (p.original, p.compressed) if r)
        inp = (p.compressed or p.original or {}).get("input") or "-"
        lines.append(f"| {dtype_cell(p)} | {inp} | {_ms(p.original, True)} | {_ms(p.compressed, True)} | "
                     f"{_ratio(p.speedup, bold=True)} | {_ratio(p.macs_ratio)} | {size} | "
                     f"{md_escape((p.compressed or {}).get('delegate', '-'))} | "
                     f"{md_escape(', '.join(flags)) or '-'} |")
    return lines


def macs_text(original: dict | None, compressed: dict | None) -> str:
    """``2.876 G → 0.776 G, 3.71× fewer`` from the two export manifests' ``macs``."""
    o, c = (original or {}).get("macs"), (compressed or {}).get("macs")
    text = f"{format_macs(o, 3)} → {format_macs(c, 3)}"
    return text + (f", {o / c:.2f}× fewer" if o and c else "")


def comparison_plot(targets: list[tuple[str, dict]], original: str | None, compressed: str | None,
                    dest: Path, size: str) -> bool:
    """One panel per target: per dtype the original's and the compressed generator's median latency side by
    side (bar to p95), the speed-up written above; host and virtual panels say they are not phone figures.
    Written atomically to ``dest`` (PNG); returns False when no target has a measured row."""
    panels = [(name, lat, pairs(lat, original, compressed)) for name, lat in targets]
    panels = [t for t in panels if any(_latency(r)[0] for p in t[2] for r in (p.original, p.compressed))]
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from compress.io import atomic_path

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 0.6, 3.8), dpi=100, squeeze=False)
    for ax, (name, lat, ps) in zip(axes[0], panels):
        for j, (who, colour) in enumerate(zip(("original", "compressed"), COLOURS)):
            xs, hs, errs = [], [], []
            for i, p in enumerate(ps):
                row = getattr(p, who)
                v, _ = _latency(row)
                if v is None:
                    continue
                xs.append(i + (j - 0.5) * 0.38)
                hs.append(v)
                errs.append(max(0.0, (row.get("p95_ms") or v) - v))
            ax.bar(xs, hs, 0.36, color=colour, label=who, yerr=[[0] * len(errs), errs], capsize=3)
        top = max(max(_latency(r)[0] or 0, (r or {}).get("p95_ms") or 0)
                  for p in ps for r in (p.original, p.compressed))
        for i, p in enumerate(ps):
            if p.speedup is not None:
                ax.text(i, top * 1.05, f"{p.speedup:.2f}×", ha="center", fontsize=9, fontweight="bold")
        ax.set_ylim(0, top * 1.18 if top else 1)
        ax.set_xticks(range(len(ps)), [p.dtype + "".join(f"\n{who}: {chart_note(getattr(p, who))}"
                                                          for who in ("original", "compressed")
                                                          if chart_note(getattr(p, who))) for p in ps], fontsize=8)
        kind = target_kind(lat)
        note = {"host": "\nhost CPU: not phone figures", "virtual": "\nvirtual device: not phone figures"}
        ax.set_title(f"{chipset(lat)}{note.get(kind, '')}", fontsize=9)
        ax.set_ylabel(f"median latency (ms) at {size}, bar to p95")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle("original vs compressed generator (speed-up = original ÷ compressed, above the bars)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True
