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
import os
import sys
import time
from pathlib import Path
from typing import Any

from compress.errors import InputError

from bench import tables
from bench.models import parse_model_args
from compress.io import sha256_file
from bench.profiles import HOST, profile_names
from bench.results import BenchError, ModelResult, RunConfig

log = logging.getLogger("bench")


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
    ap.add_argument("--adb-port", type=int, default=int(os.environ.get("ANDROID_ADB_SERVER_PORT", 5037)),
                    help="adb server port [5037 or $ANDROID_ADB_SERVER_PORT]")
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
    ap.add_argument("--gpu-backend", default="cl", choices=["cl", "gl"], help="GPU delegate backend [cl]")
    ap.add_argument("--cpu", action="store_true", help="phone CPU instead of the GPU delegate")
    ap.add_argument("--runner-arg", action="append", default=[], metavar="FLAG",
                    help="extra benchmark_model flag, repeatable (use the = form: --runner-arg=--warmup_min_secs=0)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per model [1800]")
    ap.add_argument("--macs", action="append", default=[], metavar="LABEL=N", help="MACs of a model label")
    ap.add_argument("--reference", help="label the speedup column compares with [unpruned, else the first]")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def _config(a: argparse.Namespace) -> RunConfig:
    for name in ("warmup", "runs", "repeats", "threads"):
        v = getattr(a, name)
        if v < (0 if name == "warmup" else 1):
            raise InputError(f"--{name} {v}: expected a positive integer")
    if a.cooldown < 0 or a.timeout <= 0:
        raise InputError("--cooldown must be ≥ 0 and --timeout > 0 seconds")
    bad = [x for x in a.runner_arg if not x.startswith("--") or " " in x]
    if bad:
        raise InputError(f"--runner-arg {bad[0]!r}: expected one benchmark_model flag like --name=value")
    return RunConfig(warmup=a.warmup, runs=a.runs, repeats=a.repeats, cooldown_s=a.cooldown, min_secs=a.min_secs,
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
    t_start = time.perf_counter()
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(message)s")
    cfg = _config(a)
    specs = parse_model_args(a.models, _macs(a.macs))
    out_dir = Path(a.out)
    logs_dir = out_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(out_dir / "log.txt")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(fh)

    vdev = None
    try:
        if a.device == HOST:
            from bench.host_backend import HostBackend

            backend: Any = HostBackend()
            device_label, virtual, host = "host CPU (LiteRT)", False, True
            runner_info = None
        else:
            from bench import adb_backend as ab
            from bench.profiles import get_profile

            get_profile(a.device)  # validates the name
            if a.virtual:
                # a private adb server on a free port (never the user's server on 5037) and a virtual device
                from bench.virtual_session import VirtualSession

                vdev = VirtualSession(a.device).start()
                c = vdev.server.client()
                a.serial = a.serial or vdev.serial
                log.info("virtual device %s started on %s (private adb server on port %d)", a.device, vdev.serial,
                         vdev.port)
            else:
                c = ab.client(a.adb_host, a.adb_port)
                if a.connect:
                    ab.adb_connect(a.connect, adb_client=c)
            dev, props, prof_name = ab.select_device(c, a.device, a.serial)
            runner = ab.resolve_runner(a.runner, props, out_dir)
            backend = ab.AdbBackend(c, dev, props, runner, prof_name)
            virtual, host = backend.virtual, False
            device_label = f"{prof_name} ({props.get('ro.product.model', dev.serial)})" + (" VIRTUAL" if virtual else "")
            runner_info = {"path": str(runner), "name": runner.name, "sha256": sha256_file(runner),
                           "size_bytes": runner.stat().st_size, "virtual": virtual}
        facts = backend.facts()
        report: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device_label": device_label, "device": facts,
            "runner": runner_info, "config": cfg.to_dict(), "rows": [], "results": [], "aborted": None,
            "timings": {}, "reference": None, "argv": list(sys.argv[1:] if argv is None else argv),
        }
        done: list[ModelResult] = []

        def write(final: bool = False) -> dict[str, str]:
            rows = [tables.summarise(r, device_label, virtual, host) for r in done]
            report["reference"] = tables.add_speedups(rows, a.reference)
            report["rows"], report["results"] = rows, [r.to_dict() for r in done]
            t = dict(getattr(backend, "timings", {}))
            runner_wall = sum(rep.wall_s or 0.0 for r in done for rep in r.repeats)
            t["runner_wall_s"] = runner_wall
            t["cooldown_s"] = cfg.cooldown_s * sum(max(0, len(r.repeats) - 1) for r in done)
            t["bench_total_s"] = time.perf_counter() - t_start
            t["overhead_s"] = (t["bench_total_s"] - (runner_wall if runner_wall else t.get("runner_s", 0.0))
                               - t["cooldown_s"])
            report["timings"], report["device_cleaned"] = t, getattr(backend, "cleaned", None)
            report["complete"] = final and not report["aborted"]
            return tables.write_all(report, out_dir, chart=final)

        def on_result(res: ModelResult) -> None:
            done.append(res)
            write()
            log.info("%s: %s", res.spec.key, "ok" if any(r.ok for r in res.repeats) else "FAILED")

        status = 0
        try:
            backend.run(specs, cfg, logs_dir, on_result)
        except BenchError as e:
            report["aborted"] = str(e)
            log.error("run aborted: %s", e)
            status = 3
        paths = write(final=True)
        if status == 0 and any(r["status"] != "ok" for r in report["rows"]):
            status = 1
        for row in report["rows"]:
            if row["flags"] and set(row["flags"]) - {"virtual", "host"}:
                log.warning("%s %s flagged: %s", row["model"], row["dtype"], ", ".join(row["flags"]))
        log.info("wrote %s", ", ".join(paths.values()))
        return status
    finally:
        if vdev is not None:
            vdev.stop()   # disconnects, stops the virtual device and the private adb server
        logging.getLogger().removeHandler(fh)
        fh.close()


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
