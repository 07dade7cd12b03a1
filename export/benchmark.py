"""Export benchmark for docs/export.md: family x model x dtype, measured on the exported files themselves.

For each family it takes an unpruned and a 75%-pruned generator: with ``--pair FAMILY:UNPRUNED_RUN:PRUNED_RUN``
two finished ``python -m compress`` run folders (e.g. a ``--baseline unpruned`` run and the CoroNetGAN 75% run);
without it, quick stand-ins (:mod:`export.tiny`: a small generator trained briefly at full width and at width
``sqrt(0.25)``, every prunable channel count halved, MACs ~ 1/4; *not* compress runs).

Each generator is exported by ``python -m export RUN --dtype all --force --accept-gate-failure`` run as a
subprocess with ``PYTHONPATH`` set to a code checkout: this one (label ``after``) and, with ``--before CODE``,
another checkout (label ``before``, e.g. ``git worktree add /tmp/before <commit>``), so both rows come from the
same command and the same measurement. The files are then measured here, whatever code exported them:

* PSNR against the PyTorch fp32 generator (:mod:`export.parity`), pooled and worst image, on the run's held-out
  inputs and on the unseen photos of :mod:`export.photos` (LiteRT; the photos in tflite-runtime as well);
* file size, and the size against the fp32 file of the same export;
* what the file is made of (:mod:`quantize.composition`): label (``int8`` or ``int8 (mixed: N of M convolutions
  float)``), share of weight bytes and of MACs in int8, hybrid ops;
* ops computing in float (int8 files; QUANTIZE/DEQUANTIZE not counted) against all ops of the file;
* host latency in LiteRT (``ai_edge_litert``) and in tflite-runtime 2.14: interpreter with ``--threads`` threads,
  5 untimed warm-up runs, then the median of ``--runs`` (>= 20) timed ``invoke()`` calls on a zero input; a runtime that
  cannot load the file gets its error instead;
* GPU-delegate readiness (:mod:`export.gpu_check`) and, with ``--fid N``, the FID change of int8 from the manifest.

A benchmark stopped part-way (Ctrl-C, a crash) keeps its finished cells in ``OUT/benchmark.partial.json``; the
same command again measures only the rest (``--restart``: all of them).

Usage: ``python -m export.benchmark --out build/int8-bench [--pair FAMILY:UNPRUNED:PRUNED ...] [--before CODE]
[--runs 30] [--md table.md] [--restart]``
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from compress.data.fetch import mirror_root
from compress.errors import first_line
from compress.families import FAMILIES
from compress.io import atomic_write_text
DTYPE_FILES = {"fp32": "generator_fp32.tflite", "fp16": "generator_fp16.tflite", "int8": "generator_int8.tflite"}
REPO = Path(__file__).resolve().parents[1]


def host_latency_ms(path: str | Path, threads: int = 2, warmup: int = 5, runs: int = 30,
                    runtime: str = "litert") -> dict:
    """Median/min/max latency (ms) of ``invoke()`` on a zero input in ``runtime`` (see
    :data:`quantize.litert.RUNTIMES`), after ``warmup`` untimed runs; ``{"error": ...}`` when the runtime cannot
    load or run the file."""
    from quantize.litert import make_interpreter

    try:
        it = make_interpreter(path, threads, runtime)
        inp = it.get_input_details()[0]
        it.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
        for _ in range(warmup):
            it.invoke()
    except Exception as exc:  # the runtimes raise RuntimeError/ValueError: "does not run" is the figure
        return {"error": f"{type(exc).__name__}: {first_line(exc)}", "runtime": runtime}
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "runs": runs,
            "warmup": warmup, "threads": threads, "runtime": runtime}


def parse_pair(text: str) -> tuple[str, Path, Path]:
    """``FAMILY:UNPRUNED_RUN:PRUNED_RUN`` -> (family, unpruned run folder, pruned run folder).

    Raises:
        InputError: wrong form, unknown family, or a folder without ``generator.pt`` (named).
    """
    from compress.errors import InputError

    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in FAMILIES:
        raise InputError(f"--pair {text!r}: expected FAMILY:UNPRUNED_RUN:PRUNED_RUN with FAMILY one of "
                         f"{', '.join(FAMILIES)}")
    runs = (Path(parts[1]), Path(parts[2]))
    for r in runs:
        if not (r / "generator.pt").is_file():
            raise InputError(f"--pair {text!r}: {r}/generator.pt is missing; expected a finished compress run")
    return parts[0], runs[0], runs[1]


def export_with(code: Path, run: Path, out: Path, fid_count: int = 0) -> dict:
    """``python -m export RUN --dtype all --force --accept-gate-failure --out OUT`` with ``PYTHONPATH=code`` (run
    from ``code``); returns the manifest. Raises RuntimeError with the tail of the output when it fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(code)] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", "export", str(run.resolve()), "--dtype", "all", "--force", "--accept-gate-failure",
           "--out", str(out.resolve())] + (["--fid", str(fid_count)] if fid_count else [])
    proc = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (code {code}) exited {proc.returncode}:\n"
                           f"{(proc.stdout + proc.stderr)[-2000:]}")
    return json.loads((out / "manifest.json").read_text())


def measure_files(out: Path, run: Path, runs: int, threads: int = 2) -> list[dict]:
    """Figures of every .tflite in ``out`` exported from ``run`` (module docstring), one dict per dtype."""
    import torch

    from compress.artifacts import load_generator
    from export.gpu_check import gpu_delegate_check
    from export.inputs import resolve_input_sets
    from export.parity import file_figures
    from export.photos import unseen_inputs
    from quantize.composition import describe, int8_label

    generator, arch = load_generator(run)
    shape = [int(s) for s in arch["input_shape"]]
    sets = resolve_input_sets(arch, heldout_count=8, need_calibration=False)
    unseen = unseen_inputs(arch["family"], (shape[2], shape[3]))
    with torch.no_grad():
        reference = generator(torch.from_numpy(sets.heldout)).numpy()
        unseen_ref = generator(torch.from_numpy(unseen.inputs)).numpy() if unseen is not None else None
    fp32_size = (out / DTYPE_FILES["fp32"]).stat().st_size
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
    # the names an export moved out of its compacted files (export/compact.py); None: read them from the file
    saved_names = {e.get("path"): e.get("tensor_names") for e in manifest.get("files", [])}
    rows = []
    for dtype, name in DTYPE_FILES.items():
        path = out / name
        if not path.is_file():
            continue
        comp = describe(path, saved_names.get(name))
        figures = file_figures(path, sets.heldout, reference, unseen, unseen_ref, threads)
        rows.append({"dtype": dtype, "label": int8_label(comp) if dtype == "int8" else dtype,
                     "size_bytes": path.stat().st_size, "size_ratio_to_fp32": path.stat().st_size / fp32_size,
                     "int8_share": comp["int8_share"] if dtype == "int8" else None,
                     "hybrid_ops": comp["hybrid_ops"], "float_ops": comp["float_ops"] if dtype == "int8" else None,
                     "op_count": comp["op_count"], "conversions": comp["conversions"],
                     "heldout": {k: figures[k] for k in ("psnr_db", "min_image_psnr_db", "max_abs_diff")},
                     "unseen": figures.get("unseen"),
                     "unseen_tflite_runtime": (figures["runtimes"].get("tflite-runtime") or {}).get("unseen"),
                     "latency": {rt: host_latency_ms(path, threads, runs=runs, runtime=rt)
                                 for rt in ("litert", "tflite-runtime")},
                     "gpu_ready": gpu_delegate_check(path)["gpu_ready"]})
    return rows


def _commit(code: Path) -> str | None:
    """The checkout's commit with ``+dirty`` when it has uncommitted changes to tracked files; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(code), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _load_partial(path: Path, settings: dict) -> dict[str, list[dict]]:
    """The rows per finished cell of a stopped benchmark with the same settings (else none, said in the log)."""
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
        if saved.get("settings") == settings:
            return {str(k): list(v) for k, v in dict(saved["cells"]).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logging.warning("%s is unreadable (%s): measuring every cell again", path, exc)
        return {}
    logging.warning("%s holds rows of other settings or code (%s): measuring every cell again", path,
                    saved.get("settings"))
    return {}


def run_benchmark(out: Path, data_root: Path, steps: int, runs: int, families: Sequence[str],
                  pairs: dict[str, tuple[Path, Path]] | None = None, before: Path | None = None,
                  fid_count: int = 0, threads: int = 2, resume: bool = True) -> list[dict]:
    """Rows of the table (one per family x model x code x dtype); see the module docstring.

    ``pairs``: family -> (unpruned run, pruned run) folders used instead of the trained stand-ins (only read; the
    exports go to ``out/<family>_<model>/<code>/``). ``before``: a second code checkout to export with.

    Each finished cell (family x model x code: one export, its files measured) is kept in
    ``out/benchmark.partial.json`` with the settings and the checkouts' commits; with ``resume`` a benchmark
    stopped part-way and run again with the same settings and code measures only the cells not yet done (the
    stand-in generators trained earlier are kept in any case). The file is removed when the caller has written
    the result (:func:`main`)."""
    from export.tiny import PRUNED_75_WIDTH, train_tiny_run

    pairs = pairs or {}
    codes = ([("before", Path(before))] if before else []) + [("after", REPO)]
    settings = {"steps": steps, "runs": runs, "threads": threads, "fid": fid_count,
                "pairs": {f: [str(a.resolve()), str(b.resolve())] for f, (a, b) in sorted(pairs.items())},
                "code": {label: [str(code.resolve()), _commit(code)] for label, code in codes}}
    partial = out / "benchmark.partial.json"
    cells = _load_partial(partial, settings) if resume else {}
    rows = []
    for fam in families:
        for i, (label, width) in enumerate((("unpruned", 1.0), ("pruned75", PRUNED_75_WIDTH))):
            work = out / f"{fam}_{label}"
            if fam in pairs:
                run, source = pairs[fam][i], str(pairs[fam][i])
            else:
                run, source = work / "run", f"stand-in: export.tiny width {width:.2f}, {steps} steps"
            for code_label, code in codes:
                cell = f"{fam}/{label}/{code_label}"
                if cell in cells:
                    logging.info("%s: %d rows kept from the stopped benchmark (%s)", cell, len(cells[cell]), partial)
                    rows.extend(cells[cell])
                    continue
                if fam not in pairs and not (run / "generator.pt").is_file():
                    t0 = time.perf_counter()
                    train_tiny_run(fam, run, data_root, steps=steps, width=width)
                    logging.info("trained %s %s in %.0f s", fam, label, time.perf_counter() - t0)
                arch = json.loads((run / "architecture.json").read_text())
                t0 = time.perf_counter()
                manifest = export_with(code, run, work / code_label, fid_count)
                export_s = time.perf_counter() - t0
                logging.info("exported %s %s with the %s code in %.0f s", fam, label, code_label, export_s)
                fids = {e["dtype"]: e.get("fid") for e in manifest["files"]}
                cells[cell] = [{"family": fam, "model": label, "code": code_label, "source": source,
                                "export_s": export_s, "macs": manifest["macs"], "params": manifest["params"],
                                "input_shape": manifest["input"]["shape"], "generator": arch.get("generator"),
                                "fid": fids.get(r["dtype"]), **r}
                               for r in measure_files(work / code_label, run, runs, threads)]
                rows.extend(cells[cell])
                atomic_write_text(partial, json.dumps({"settings": settings, "cells": cells}, indent=1, default=str))
    return rows


def _db(fig: dict | None, key: str) -> str:
    if not fig:
        return "-"
    v = fig[key]
    return v if isinstance(v, str) else f"{v:.1f}"


def _latency(lat: dict) -> str:
    return "fails" if "error" in lat else f"{lat['median_ms']:.2f}"


def _share(share: dict | None) -> str:
    if not share:
        return "-"
    return " / ".join("-" if share[k] is None else f"{100 * share[k]:.0f}%" for k in ("weight_bytes", "macs"))


def _float_ops(r: dict) -> str:
    if r["float_ops"] is None:
        return "-"
    return f"{sum(r['float_ops'].values())} of {r['op_count']}"


def to_markdown(rows: list[dict]) -> str:
    """The benchmark table (one row per family x model x code x dtype), the runtime errors and the sources."""
    lines = ["| family | model | code | file | size bytes | x fp32 | int8 share (weights / MACs) | ops in float | "
             "held-out PSNR dB (pooled / worst) | unseen PSNR dB (pooled / worst) | unseen, tflite-runtime (pooled / "
             "worst) | "
             "LiteRT ms | tflite-runtime ms | GPU ready |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    errors = {}
    for r in rows:
        lat = r["latency"]
        for rt, v in lat.items():
            if "error" in v:
                errors.setdefault(v["error"], []).append(f"{r['family']} {r['model']} {r['code']} {r['label']}")
        lines.append(f"| {r['family']} | {r['model']} | {r['code']} | {r['label']} | {r['size_bytes']:,} | "
                     f"{r['size_ratio_to_fp32']:.4f} | {_share(r['int8_share'])} | {_float_ops(r)} | "
                     f"{_db(r['heldout'], 'psnr_db')} / {_db(r['heldout'], 'min_image_psnr_db')} | "
                     f"{_db(r['unseen'], 'psnr_db')} / {_db(r['unseen'], 'min_image_psnr_db')} | "
                     f"{_db(r.get('unseen_tflite_runtime'), 'psnr_db')} / "
                     f"{_db(r.get('unseen_tflite_runtime'), 'min_image_psnr_db')} | {_latency(lat['litert'])} | "
                     f"{_latency(lat['tflite-runtime'])} | "
                     f"{'yes' if r['gpu_ready'] else 'no'} |")
    lines.append("")
    for err, where in errors.items():
        lines.append(f"- tflite-runtime/LiteRT refused ({', '.join(where)}): `{err}`")
    sources = {(r["family"], r["model"]): (r["source"], r["input_shape"], r["params"], r["macs"], r["generator"])
               for r in rows}
    for (fam, model), (src, shape, params, macs, gen) in sources.items():
        lines.append(f"- {fam} {model}: `{src}`, input {shape} (NHWC), {params / 1e6:.3f} M params, "
                     f"{macs / 1e6:.2f} M MACs, generator {json.dumps(gen, sort_keys=True)}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m export.benchmark``: export and measure every family x generator x dtype (module docstring),
    write ``OUT/benchmark.json`` and the Markdown table (``--md``). Returns the exit status: 0, or 2 for bad
    input (a flag, a run folder of ``--pair``, the ``--before`` checkout), said in one line."""
    p = argparse.ArgumentParser(prog="python -m export.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/export-bench", help="working folder (stand-in runs and exports)")
    p.add_argument("--data", default=None,
                   help="real-data mirror (default $CORONETGAN_DATA_MIRROR or ../shared/data)")
    p.add_argument("--steps", type=int, default=150, help="training steps of each stand-in generator")
    p.add_argument("--runs", type=int, default=30, help="timed runs per file and runtime (>= 20)")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads for the latency (default 2)")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--md", default=None, help="also write the markdown table to this file")
    p.add_argument("--fid", type=int, default=0, metavar="N",
                   help="also the FID change of int8 on N inputs (python -m export --fid; slow on a CPU)")
    p.add_argument("--pair", action="append", default=[], metavar="FAMILY:UNPRUNED_RUN:PRUNED_RUN",
                   help="use these two compress run folders for FAMILY instead of the stand-ins (repeatable)")
    p.add_argument("--before", default=None, metavar="CODE",
                   help="also export with the code in this checkout (rows labelled 'before')")
    p.add_argument("--restart", action="store_true",
                   help="measure every cell again, ignoring the rows a stopped benchmark kept in "
                        "OUT/benchmark.partial.json (by default a rerun with the same settings goes on from them)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from compress.errors import InputError

    data = mirror_root(args.data)
    out = Path(args.out)
    try:
        pairs = {fam: (a, b) for fam, a, b in map(parse_pair, args.pair)}
        before = Path(args.before) if args.before else None
        if before is not None and not (before / "export" / "__main__.py").is_file():
            raise InputError(f"--before {before}: no export/__main__.py there; expected a checkout of this project")
        families = [f for f in args.families.split(",") if f]
        bad = [f for f in families if f not in FAMILIES]
        if bad or not families:
            raise InputError(f"--families {args.families!r}: expected comma-separated names from "
                             f"{', '.join(FAMILIES)}" + (f" ({bad[0]!r} is none of them)" if bad else ""))
        for flag, value, least in (("--steps", args.steps, 1), ("--runs", args.runs, 20),
                                   ("--threads", args.threads, 1), ("--fid", args.fid, 0)):
            if value < least:
                raise InputError(f"{flag} {value}: expected an integer >= {least}")
        if args.fid == 1:
            raise InputError("--fid 1: expected 0 (off) or a number of inputs >= 2")
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out}: a file; expected a folder (created when missing)")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    rows = run_benchmark(out, data, args.steps, args.runs, families, pairs, before, args.fid, args.threads,
                         resume=not args.restart)
    atomic_write_text(out / "benchmark.json", json.dumps(rows, indent=2, default=str))
    md = to_markdown(rows)
    if args.md:
        atomic_write_text(args.md, md)
    (out / "benchmark.partial.json").unlink(missing_ok=True)
    print(md)
    return 0


if __name__ == "__main__":
    from compress.cli_errors import run_cli

    raise SystemExit(run_cli(main))
