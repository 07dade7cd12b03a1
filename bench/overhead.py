"""Measure the seconds bench spends around the runner, on the virtual device (docs/bench.md, item 8).

``python -m bench.overhead --models a_fp32.tflite a_fp16.tflite a_int8.tflite [--trials 3]`` starts a private
adb server (own port and HOME) and a virtual SM8450, then runs ``python bench/run_adb.py`` ``--trials`` times
as a subprocess and reports, per trial and as the median:

* ``wall_s`` - the whole command, interpreter start-up included;
* ``runner_s`` - wall time of the runner processes (benchmark_model), measured on the device side;
* ``cooldown_s`` - the protocol's deliberate sleeps between repeats;
* ``overhead_s`` = wall_s − runner_s − cooldown_s: interpreter start-up, adb server round trips, pushes,
  pulls, thermal reads, parsing, tables and chart.

The runner here is the virtual benchmark_model (host CPU); the overhead is what bench adds around it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.virtual_session import VirtualSession  # noqa: E402
from compress.errors import InputError  # noqa: E402
from compress.io import atomic_write_json  # noqa: E402
from compress.machine import describe_machine, machine_text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def measure(models: list[str], trials: int = 3, profile: str = "sm8450", extra: list[str] | None = None,
            keep: str | None = None) -> dict:
    """Run the trials; returns ``{"trials": [...], "median": {...}, "machine": ..., "command": [...]}`` (s).

    Raises :class:`InputError` for ``trials`` < 1 or input bench refuses (exit 2: its message),
    :class:`RuntimeError` when a trial's bench command fails otherwise, :class:`bench.results.BenchError` when the
    private adb server or the virtual device cannot be started.
    """
    if trials < 1:
        raise InputError(f"--trials {trials}: expected an integer >= 1")
    out_root = Path(keep or tempfile.mkdtemp(prefix="coronetgan-overhead-"))
    rows = []
    try:
        with VirtualSession(profile) as vs:
            for i in range(trials):
                out = out_root / f"trial{i}"
                cmd = [sys.executable, str(REPO / "bench" / "run_adb.py"), "--device", profile, "--serial",
                       vs.serial, "--adb-port", str(vs.port), "--models", *models, "--out", str(out), *(extra or [])]
                t = time.perf_counter()
                r = subprocess.run(cmd, env=vs.server.env, capture_output=True, text=True)
                wall = time.perf_counter() - t
                if r.returncode == 2:      # bad input, said by bench in its last line
                    lines = r.stderr.strip().splitlines()
                    last = lines[-1].removeprefix("error: ") if lines else "no message"
                    raise InputError(f"bench refused the input: {last}")
                if r.returncode != 0:
                    raise RuntimeError(f"bench failed ({r.returncode}): {r.stderr[-2000:]}")
                rep = json.loads((out / "latency.json").read_text())
                tm = rep["timings"]
                rows.append({"wall_s": wall, "runner_s": tm["runner_wall_s"], "cooldown_s": tm["cooldown_s"],
                             "overhead_s": wall - tm["runner_wall_s"] - tm["cooldown_s"],
                             "in_process_overhead_s": tm["overhead_s"], "setup_s": tm.get("setup_s"),
                             "cleanup_s": tm.get("cleanup_s"), "rows": len(rep["rows"]),
                             "runner_invocations": sum(len(x["repeats"]) for x in rep["results"])})
    finally:
        if keep is None:
            shutil.rmtree(out_root, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in rows if r[k] is not None) for k in rows[0] if rows[0][k] is not None}
    machine = f"{machine_text(describe_machine(gpu=False))}, virtual device (runner = LiteRT on the host CPU)"
    return {"trials": rows, "median": med, "profile": profile, "machine": machine,
            "command": cmd[:1] + ["bench/run_adb.py"] + cmd[2:]}


def main(argv: list[str] | None = None) -> int:
    """CLI; prints the figures and, with ``--json``, writes them there."""
    ap = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True, help="the .tflite files (3 dtypes) as for run_adb.py")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--profile", default="sm8450")
    ap.add_argument("--json", help="write the figures to this JSON file")
    ap.add_argument("--bench-arg", action="append", default=[], help="extra run_adb.py argument (= form)")
    a = ap.parse_args(argv)
    try:
        res = measure(a.models, a.trials, a.profile, a.bench_arg)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for i, r in enumerate(res["trials"]):
        print(f"trial {i}: wall {r['wall_s']:.2f} s, runner {r['runner_s']:.2f} s, overhead {r['overhead_s']:.2f} s "
              f"({r['runner_invocations']} runner invocations, {r['rows']} rows)")
    m = res["median"]
    print(f"median: wall {m['wall_s']:.2f} s, runner {m['runner_s']:.2f} s, cool-down {m['cooldown_s']:.2f} s, "
          f"overhead {m['overhead_s']:.2f} s "
          f"(in-process {m['in_process_overhead_s']:.2f} s) on {res['machine']}")
    if a.json:
        atomic_write_json(a.json, res)
    return 0


if __name__ == "__main__":
    from compress.cli_errors import run_cli

    sys.exit(run_cli(main))
