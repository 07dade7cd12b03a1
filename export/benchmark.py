"""Export benchmark table for docs/export.md: family x dtype, unpruned vs 75%-pruned.

For each family it takes an unpruned and a 75%-pruned generator: with ``--pair FAMILY:UNPRUNED_RUN:PRUNED_RUN``
two finished ``python -m compress`` run folders (e.g. the ``--baseline unpruned`` run and the CoroNetGAN 75% run
of ``compress/evaluate/experiments.sh``); without it, a quick stand-in: a small generator trained briefly
(:mod:`export.tiny`) at full width and at width ``sqrt(0.25)`` (every prunable channel count halved, so
MACs ~ 1/4, *not* a compress run). It exports all three dtypes with :func:`export.export_run` (default
options: robust int8, int8 I/O, 100 calibration images) and, for int8, also the naive variant (every op
int8). It reports per file: conversion time (s), size (bytes), PSNR (dB) and max abs diff against PyTorch fp32
on the held-out inputs, and host LiteRT latency (ms): ``ai_edge_litert`` interpreter, 2 threads, ``--warmup``
runs then the median of ``--runs`` (>= 20) timed ``invoke()`` calls. The latency ratio pruned/unpruned is
printed beside the MACs ratio.

Usage: ``python -m export.benchmark --out build/export-bench [--pair dcgan:runs/eval/dcgan-unpruned:runs/eval/dcgan-coronet-75]
[--steps 150] [--runs 30] [--md docs/table.md]``
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from compress.families import FAMILIES


def host_latency_ms(path: str | Path, threads: int = 2, warmup: int = 5, runs: int = 30) -> dict:
    """Median/min/max latency (ms) of ``invoke()`` on a zero input, after ``warmup`` untimed runs."""
    from quantize.litert import make_interpreter

    it = make_interpreter(path, threads)
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    for _ in range(warmup):
        it.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "runs": runs,
            "warmup": warmup, "threads": threads}


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


def run_benchmark(out: Path, data_root: Path, steps: int, runs: int, families: Sequence[str],
                  pairs: dict[str, tuple[Path, Path]] | None = None, fid_count: int = 0) -> list[dict]:
    """Rows of the table (one per family x model x dtype, naive int8 included); see the module docstring.

    ``pairs``: family -> (unpruned run, pruned run) folders used instead of the trained stand-ins; their
    exports go to ``out/<family>_<model>/`` (the run folders are only read). ``fid_count`` > 0 adds the FID
    change of int8 (``ExportOptions.fid_count``) to the robust int8 rows."""
    from export import ExportOptions, export_run
    from export.tiny import PRUNED_75_WIDTH, train_tiny_run

    pairs = pairs or {}
    rows = []
    for fam in families:
        for i, (label, width) in enumerate((("unpruned", 1.0), ("pruned75", PRUNED_75_WIDTH))):
            work = out / f"{fam}_{label}"
            if fam in pairs:
                run, source = pairs[fam][i], str(pairs[fam][i])
            else:
                run, source = work, f"stand-in: export.tiny width {width:.2f}, {steps} steps"
                if not (run / "generator.pt").is_file():
                    t0 = time.perf_counter()
                    train_tiny_run(fam, run, data_root, steps=steps, width=width)
                    logging.info("trained %s %s in %.0f s", fam, label, time.perf_counter() - t0)
            arch = json.loads((run / "architecture.json").read_text())
            # a gate miss is a figure of the table (the PSNR column), not a reason to stop the benchmark
            robust = ExportOptions(out_dir=work / "export", accept_gate_failure=True, fid_count=fid_count)
            naive = ExportOptions(dtypes=("int8",), out_dir=work / "export_naive", int8_mode="naive",
                                  accept_gate_failure=True)
            manifests = {"robust": export_run(run, robust), "naive": export_run(run, naive)}
            for variant, man in manifests.items():
                outdir = work / ("export" if variant == "robust" else "export_naive")
                for e in man["files"]:
                    if e["dtype"] == "onnx" or (variant == "naive" and e["dtype"] != "int8"):
                        continue
                    lat = host_latency_ms(outdir / e["path"], runs=runs)
                    rows.append({"family": fam, "model": label, "source": source,
                                 "dtype": e["dtype"] + (" naive" if variant == "naive" else ""),
                                 "conversion_s": e["conversion_s"], "size_bytes": e["size_bytes"],
                                 "psnr_db": e["psnr_db"], "max_abs_diff": e["max_abs_diff"],
                                 "gpu_ready": e["gpu_delegate"]["gpu_ready"], "latency": lat,
                                 "macs": man["macs"], "params": man["params"],
                                 "input_shape": man["input"]["shape"],
                                 "generator": arch.get("generator"), "fid": e.get("fid")})
    return rows


def _fid_cell(fid: dict | None) -> str:
    if not fid or "fid_delta" not in fid:
        return ""
    return f"{fid['fid_fp32']:.1f} -> {fid['fid_int8']:.1f} ({fid['fid_delta']:+.1f}; N={fid['n_fake']})"


def to_markdown(rows: list[dict]) -> str:
    base = {(r["family"], r["dtype"]): r for r in rows if r["model"] == "unpruned"}
    lines = ["| family | model | dtype | MACs | conv. s | size bytes | PSNR dB | max abs diff | GPU ready | "
             "latency ms (median) | latency ratio | MACs ratio | FID fp32 -> int8 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = base.get((r["family"], r["dtype"]))
        lat_ratio = r["latency"]["median_ms"] / b["latency"]["median_ms"] if b else math.nan
        macs_ratio = r["macs"] / b["macs"] if b else math.nan
        psnr = r["psnr_db"] if isinstance(r["psnr_db"], str) else f"{r['psnr_db']:.1f}"
        lines.append(f"| {r['family']} | {r['model']} | {r['dtype']} | {r['macs'] / 1e6:.2f} M | "
                     f"{r['conversion_s']:.1f} | {r['size_bytes']:,} | {psnr} | {r['max_abs_diff']:.2g} | "
                     f"{'yes' if r['gpu_ready'] else 'no'} | {r['latency']['median_ms']:.3f} | "
                     f"{lat_ratio:.2f} | {macs_ratio:.2f} | {_fid_cell(r.get('fid'))} |")
    sources = {(r["family"], r["model"]): (r.get("source", ""), r["input_shape"], r.get("generator")) for r in rows}
    lines.append("")
    for (fam, model), (src, shape, gen) in sources.items():
        lines.append(f"- {fam} {model}: `{src}`, input {shape} (NHWC), generator {json.dumps(gen, sort_keys=True)}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/export-bench", help="working folder (runs and exports)")
    p.add_argument("--data", default=None, help="real-data mirror (default $CORONETGAN_DATA_MIRROR or ../shared/data)")
    p.add_argument("--steps", type=int, default=150, help="training steps of each small generator")
    p.add_argument("--runs", type=int, default=30, help="timed runs per file (>= 20)")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--md", default=None, help="also write the markdown table to this file")
    p.add_argument("--fid", type=int, default=0, metavar="N",
                   help="also the FID change of int8 on N inputs (python -m export --fid; slow on a CPU)")
    p.add_argument("--pair", action="append", default=[], metavar="FAMILY:UNPRUNED_RUN:PRUNED_RUN",
                   help="use these two compress run folders for FAMILY instead of the trained stand-ins "
                        "(repeatable)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import os

    data = Path(args.data or os.environ.get("CORONETGAN_DATA_MIRROR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from compress.errors import InputError

    try:
        pairs = {fam: (a, b) for fam, a, b in map(parse_pair, args.pair)}
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = run_benchmark(out, data, args.steps, max(20, args.runs), args.families.split(","), pairs, args.fid)
    (out / "benchmark.json").write_text(json.dumps(rows, indent=2, default=str))
    md = to_markdown(rows)
    if args.md:
        Path(args.md).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
