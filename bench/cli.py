"""``python bench/run_adb.py``: time .tflite models on a phone's GPU over adb (or on the host CPU).

Examples::

    python bench/run_adb.py --device sm8450        # newest finished run's export -> RUN/bench/sm8450
    python bench/run_adb.py --device sm8450 --models runs/p2p/export/manifest.json --out release/bench/sm8450
    python bench/run_adb.py --device dimensity1200 --serial R5CT... --runner ~/bin/android_aarch64_benchmark_model \\
        --models unpruned:fp32=a.tflite pruned:fp32=b.tflite baseline:fp32=c.tflite --out out/
    python bench/run_adb.py --device host --models a_fp32.tflite --out out/          # no phone needed
    python bench/run_adb.py --device sm8450 --virtual                                # virtual device

Without --models, the models are the newest finished run's under ./runs (RUN/export/manifest.json, and its
original's, RUN/original/export/manifest.json, as the speed-up reference when it was exported) and the tables go
to RUN/bench/<device> (RUN/bench/<device>-virtual with --virtual).

Exit status: 0 every row measured, 1 some rows failed (flagged in the tables), 2 bad input (also: no usable
phone attached), 3 the run was aborted or could not start (device lost or busy, runner unusable): the tables
then hold the rows measured before; 130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM, after writing the
tables of the rows measured so far (rerun the same command to measure the others).
"""
from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
from typing import Any

from bench.latest import default_out, latest_export, original_export
from bench.measure import bench_models
from bench.profiles import HOST, check_device, get_profile, profile_names
from bench.results import GPU_BACKENDS, BenchError, Interrupted
from bench.runner_file import RUNNER_KINDS
from compress.cli_errors import os_error_exit, os_error_message
from compress.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bench/run_adb.py``."""
    ap = argparse.ArgumentParser(prog="python bench/run_adb.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", required=True,
                    help=f"phone profile ({', '.join(profile_names())}; or its SoC or name, any case; or a "
                         f"profile .json file), or '{HOST}' for this machine's CPU")
    ap.add_argument("--serial", help="adb serial of the phone to use (else the single attached phone matching --device)")
    ap.add_argument("--models", nargs="+", metavar="MODEL",
                    help="manifest.json (or its folder), label:dtype=path.tflite, label=path.tflite or path.tflite "
                         "[the newest finished run's export under ./runs, and its original's]")
    ap.add_argument("--out", help="output folder for latency.{md,csv,json,png} and logs/ [with --models: required; "
                                  "else RUN/bench/<device>]")
    ap.add_argument("--runner", help="benchmark_model for Android arm64 (default: $CORONETGAN_BENCHMARK_MODEL)")
    ap.add_argument("--runner-kind", default="android", choices=RUNNER_KINDS,
                    help="android (default): the runner must be an Android ELF for the phone's ABI; host: any "
                         "runner, every figure marked as a host figure")
    ap.add_argument("--adb-host", default="127.0.0.1", help="adb server host [127.0.0.1]")
    ap.add_argument("--adb-port", type=int, help="adb server port [$ANDROID_ADB_SERVER_PORT, else 5037]")
    ap.add_argument("--connect", metavar="HOST:PORT", help="adb connect to this address first (phone over Wi-Fi, "
                    "or a virtual device started with python -m bench.virtual_device)")
    ap.add_argument("--virtual", action="store_true",
                    help="start a virtual device with the --device profile for this run (host CPU; tables say so)")
    ap.add_argument("--wait-busy", type=float, default=0.0, metavar="SECONDS",
                    help="wait this long for another bench run that holds the phone [0: refuse at once]")
    ap.add_argument("--fresh", action="store_true",
                    help="measure every row, even those an interrupted earlier run in --out measured")
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
    ap.add_argument("--reference", help="label the speedup column compares with [without --models: the run's "
                    "original; else unpruned, else the first]")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def _settings(a: argparse.Namespace) -> dict[str, Any]:
    """The :class:`bench.results.BenchSettings` fields given by the protocol flags."""
    return dict(warmup=a.warmup, runs=a.runs, repeats=a.repeats, cooldown_s=a.cooldown, min_secs=a.min_secs,
                max_secs=a.max_secs, threads=a.threads, gpu_backend=a.gpu_backend, use_gpu=not a.cpu,
                runner_args=list(a.runner_arg), timeout_s=a.timeout)


def _macs(items: list[str]) -> dict[str, int]:
    """``--macs LABEL=N`` values: {label: MACs}.

    Raises:
        InputError: not LABEL=N with N a finite number >= 0 (named)."""
    out = {}
    for it in items:
        label, _, n = it.partition("=")
        try:
            value = float(n)
        except ValueError:
            value = math.nan
        if not label or not math.isfinite(value) or value < 0:
            raise InputError(f"--macs {it!r}: expected LABEL=N (a model's label and its MAC count, a number >= 0)")
        out[label] = int(value)
    return out


def _models_out_reference(a: argparse.Namespace) -> tuple[list[str], str, str | None]:
    """``--models``, ``--out`` and ``--reference``; without ``--models``: the newest finished run's export
    manifest (after its original's, the reference, when exported) and ``RUN/bench/<device>``."""
    if a.models:
        if not a.out:
            raise InputError("--out: required with --models (the folder for latency.{md,csv,json,png})")
        return a.models, a.out, a.reference
    device = check_device(a.device)
    run, manifest = latest_export()
    name = HOST if device == HOST else get_profile(device)["key"]
    out = a.out or str(default_out(run, name, a.virtual))
    original = original_export(run)
    if original is None:
        return [str(manifest)], out, a.reference
    return [str(original[0]), str(manifest)], out, a.reference or original[1]


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (see the module docstring). Raises :class:`InputError`,
    :class:`BenchError` and :class:`Interrupted`."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(message)s")
    models, out, reference = _models_out_reference(a)
    report = bench_models(models, out=out, device=a.device, serial=a.serial, virtual=a.virtual, runner=a.runner,
                          runner_kind=a.runner_kind, adb_host=a.adb_host, adb_port=a.adb_port, connect=a.connect,
                          macs=_macs(a.macs), reference=reference, wait_busy_s=a.wait_busy, resume=not a.fresh,
                          argv=list(sys.argv[1:] if argv is None else argv), **_settings(a))
    if report["aborted"]:
        return 3
    return 1 if any(r["status"] != "ok" for r in report["rows"]) else 0


def _raise_interrupted(signum: int, _frame) -> None:
    # once: a second Ctrl-C while the tables are written and the phone cleaned up must not cut that short
    signal.signal(signum, signal.SIG_IGN)
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point: :func:`run` with one-line errors and no traceback: bad input exit 2, aborted run 3,
    SIGINT/SIGTERM 130/143 (the tables then hold the rows measured so far)."""
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _raise_interrupted)
    except ValueError:  # not the main thread: signals stay as they are
        pass
    try:
        return run(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return os_error_exit(e)
    except (Interrupted, KeyboardInterrupt) as e:
        stop = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
        print(getattr(e, "summary", f"interrupted by {stop.name} before measuring; no table was written"),
              file=sys.stderr)
        return stop.exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
