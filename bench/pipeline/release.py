"""Build the release folder of a run: one readable index page and every detail it links to.

``python -m bench.pipeline.release RUN_DIR [--out release/]`` (the pipeline's last stage, ``make release``) writes
``release/<run name>/``::

    index.md                     one page: the headline (original vs compressed latency per chipset and dtype,
                                 paper Table 3's form), what was compressed, target vs achieved MACs, params,
                                 FID/KID, latency tables inline, delegate coverage, warnings, machines, stage times
    release-<name>.html          the same page as one self-contained HTML file (images inline), to mail or attach
    speedup.png                  original and compressed latency side by side per dtype, one panel per target
    compression_report.{md,json} from the compress stage
    config.json                  the compress run's config
    evaluation.json, evaluation_grid.png   from the evaluate stage (when present)
    export_manifest.json         the export manifest (sha256, parity PSNR, gates, GPU readiness per file)
    original/                    the original's export_manifest.json, original.json (where its weights came
                                 from) and evaluation.json (a baseline run's), when the original was exported
    latency/<target>/latency.{md,csv,json,png}   bench output per target (phone, or host and virtual device)
    samples/*.png                the last search and converging sample grids of the run
    training.png                 MACs reduction and losses over the training steps (from metrics.jsonl)
    pipeline.json                the pipeline record (stage status, wall times, load, machine)

The folder is built in a temporary sibling (``.<name>.tmp-*``, files written with :mod:`compress.io`) and then
renamed into place; an older release of the same run is moved aside first and removed after the rename, so a
reader sees the old folder or the new one, never a half-written one. Always rebuilt (cheap).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.pipeline.compare import (chipset, comparison_plot, dtype_cell, headline_markdown, macs_text, pairs,
                                    target_kind, target_markdown)
from bench.pipeline.page import markdown_page
from bench.pipeline.record import RECORD, STAGES, json_problem, load_json, read_record
from bench.tables import format_macs, md_escape
from compress.errors import InputError
from compress.io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text, is_folder_name
from compress.machine import machine_text
from compress.run_files import METRICS, read_records
from export.original import ORIGINAL_DIR, ORIGINAL_RECORD
from export.parity import file_title

DTYPE_ORDER = {"onnx": 0, "fp32": 1, "fp16": 2, "int8": 3}


# --------------------------------------------------------------------------------------------------------
def _copy(src: Path, dest: Path) -> bool:
    if not src.is_file():
        return False
    atomic_write_bytes(dest, src.read_bytes())
    return True


def _f(x: Any, nd: int = 2, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{nd}f}{unit}"


def _macs(v: Any) -> str:
    return format_macs(v, 3)


def _find(obj: Any, *names: str) -> Any:
    """First value under one of ``names`` in a (nested) dict, breadth-first; None if absent."""
    queue = [obj]
    while queue:
        cur = queue.pop(0)
        if isinstance(cur, dict):
            for n in names:
                if n in cur and cur[n] is not None:
                    return cur[n]
            queue.extend(v for v in cur.values() if isinstance(v, (dict, list)))
        elif isinstance(cur, list):
            queue.extend(v for v in cur if isinstance(v, (dict, list)))
    return None


def _num(x: Any) -> float | None:
    if isinstance(x, dict):
        x = _find(x, "mean", "value", "fid")
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------------
def evaluation_summary(ev: dict | None) -> dict[str, Any]:
    """FID/KID figures from ``evaluation.json`` of ``python -m compress.evaluate`` (``fid``, ``kid_mean``,
    ``kid_std``, ``n_fake``, ``n_real``, ``real_label``, ``protocol``, ``machine``); other layouts are read
    tolerantly (``fid``/``kid`` at any depth)."""
    if not ev:
        return {}
    out: dict[str, Any] = {"fid": _num(_find(ev, "fid", "FID"))}
    kid = _find(ev, "kid_mean", "kid", "KID")
    if isinstance(kid, dict):
        out["kid"], out["kid_std"] = _num(_find(kid, "mean", "value")), _num(_find(kid, "std"))
    else:
        out["kid"], out["kid_std"] = _num(kid), _num(_find(ev, "kid_std"))
    for key, names in (("images", ("n_fake", "num_images", "n_images")), ("n_real", ("n_real",))):
        v = _find(ev, *names)
        if isinstance(v, (int, float)):
            out[key] = int(v)
    ref = _find(ev, "real_set", "real_label", "reference")
    if isinstance(ref, str):
        out["reference"] = ref
    out["protocol"] = ev.get("protocol")
    out["machine"] = _find(ev, "machine")
    return out


def _training_plot(metrics: Path, dest: Path, target: float | None = None) -> bool:
    """MACs reduction and generator losses over the steps, from ``metrics.jsonl``."""
    recs = read_records(metrics)
    if not recs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search = [r for r in recs if r.get("stage") == "search"]
    offset = max((r["step"] for r in search), default=0)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    mk = sorted({k for r in search for k in r if k.startswith("macs_reduction_")})
    for k in mk:
        a1.plot([r["step"] for r in search if k in r], [100 * r[k] for r in search if k in r], label=k[15:])
    if target is not None:
        a1.axhline(100 * target, color="gray", ls="--", lw=1, label=f"target {target:.0%}")
    a1.set_xlabel("search step")
    a1.set_ylabel("MACs removed (%)")
    a1.set_title("search: masked MACs reduction")
    if mk:
        a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    skip = {"step", "stage", "seconds", "lr"}
    keys = [k for k in dict.fromkeys(k for r in recs for k in r) if k not in skip and not k.startswith("macs_")
            and all(isinstance(r.get(k, 0.0), (int, float)) for r in recs)]
    for k in keys[:8]:
        xs = [r["step"] + (offset if r.get("stage") == "converge" else 0) for r in recs if k in r]
        a2.plot(xs, [r[k] for r in recs if k in r], label=k, lw=1)
    if offset:
        a2.axvline(offset, color="gray", ls="--", lw=1)
    a2.set_xlabel("step (search, then converging after the dashed line)")
    a2.set_title("losses")
    a2.legend(fontsize=7, ncol=2)
    a2.grid(alpha=0.3)
    fig.tight_layout()
    from compress.io import atomic_path

    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


def _samples(run: Path) -> list[Path]:
    """The last sample grid of each stage (search, converge) of the run."""
    out = []
    for stage in ("search", "converge"):
        files = sorted((run / "samples").glob(f"{stage}_*.png"))
        if files:
            out.append(files[-1])
    return out


#: free text a phone reports (getprop) or a host describes, shown in the index's tables and headings
_DEVICE_TEXT = ("manufacturer", "model", "soc", "gpu_renderer", "runtime", "fingerprint", "name", "build")


def _escaped_device(lat: dict) -> dict:
    """``lat`` with the device's free-text fields Markdown-escaped once (:func:`bench.tables.md_escape`), so that
    every place the index shows them is safe; keys such as ``profile`` stay as they are (they are looked up)."""
    device = dict(lat.get("device") or {})
    for k in _DEVICE_TEXT:
        if isinstance(device.get(k), str):
            device[k] = md_escape(device[k])
    out = {**lat, "device": device}
    if isinstance(lat.get("device_label"), str):
        out["device_label"] = md_escape(lat["device_label"])
    return out


def _bench_targets(run: Path) -> list[tuple[str, Path, dict]]:
    """(name, folder, latency.json) per bench target, phone first, then host, then virtual."""
    found = []
    for d in sorted((run / "bench").glob("*")) if (run / "bench").is_dir() else []:
        if d.name.startswith("."):  # a bench in progress or one that failed (bench.pipeline.stages)
            continue
        lat = load_json(d / "latency.json")
        if isinstance(lat, dict) and "rows" in lat:
            found.append((d.name, d, _escaped_device(lat)))
    kind_rank = {"phone": 0, "host": 1, "virtual": 2}
    return sorted(found, key=lambda t: (kind_rank[target_kind(t[2])], t[0]))


# --------------------------------------------------------------------------------------------------------
def build_release(run_dir: str | os.PathLike, release_root: str | os.PathLike = "release",
                  name: str | None = None) -> Path:
    """Build ``release_root/<name or run folder name>/`` from a finished run (module docstring).

    Raises InputError when ``run_dir`` holds no finished compress run (compression_report.json), when ``name``
    is not one folder name (a path, ``.`` or ``..``), or when ``release_root/<name>`` exists and is not
    a release this function wrote (no ``release.json``) or is another run's: a release replaces only an older
    release of the same run.
    """
    run = Path(run_dir)
    report = load_json(run / "compression_report.json")
    if not isinstance(report, dict):
        why = json_problem(run / "compression_report.json")
        raise InputError(f"{run / 'compression_report.json'}: {why}; expected the report of a finished `python -m "
                         "compress` run" if why else
                         f"{run}: no compression_report.json; expected a finished `python -m compress` run folder")
    folder = name or run.resolve().name
    if not is_folder_name(folder):
        raise InputError(f"--name {folder!r}: expected one folder name inside --out (no /, \\, . or ..)")
    dest = Path(release_root) / folder
    if dest.exists() and not (dest.is_dir() and (dest / "release.json").is_file()):
        raise InputError(f"{dest}: exists and is not a release folder (no release.json); a release replaces only "
                         "an older release: pick another --name or --out, or move that folder away")
    previous = (load_json(dest / "release.json") or {}).get("run_dir") if dest.exists() else None
    if previous and previous != str(run.resolve()):
        raise InputError(f"{dest}: holds the release of another run ({previous}); a release replaces only an older "
                         f"release of the same run ({run.resolve()}): pick another --name or --out, or move that "
                         "folder away")
    with atomic_dir(dest) as tmp:
        _fill(run, report, tmp, dest.name)
    return dest


def page_name(release_name: str) -> str:
    """File name of the release's self-contained HTML page: ``release-<name>.html``."""
    return f"release-{release_name}.html"


def load_original(run: Path) -> dict[str, Any]:
    """The run's original as the release shows it: ``manifest`` (its export manifest), ``record``
    (``original.json``: where its weights came from) and ``evaluation`` (a baseline run's ``evaluation.json``);
    each None when absent (:mod:`export.original`). ``stale_export``: why the manifest was left out (None when it
    is kept): an export made from other weights than the record's (its files would be labelled with them)."""
    folder = run / ORIGINAL_DIR
    original = {"manifest": load_json(folder / "export" / "manifest.json"),
                "record": load_json(folder / ORIGINAL_RECORD), "evaluation": load_json(folder / "evaluation.json"),
                "stale_export": None}
    manifest, record = original["manifest"], original["record"]
    made_from = ((manifest or {}).get("source") or {}).get("generator_pt_sha256") if isinstance(manifest, dict) \
        else None
    recorded = record.get("generator_pt_sha256") if isinstance(record, dict) else None
    if manifest is not None and recorded and made_from and made_from != recorded:
        # e.g. the original's weights were changed and its export then stopped or failed: those files are of the
        # earlier weights, and the record would label them with the new ones
        original["stale_export"] = (f"the original's export ({folder / 'export' / 'manifest.json'}, generator "
                                    f"{str(made_from)[:12]}) is not of the weights {ORIGINAL_RECORD} records "
                                    f"({recorded[:12]}): its figures are left out; rerun the export stage")
        original["manifest"] = None
    return original


def export_size(manifest: dict | None) -> str:
    """``256×256``: the image size a manifest's files take (or give, DCGAN), ``?`` when unknown."""
    hw = (manifest or {}).get("image_size_hw")
    if not hw:
        shape = ((manifest or {}).get("input") or {}).get("shape") or []
        hw = shape[1:3] if len(shape) == 4 else None
    return f"{hw[0]}×{hw[1]}" if hw else "?"


def _fill(run: Path, report: dict, out: Path, name: str) -> None:
    files: dict[str, str] = {}
    for src, dst in (("compression_report.md", "compression_report.md"),
                     ("compression_report.json", "compression_report.json"), ("config.json", "config.json"),
                     ("evaluation.json", "evaluation.json"), ("evaluation_grid.png", "evaluation_grid.png"),
                     ("export/manifest.json", "export_manifest.json"), ("pipeline.json", "pipeline.json"),
                     (f"{ORIGINAL_DIR}/export/manifest.json", "original/export_manifest.json"),
                     (f"{ORIGINAL_DIR}/{ORIGINAL_RECORD}", f"original/{ORIGINAL_RECORD}"),
                     (f"{ORIGINAL_DIR}/evaluation.json", "original/evaluation.json")):
        if _copy(run / src, out / dst):
            files[dst] = dst
    samples = []
    for p in _samples(run):
        _copy(p, out / "samples" / p.name)
        samples.append(f"samples/{p.name}")
    if _training_plot(run / METRICS, out / "training.png", report.get("target_macs_reduction")):
        files["training.png"] = "training.png"
    targets = []
    for tname, folder, lat in _bench_targets(run):
        for ext in ("md", "csv", "json", "png"):
            if _copy(folder / f"latency.{ext}", out / "latency" / tname / f"latency.{ext}") and ext == "png":
                files[f"latency/{tname}/latency.png"] = "chart"
        targets.append((tname, lat))
    config = load_json(run / "config.json") or {}
    manifest = load_json(run / "export" / "manifest.json")
    ev = load_json(run / "evaluation.json")
    record = read_record(run)[0] or {}
    original = load_original(run)
    if comparison_plot(current_targets(targets, manifest, original), (original["manifest"] or {}).get("model"),
                       (manifest or {}).get("model"),
                       out / "speedup.png", export_size(manifest)):
        files["speedup.png"] = "speedup.png"
    files[page_name(name)] = "page"  # written below, from the index itself
    text = index_markdown(run, report, config, manifest, ev, targets, record, samples, files, original, name)
    atomic_write_text(out / "index.md", text)
    atomic_write_text(out / page_name(name), markdown_page(text, out, f"Release: {name}"))
    atomic_write_json(out / "release.json", {
        "run_dir": str(run.resolve()), "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": sorted(files),
        "page": page_name(name), "samples": samples, "latency_targets": [t for t, _ in targets],
        "warnings": collect_warnings(report, config, manifest, ev, targets, record, original)
        + unreadable_warnings(run)})


def unreadable_warnings(run: Path) -> list[str]:
    """One warning per file of the run the release reads that exists but is no JSON object (corrupt, truncated,
    unreadable): the release treats it as missing, and says so instead of "not run"."""
    paths = [run / n for n in ("config.json", "evaluation.json", "export/manifest.json", RECORD,
                               f"{ORIGINAL_DIR}/export/manifest.json", f"{ORIGINAL_DIR}/{ORIGINAL_RECORD}",
                               f"{ORIGINAL_DIR}/evaluation.json")]
    paths += sorted(p for p in (run / "bench").glob("*/latency.json") if not p.parent.name.startswith(".")) \
        if (run / "bench").is_dir() else []
    return [f"{md_escape(p.relative_to(run))} is unreadable ({md_escape(why)}): treated as missing below; "
            "rerun the stage that writes it." for p in paths if (why := json_problem(p))]


# --------------------------------------------------------------------------------------------------------
def _exported_sha256(manifest: dict | None, original: dict | None) -> set[str]:
    """SHA-256 of every file the current exports list (the compressed generator's and the original's)."""
    return {e["sha256"] for m in (manifest, (original or {}).get("manifest")) if m
            for e in m.get("files", []) if isinstance(e, dict) and e.get("sha256")}


def current_targets(targets: list[tuple[str, dict]], manifest: dict | None,
                    original: dict | None) -> list[tuple[str, dict]]:
    """``targets`` with only the latency rows of files the current exports list (rows without a sha256 kept):
    the headline, summary and latency sections must not present an older file's figures as the export's (the
    Warnings name the rows left out)."""
    exported = _exported_sha256(manifest, original)
    if not exported:
        return targets
    return [(t, {**lat, "rows": [r for r in lat.get("rows", []) if not r.get("sha256") or r["sha256"] in exported]})
            for t, lat in targets]


def collect_warnings(report: dict, config: dict, manifest: dict | None, ev: dict | None,
                     targets: list[tuple[str, dict]], record: dict, original: dict | None = None) -> list[str]:
    """Everything a release manager must not miss, one line each. ``original`` is :func:`load_original`'s
    (None: not looked at)."""
    w: list[str] = []
    st = ((report.get("search") or {}).get("status") or {}).get("G") or {}
    if not report.get("target_reached"):
        w.append(f"MACs target NOT reached: search status `{st.get('status', '?')}` "
                 f"(achieved {report.get('achieved_macs_reduction', 0):.1%}, target "
                 f"{report.get('target_macs_reduction', 0):.0%} ± {report.get('tolerance', 0):.0%}).")
    if st.get("status") == "budget_exhausted":
        w.append("The search budget was exhausted before the masks reached the target.")
    if report.get("preset") == "small":
        w.append("Small preset (short budget, narrow generator, small images): a pipeline demonstration, not the "
                 "paper's quality; FID is not comparable with published figures.")
    if manifest is None:
        w.append("No export manifest: the model was not exported.")
    else:
        for g in manifest.get("gate_failures") or []:
            w.append(f"Export quality gate missed (accepted): {g}.")
        for e in manifest.get("files", []):
            gd = e.get("gpu_delegate") or {}
            if gd and not gd.get("gpu_ready", True):
                why = gd.get("reason") or gd.get("version_problems")
                w.append(f"{file_title(e)} is not GPU-delegate ready: {why}.")
    if original is not None:
        om, orec = original.get("manifest"), original.get("record") or {}
        if om is None:
            w.append("The original (unpruned) generator was not exported: no speed-up beside the MACs ratio "
                     "(export stage with --original-weights none, or not run).")
        elif not (orec.get("weights") or {}).get("latency_only"):
            w += [f"Original's export quality gate missed (accepted): {g}." for g in om.get("gate_failures") or []]
        elif om.get("gate_failures"):  # initialised weights: timed, not judged, but what was timed is said
            w.append("Original (initialised weights, latency only; its PSNR is not a quality figure), export gates "
                     "missed (accepted): " + "; ".join(om["gate_failures"]) + ".")
    if (original or {}).get("stale_export"):
        w.append(f"Original: {original['stale_export']}.")
    if ev is None:
        w.append("No evaluation.json: FID/KID not measured (evaluate stage not run or unavailable).")
    if not targets:
        w.append("No latency measurements (bench stage not run).")
    elif all(target_kind(lat) != "phone" for _, lat in targets):
        w.append("No phone was attached: latency figures are from the host CPU and the VIRTUAL device (host CPU "
                 "behind a simulated phone); they are NOT phone figures.")
    exported = _exported_sha256(manifest, original)
    original_label = ((original or {}).get("manifest") or {}).get("model")
    for tname, lat in targets:
        if original_label and lat.get("rows") and not any(r.get("model") == original_label for r in lat["rows"]):
            w.append(f"{tname}: the original ({md_escape(original_label)}) was exported but not timed (a bench run "
                     "with --original-weights none, ORIGINAL=none): no speed-up beside the MACs ratio for this "
                     "target; rerun the bench stage with the original.")
        stale = sorted({f"{r.get('model')} {r.get('dtype')}" for r in lat.get("rows", [])
                        if exported and r.get("sha256") and r["sha256"] not in exported})
        if stale:
            w.append(f"{tname}: latency rows of files that are not the current export ({md_escape(', '.join(stale))}"
                     "): the bench is older than the export; they are left out of the headline, summary and "
                     "latency sections; rerun the bench stage.")
        if lat.get("aborted"):
            w.append(f"Bench on {tname} aborted: {md_escape(lat['aborted'])}.")
        elif not lat.get("complete"):
            w.append(f"Bench on {tname} is incomplete: rerun the bench stage to finish it (an interrupted bench "
                     f"resumes; earlier complete tables, if any, wait in bench/.{tname}.prev until then).")
        for r in lat.get("rows", []):
            bad = [f for f in r.get("flags", []) if f not in ("virtual", "host")]
            if bad:
                w.append(f"{tname}: {r['model']} {r['dtype']} flagged {', '.join(bad)}"
                         + (f" ({md_escape(r['problem'])})" if r.get("problem") else "") + ".")
    for stage, res in (record.get("stages") or {}).items():
        if res.get("status") in ("failed", "unavailable"):
            w.append(f"Pipeline stage `{stage}` {res['status']}: {md_escape(res.get('detail', ''))}")
    return w


def _what(report: dict, config: dict) -> str:
    from compress.families import FAMILIES

    g = config.get("generator") or {}
    arch = FAMILIES[report["model"]].title if report.get("model") in FAMILIES else report.get("model", "?")
    gtext = ", ".join(f"{k} {v}" for k, v in g.items())
    shape = report.get("input_shape") or []
    size = f"{shape[-2]}×{shape[-1]}" if len(shape) == 4 else "?"
    ds = str(report.get("dataset"))
    ds = Path(ds).name if "/" in ds else ds
    return (f"{arch} ({gtext}) on **{ds}** ({config.get('direction', '')}), {size} input, "
            f"`{report.get('preset')}` preset")


def _weights_note(original: dict) -> str:
    """What the original is and where its weights came from, for the headline."""
    rec = original.get("record") or {}
    w = rec.get("weights") or {}
    g = {k: v for k, v in (rec.get("generator") or {}).items() if k not in ("channels", "in_channels", "out_channels")}
    what = f"the unpruned {rec.get('family', '?')} generator ({', '.join(f'{k} {v}' for k, v in g.items())})"
    int8 = next((e for e in (original.get("manifest") or {}).get("files", []) if e.get("dtype") == "int8"), None)
    mixed = f" Here the original's int8 file is `{int8['label']}`." if int8 and int8.get("label", "int8") != "int8" \
        else ""
    if w.get("latency_only"):
        return (f"Original: {what}, **initialised weights: latency only**. fp32/fp16 latency does not depend on "
                "the weight values, and int8 latency depends on them only through the graph: the int8 scales come "
                "from the activations of the calibration images, so the original's int8 quality (PSNR, FID) means "
                "nothing, and robust int8's float selection (convolutions kept in float, listed in each manifest) "
                "is decided from the outputs and can differ between the two generators." + mixed)
    return f"Original: {what}, {w.get('text', 'trained weights')}." + mixed


def _headline(report: dict, manifest: dict | None, targets: list[tuple[str, dict]], original: dict,
              files: dict[str, str]) -> list[str]:
    """The Table-3-style headline: chipset × dtype × original ms, compressed ms, speed-up (see
    :mod:`bench.pipeline.compare`), with the export size, the training size and the original's weights."""
    size = export_size(manifest)
    shape = report.get("input_shape") or []
    trained = f"{shape[-2]}×{shape[-1]}" if len(shape) == 4 else "?"
    om = original.get("manifest")
    L = [f"## Headline: original vs compressed at {size}", ""]
    if not targets:
        return L + ["No latency measured (bench stage not run).", ""]
    L += headline_markdown(targets, (om or {}).get("model"), (manifest or {}).get("model"), size)
    L += ["", f"Latency (median ms) at **{size}** input"
          + (f" (the generator was trained at {trained}; it is fully convolutional, so the same weights run at "
             f"{size})" if trained != size and trained != "?" and "1×1" not in trained else "")
          + ". Speed-up = original ÷ compressed latency on the same machine in the same dtype; MACs ratio = "
          f"original ÷ compressed MACs at {size}"
          + (f" ({macs_text(om, manifest)})" if om and manifest else "") + ". The machine column says what "
          "measured each figure: **phone** figures only come from a phone; **host** and **virtual** rows are this "
          "machine's CPU, never phone figures."]
    L += ["", _weights_note(original) if om else
          "No original was exported (`--original-weights none`): no speed-up, only the compressed latency."]
    if files.get("speedup.png"):
        L += ["", "![original vs compressed latency](speedup.png)"]
    return L + [""]


def _summary(report: dict, manifest: dict | None, ev: dict | None, targets: list[tuple[str, dict]],
             original: dict) -> list[str]:
    """The summary table: MACs (training size and exported size), params, latency of the first target, FID."""
    o, p = report.get("original", {}), report.get("pruned", {})
    st = ((report.get("search") or {}).get("status") or {}).get("G") or {}
    evs, oevs = evaluation_summary(ev), evaluation_summary(original.get("evaluation"))
    om = original.get("manifest")
    shape = report.get("input_shape") or []
    trained = f"{shape[-2]}×{shape[-1]}" if len(shape) == 4 else ""
    reached = "reached" if report.get("target_reached") else f"**NOT reached** ({st.get('status', '?')})"
    L = ["## Summary", "", "| | original | compressed | |", "|---|---|---|---|",
         f"| MACs{' at ' + trained if trained else ''} | {_macs(o.get('macs'))} | {_macs(p.get('macs'))} | "
         f"**{report.get('achieved_macs_reduction', 0):.1%}** removed; target "
         f"{report.get('target_macs_reduction', 0):.0%} ± {report.get('tolerance', 0):.0%}: {reached} |"]
    if manifest and om and export_size(manifest) != trained:
        L.append(f"| MACs at {export_size(manifest)} (exported) | {_macs(om.get('macs'))} | "
                 f"{_macs(manifest.get('macs'))} | {macs_text(om, manifest).split(', ')[-1]} |")
    L.append(f"| params | {o.get('params', 0) / 1e6:.3f} M | {p.get('params', 0) / 1e6:.3f} M | "
             f"{p.get('params', 0) / max(1, o.get('params', 1)):.3f}× |")
    if targets:
        _, lat = targets[0]
        for pr in pairs(lat, (om or {}).get("model"), (manifest or {}).get("model")):
            vs = "-" if pr.speedup is None else f"speed-up **{pr.speedup:.2f}×**" + (
                f" (MACs ratio {pr.macs_ratio:.2f}×)" if pr.macs_ratio is not None else "")
            L.append(f"| latency {dtype_cell(pr)} on {chipset(lat)} ({target_kind(lat)}), median | "
                     f"{_f((pr.original or {}).get('median_ms'))} ms | {_f((pr.compressed or {}).get('median_ms'))} ms "
                     f"| {vs} |")
    if evs:
        kid = (f"{evs['kid']:.4f}" + (f" ± {evs['kid_std']:.4f}" if evs.get("kid_std") is not None else "")
               if evs.get("kid") is not None else "-")
        extra = f"{evs['images']} generated images" if evs.get("images") else ""
        if evs.get("n_real") or evs.get("reference"):
            extra += f" vs {evs.get('n_real', '')} real ({evs.get('reference', '')})"
        ofid = (f"{_f(oevs.get('fid'))} ([baseline run's](original/evaluation.json), "
                f"{oevs.get('images', '?')} images)" if oevs.get("fid") is not None else "")
        L.append(f"| FID / KID | {ofid} | {_f(evs.get('fid'))} / {kid} | {extra} "
                 "([evaluation.json](evaluation.json)) |")
    else:
        L.append("| FID / KID | | not measured | |")
    b = report.get("budget") or {}
    secs = report.get("seconds") or {}
    L += [f"| budget | | | search {b.get('search_steps_used', '?')} steps ({secs.get('search', 0):.0f} s), "
          f"converging {b.get('converge_steps_done', '?')} steps ({secs.get('converge', 0):.0f} s), batch "
          f"{b.get('batch_size', '?')} |", ""]
    L += [f"MACs convention: {report.get('macs_convention', '-')}"]
    if evs.get("protocol"):
        L += ["", f"FID protocol: {evs['protocol']}. FID is biased upwards for small image counts: compare "
              "figures only at the same counts."]
    return L + [""]


def _exported(manifest: dict | None, original: dict) -> list[str]:
    """The exported files of both generators: size, input, PSNR vs PyTorch, gate, GPU readiness."""
    om = original.get("manifest")
    if not manifest and not om:
        return []
    L = ["## Exported files", "",
         "| generator | file | dtype | input | size MB | PSNR vs PyTorch dB | gate dB | GPU-delegate ready |",
         "|---|---|---|---|---|---|---|---|"]
    for who, man in (("original", om), ("compressed", manifest)):
        for e in sorted((man or {}).get("files", []), key=lambda e: DTYPE_ORDER.get(e.get("dtype"), 9)):
            gd = e.get("gpu_delegate") or {}
            ready = "-" if not gd else ("yes" if gd.get("gpu_ready") else "**no**")
            L.append(f"| {who} | {e['path']} | {e.get('label') or e.get('dtype')} | {export_size(man)} | "
                     f"{e.get('size_bytes', 0) / 1e6:.3f} | {_f(e.get('psnr_db'))} | {_f(e.get('gate_db'), 0)} | "
                     f"{ready} |")
    if manifest:
        gates = "passed" if manifest.get("gates_passed") else "**missed** (accepted, see warnings)"
        versions = ", ".join(f"{k} {v}" for k, v in (manifest.get("converter_versions") or {}).items() if v)
        L += ["", f"Gates (compressed): {gates}. Converters: {versions}. "
              "Details: [export_manifest.json](export_manifest.json)"
              + (", [original/export_manifest.json](original/export_manifest.json)" if om else "") + "."]
    if om and ((original.get("record") or {}).get("weights") or {}).get("latency_only"):
        L += ["", "The original's PSNR compares its files with its own PyTorch outputs; with initialised weights "
              "it says nothing about a trained generator."]
    return L + [""]


def _latency(targets: list[tuple[str, dict]], manifest: dict | None, original: dict,
             files: dict[str, str]) -> list[str]:
    """One table per bench target: original and compressed per dtype with the speed-up beside the MACs ratio."""
    om = original.get("manifest")
    L = ["## Latency", ""]
    if not targets:
        return L + ["Not measured.", ""]
    for tname, lat in targets:
        kind = target_kind(lat)
        label = lat.get("device_label", tname)
        note = {"phone": "**phone figures**",
                "host": "**host CPU figures** (LiteRT, no GPU delegate) - not phone figures",
                "virtual": "**VIRTUAL device** (host CPU behind a simulated phone, simulated delegate lines) - "
                           "not phone figures"}[kind]
        c = lat.get("config") or {}
        L += [f"### {label}", "", f"{note}, at {export_size(manifest)} input. Protocol: {c.get('warmup')} warm-up + "
              f"{c.get('runs')} timed runs × {c.get('repeats')} repeats, {c.get('threads')} threads"
              + (f", GPU delegate ({c.get('gpu_backend')})" if c.get("use_gpu") and kind != "host" else ", CPU")
              + f". Full table: [latency/{tname}/latency.md](latency/{tname}/latency.md) "
              f"([csv](latency/{tname}/latency.csv), [json](latency/{tname}/latency.json)).", ""]
        L += target_markdown(lat, (om or {}).get("model"), (manifest or {}).get("model"))
        if lat.get("aborted"):
            L.append(f"\n**Aborted:** {lat['aborted']}")
        if files.get(f"latency/{tname}/latency.png"):
            L += ["", f"![latency on {tname}](latency/{tname}/latency.png)"]
        L.append("")
    return L


def index_markdown(run: Path, report: dict, config: dict, manifest: dict | None, ev: dict | None,
                   targets: list[tuple[str, dict]], record: dict, samples: list[str],
                   files: dict[str, str], original: dict | None = None, name: str | None = None) -> str:
    """The release index page (module docstring); ``original`` is :func:`load_original`'s, ``name`` the release's
    (``--name``; default the run folder's name)."""
    original = original or {"manifest": None, "record": None, "evaluation": None}
    evs = evaluation_summary(ev)
    L = [f"# Release: {name or run.resolve().name}", "",
         f"Compressed {_what(report, config)} with CoroNetGAN to remove "
         f"**{report.get('target_macs_reduction', 0):.0%}** of the generator's MACs. Built "
         f"{time.strftime('%Y-%m-%d %H:%M %Z')} from `{run}`.", ""]
    current = current_targets(targets, manifest, original)
    L += _headline(report, manifest, current, original, files)
    warnings = collect_warnings(report, config, manifest, ev, targets, record, original) + unreadable_warnings(run)
    L += ["## Warnings", ""] + ([f"- ⚠ {x}" for x in warnings] or ["- none"]) + [""]
    L += _summary(report, manifest, ev, current, original)
    L += _exported(manifest, original)
    L += _latency(current, manifest, original, files)

    # --- delegate coverage
    L += ["## GPU-delegate coverage", "", "Of the compressed generator's files.", "",
          "| file | static check (export) | measured delegate (bench) |", "|---|---|---|"]
    measured: dict[str, list[str]] = {}
    label = (manifest or {}).get("model")
    for tname, lat in targets:
        for r in lat.get("rows", []):
            if target_kind(lat) != "host" and (label is None or r["model"] == label):
                measured.setdefault(r["dtype"], []).append(f"{tname}: {r.get('delegate')}")
    for e in sorted((manifest or {}).get("files", []), key=lambda e: DTYPE_ORDER.get(e.get("dtype"), 9)):
        if e.get("dtype") == "onnx":
            continue
        gd = e.get("gpu_delegate") or {}
        static = "-" if not gd else ("ready" if gd.get("gpu_ready") else f"NOT ready ({gd.get('reason', '')})")
        if gd.get("transpose_conv_versions"):
            static += f"; TRANSPOSE_CONV v{','.join(map(str, gd['transpose_conv_versions']))}"
        L.append(f"| {file_title(e)} | {static} | {'; '.join(measured.get(e.get('dtype'), [])) or '-'} |")
    L += ["", "Measured coverage on the virtual device is simulated (its runner reports delegate lines from the "
              "op table); only a phone row shows real coverage.", ""]

    # --- images
    L += ["## Images", ""]
    if files.get("evaluation_grid.png"):
        L += ["Evaluation grid (inputs / outputs of the compressed generator):", "",
              "![evaluation grid](evaluation_grid.png)", ""]
    for s in samples:
        L += [f"Training sample `{Path(s).name}` (input / output rows):", "", f"![{Path(s).stem}]({s})", ""]
    if files.get("training.png"):
        L += ["Training curves:", "", "![training](training.png)", ""]

    # --- machines
    L += ["## Machines behind each figure", "", "| figures | machine |", "|---|---|",
          f"| compression (search, converging), params/MACs | {report.get('machine', '-')} |"]
    pipeline_machine = machine_text(record["machine"]) if record.get("machine") else None
    if evs:
        L.append(f"| FID / KID | {evs.get('machine') or pipeline_machine or '-'} |")
    if manifest:
        L.append(f"| export, parity PSNR | {pipeline_machine or '-'} |")
    for tname, lat in targets:
        d = lat.get("device") or {}
        text = lat.get("device_label", tname)  # the device's text fields are escaped on reading (_escaped_device)
        if d.get("soc"):
            text += f"; SoC {d['soc']}"
        if d.get("runtime"):
            text += f"; {d['runtime']}"
        if d.get("gpu_renderer"):
            text += f"; GPU {d['gpu_renderer']}"
        L.append(f"| latency ({tname}) | {text} |")
    L.append("")

    # --- stages
    stages, ran = record.get("stages") or {}, record.get("last_ran") or {}
    if stages:
        L += ["## Pipeline stages", "",
              "Last run of each stage, and the last run that did the work (a skipped stage reuses its output).", "",
              "| stage | last run | wall s | last real run: wall s | finished | load avg (1 min) before → after |",
              "|---|---|---|---|---|---|"]
        for sname in STAGES:
            r, w = stages.get(sname), ran.get(sname)
            if not r:
                continue
            ref = w or r
            la = (f"{ref['load_before'][0]:.2f} → {ref['load_after'][0]:.2f}"
                  if ref.get("load_before") and ref.get("load_after") else "-")
            L.append(f"| {sname} | {r.get('status')} | {_f(r.get('wall_s'), 1)} | "
                     f"{_f(w.get('wall_s'), 1) if w else '-'} | {(w or {}).get('finished', '-')} | {la} |")
        fails = [f"- `{n}`: {md_escape(stages[n].get('detail', ''))}" for n in STAGES
                 if n in stages and stages[n].get("status") in ("failed", "unavailable")]
        L += [""] + fails + ([""] if fails else [])
        if pipeline_machine:
            L += [f"Pipeline machine: {pipeline_machine}.", ""]

    # --- files
    L += ["## Files", ""]
    desc = {"compression_report.md": "compression report (channels kept per layer)",
            "compression_report.json": "compression report, machine-readable", "config.json": "compress config",
            "evaluation.json": "FID/KID and evaluation settings", "evaluation_grid.png": "evaluation images",
            "export_manifest.json": "export manifest (sha256, PSNR, gates, GPU check)",
            "pipeline.json": "pipeline record (stage status, wall times)", "training.png": "training curves",
            "speedup.png": "original vs compressed latency per dtype and target",
            "original/export_manifest.json": "the original's export manifest",
            f"original/{ORIGINAL_RECORD}": "what the original is and where its weights came from",
            "original/evaluation.json": "the original's FID/KID (its baseline run's evaluation)"}

    page = "this page as one HTML file with the images inline (to mail or attach)"
    L += [f"- [{f}]({f}): {page if files[f] == 'page' else desc.get(f, '')}"
          for f in sorted(files) if not f.startswith("latency/")]
    L += [f"- [latency/{t}/](latency/{t}/latency.md): latency tables and chart ({target_kind(lat)})"
          for t, lat in targets]
    L += [f"- [{s}]({s})" for s in samples]
    L.append("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.pipeline.release RUN_DIR``: build the release; bad input is printed, exit 2."""
    ap = argparse.ArgumentParser(prog="python -m bench.pipeline.release", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="finished run folder (compression_report.json; export/, bench/ when present)")
    ap.add_argument("--out", default="release", help="release root folder [release]")
    ap.add_argument("--name", help="release folder name [the run folder's name]")
    a = ap.parse_args(argv)
    if Path(a.out).exists() and not Path(a.out).is_dir():
        raise InputError(f"--out {a.out}: a file; expected the release root folder (created when missing)")
    dest = build_release(a.run_dir, a.out, a.name)
    print(f"wrote {dest / 'index.md'}")
    return 0


if __name__ == "__main__":
    from compress.cli_errors import run_cli

    sys.exit(run_cli(main))
