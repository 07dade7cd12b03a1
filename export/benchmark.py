"""Export benchmark table for docs/export.md: family x dtype, unpruned vs 75%-pruned.

For each family it trains a small generator briefly (:mod:`export.tiny`) at full width and at width
``sqrt(0.25)`` (the stand-in for a 75%-MACs-pruned compress run: every prunable channel count halved, so
MACs ~ 1/4), exports all three dtypes with :func:`export.pipeline.export_run` (default options: robust int8,
int8 I/O, 100 calibration images) and, for int8, also the naive variant (every op int8). It reports per
file: conversion time (s), size (bytes), PSNR (dB) and max abs diff against PyTorch fp32 on the held-out
inputs, and host LiteRT latency (ms): ``ai_edge_litert`` interpreter, 2 threads, ``--warmup`` runs then the
median of ``--runs`` (>= 20) timed ``invoke()`` calls. The latency ratio pruned/unpruned is printed beside
the MACs ratio.

Usage: ``python -m export.benchmark --out build/export-bench [--steps 150] [--runs 30] [--md docs/table.md]``
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from pathlib import Path
from typing import Sequence

import numpy as np

FAMILIES = ("pix2pix", "cyclegan", "dcgan")


def host_latency_ms(path: str | Path, threads: int = 2, warmup: int = 5, runs: int = 30) -> dict:
    """Median/min/max latency (ms) of ``invoke()`` on a zero input, after ``warmup`` untimed runs."""
    from export.parity import make_interpreter

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


def run_benchmark(out: Path, data_root: Path, steps: int, runs: int, families: Sequence[str]) -> list[dict]:
    from export.pipeline import export_run
    from export.tiny import DEFAULT_SPECS, PRUNED_75_WIDTH, train_tiny_run

    rows = []
    for fam in families:
        for label, width in (("unpruned", 1.0), ("pruned75", PRUNED_75_WIDTH)):
            run = out / f"{fam}_{label}"
            if not (run / "generator.pt").is_file():
                t0 = time.perf_counter()
                train_tiny_run(fam, run, data_root, steps=steps, width=width)
                logging.info("trained %s %s in %.0f s", fam, label, time.perf_counter() - t0)
            manifests = {"robust": export_run(run, "all")}
            manifests["naive"] = export_run(run, "int8", out_dir=run / "export_naive", int8_mode="naive",
                                            accept_gate_failure=True)
            for variant, man in manifests.items():
                outdir = run / ("export" if variant == "robust" else "export_naive")
                for e in man["files"]:
                    if e["dtype"] == "onnx" or (variant == "naive" and e["dtype"] != "int8"):
                        continue
                    lat = host_latency_ms(outdir / e["path"], runs=runs)
                    rows.append({"family": fam, "model": label, "width": width,
                                 "dtype": e["dtype"] + (" naive" if variant == "naive" else ""),
                                 "conversion_s": e["conversion_s"], "size_bytes": e["size_bytes"],
                                 "psnr_db": e["psnr_db"], "max_abs_diff": e["max_abs_diff"],
                                 "gpu_ready": e["gpu_delegate"]["gpu_ready"], "latency": lat,
                                 "macs": man["macs"], "params": man["params"],
                                 "input_shape": man["input"]["shape"],
                                 "generator": DEFAULT_SPECS[fam]["generator"]})
    return rows


def to_markdown(rows: list[dict]) -> str:
    base = {(r["family"], r["dtype"]): r for r in rows if r["model"] == "unpruned"}
    lines = ["| family | model | dtype | MACs | conv. s | size bytes | PSNR dB | max abs diff | GPU ready | "
             "latency ms (median) | latency ratio | MACs ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = base.get((r["family"], r["dtype"]))
        lat_ratio = r["latency"]["median_ms"] / b["latency"]["median_ms"] if b else math.nan
        macs_ratio = r["macs"] / b["macs"] if b else math.nan
        psnr = r["psnr_db"] if isinstance(r["psnr_db"], str) else f"{r['psnr_db']:.1f}"
        lines.append(f"| {r['family']} | {r['model']} | {r['dtype']} | {r['macs'] / 1e6:.1f} M | "
                     f"{r['conversion_s']:.1f} | {r['size_bytes']:,} | {psnr} | {r['max_abs_diff']:.2g} | "
                     f"{'yes' if r['gpu_ready'] else 'no'} | {r['latency']['median_ms']:.3f} | "
                     f"{lat_ratio:.2f} | {macs_ratio:.2f} |")
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
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import os

    data = Path(args.data or os.environ.get("CORONETGAN_DATA_MIRROR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = run_benchmark(out, data, args.steps, max(20, args.runs), args.families.split(","))
    (out / "benchmark.json").write_text(json.dumps(rows, indent=2, default=str))
    md = to_markdown(rows)
    if args.md:
        Path(args.md).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
