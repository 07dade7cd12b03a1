"""``python bench/run_adb.py``: time .tflite models on a phone's GPU over adb (or on the host CPU).

Examples::

    python bench/run_adb.py --device sm8450 --models runs/p2p/export/manifest.json --out release/bench/sm8450
    python bench/run_adb.py --device dimensity1200 --serial R5CT... --runner ~/bin/android_aarch64_benchmark_model \\
        --models unpruned:fp32=a.tflite pruned:fp32=b.tflite baseline:fp32=c.tflite --out out/
    python bench/run_adb.py --device host --models a_fp32.tflite --out out/          # no phone needed
    python bench/run_adb.py --device sm8450 --virtual --models ... --out out/        # virtual device

Exit status: 0 every row measured, 1 some rows failed (flagged in the tables), 2 bad input, 3 the run was
aborted (device lost, runner unusable): the tables then hold the rows measured before.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from bench.measure import bench_models
from bench.profiles import HOST, profile_names
from bench.results import GPU_BACKENDS, BenchError
from compress.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bench/run_adb.py``."""
    ap = argparse.ArgumentParser(prog="python bench/run_adb.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", required=True,
                    help=f"device profile ({', '.join(profile_names())}) or '{HOST}' for this machine's CPU")
    ap.add_argument("--serial", help="adb serial of the phone to use (else the single attached phone matching --device)")
    ap.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                    help="manifest.json (or its folder), label:dtype=path.tflite, label=path.tflite or path.tflite")
    ap.add_argument("--out", required=True, help="output folder for latency.{md,csv,json,png} and logs/")
    ap.add_argument("--runner", help="benchmark_model for Android arm64 (default: $CORONETGAN_BENCHMARK_MODEL)")
    ap.add_argument("--adb-host", default="127.0.0.1", help="adb server host [127.0.0.1]")
    ap.add_argument("--adb-port", type=int, help="adb server port [$ANDROID_ADB_SERVER_PORT, else 5037]")
    ap.add_argument("--connect", metavar="HOST:PORT", help="adb connect to this address first (phone over Wi-Fi, "
                    "or a virtual device started with python -m bench.virtual_device)")
    ap.add_argument("--virtual", action="store_true",
                    help="start a virtual device with the --device profile for this run (host CPU; tables say so)")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up runs per repeat [5]")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per repeat [50]")
    ap.add_argument("--repeats", type=int, default=3, help="benchmark_model invocations per model [3]")
    ap.add_argument("--cooldown", type=float, default=5.0, help="seconds between repeats [5]")
    ap.add_argument("--min-secs", type=float, default=0.0, help="benchmark_model --min_secs [0]")
    ap.add_argument("--max-secs", type=float, default=150.0, help="benchmark_model --max_secs [150]")
    ap.add_argument("--threads", type=int, default=4, help="benchmark_model --num_threads [4]")
    ap.add_argument("--gpu-backend", default="cl", choices=GPU_BACKENDS, help="GPU delegate backend [cl]")
    ap.add_argument("--cpu", action="store_true", help="phone CPU instead of the GPU delegate")
    ap.add_argument("--runner-arg", action="append", default=[], metavar="FLAG",
                    help="extra benchmark_model flag, repeatable (use the = form: --runner-arg=--warmup_min_secs=0)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per model [1800]")
    ap.add_argument("--macs", action="append", default=[], metavar="LABEL=N", help="MACs of a model label")
    ap.add_argument("--reference", help="label the speedup column compares with [unpruned, else the first]")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def _settings(a: argparse.Namespace) -> dict[str, Any]:
    """The :class:`bench.results.BenchSettings` fields given by the protocol flags."""
    return dict(warmup=a.warmup, runs=a.runs, repeats=a.repeats, cooldown_s=a.cooldown, min_secs=a.min_secs,
                max_secs=a.max_secs, threads=a.threads, gpu_backend=a.gpu_backend, use_gpu=not a.cpu,
                runner_args=list(a.runner_arg), timeout_s=a.timeout)


def _macs(items: list[str]) -> dict[str, int]:
    out = {}
    for it in items:
        label, _, n = it.partition("=")
        try:
            out[label] = int(float(n))
        except ValueError:
            raise InputError(f"--macs {it!r}: expected LABEL=N (an integer MAC count)") from None
    return out


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (see the module docstring). Raises :class:`InputError`."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(message)s")
    report = bench_models(a.models, out=a.out, device=a.device, serial=a.serial, virtual=a.virtual, runner=a.runner,
                          adb_host=a.adb_host, adb_port=a.adb_port, connect=a.connect, macs=_macs(a.macs),
                          reference=a.reference, argv=list(sys.argv[1:] if argv is None else argv), **_settings(a))
    if report["aborted"]:
        return 3
    return 1 if any(r["status"] != "ok" for r in report["rows"]) else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: :func:`run`, printing :class:`InputError` without a traceback (exit 2)."""
    try:
        return run(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
