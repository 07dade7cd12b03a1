"""``--device host``: the same protocol on this machine's CPU with LiteRT, labelled ``host``.

Each repeat runs the virtual benchmark_model's code on the CPU (no delegate) in a process of its own, as
benchmark_model runs on a phone, so its output goes through the same parser as a phone's and the peak memory it
reports is that run's (a Python process: about 40 MB of it is the interpreter and LiteRT, not the model).
Thermal readings come from this machine's ``/sys/class/thermal`` (status unknown).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bench.models import ModelSpec
from bench.results import BenchSettings, ModelResult, RepeatResult, Thermal, classify
from compress.children import child_options, shell_status
from compress.io import atomic_write_text
from compress.machine import describe_machine

REPO = Path(__file__).resolve().parents[1]
#: One repeat: the virtual benchmark_model in a fresh interpreter (``run_guarded``: exceptions are ERROR lines).
_RUNNER = ("import sys; from bench.virtual_device.benchmark_model import run_guarded; "
           "sys.exit(run_guarded(sys.argv[1:]))")


def run_runner(args: list[str], timeout_s: float | None = None) -> tuple[int, str]:
    """Run the virtual benchmark_model with benchmark_model's flags ``args`` in its own process on the host CPU.

    Returns (exit status, stdout and stderr); a run ended by signal N has status 128 + N, as a shell (and the
    phone's harness) reports it. The virtual device's faults (``CORONETGAN_VDEV_FAULTS``) are not passed on:
    they are the simulated phone's.

    Raises:
        subprocess.TimeoutExpired: it ran longer than ``timeout_s`` seconds (it is killed first).
    """
    env = {k: v for k, v in os.environ.items() if k != "CORONETGAN_VDEV_FAULTS"}
    proc = subprocess.run([sys.executable, "-c", _RUNNER, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, errors="replace", timeout=timeout_s, **child_options())
    return shell_status(proc.returncode), proc.stdout + proc.stderr


def host_thermal(root: str = "/sys/class/thermal") -> Thermal:
    """Hottest readable thermal zone of this machine (m°C); status is unknown on a host."""
    temps = []
    for z in Path(root).glob("thermal_zone*/temp"):
        try:
            temps.append(int(z.read_text().strip()))
        except (OSError, ValueError):
            continue
    return Thermal(None, max(temps) if temps else None)


def host_facts() -> dict[str, Any]:
    """Facts about this machine (:func:`compress.machine.describe_machine`) in the device-facts layout of the
    latency tables: host name, CPU model, logical cores, OS, LiteRT version."""
    m = describe_machine(gpu=False)  # the CPU rows never use a GPU; torch's import would only slow bench down
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:
        litert = "unknown"
    return {"kind": "host", "serial": "host", "profile": "host", "model": m["host"], "soc": m["cpu"],
            "cpu_cores": m["cores"], "os": m["system"],
            "android": None, "gpu_renderer": None, "gpu_driver": None, "runtime": f"ai-edge-litert {litert} (CPU)"}


class HostBackend:
    """Runs the measuring protocol on the host CPU (LiteRT interpreter, ``cfg.threads`` threads)."""

    virtual = False

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.cleaned = True

    def facts(self) -> dict[str, Any]:
        """See :func:`host_facts`."""
        return host_facts()

    def acquire(self, cfg: BenchSettings, wait_s: float = 0.0) -> None:
        """Nothing to lock: host runs share no device (the adb backend's counterpart)."""

    def close(self) -> None:
        """Nothing to clean up (the adb backend's counterpart)."""

    def run(self, models: list[ModelSpec], cfg: BenchSettings, logs_dir: Path,
            on_result: Callable[[ModelResult], None] | None = None) -> list[ModelResult]:
        """Time every model on the CPU; returns one :class:`ModelResult` per model (``on_result`` after each)."""
        results = []
        t0 = time.perf_counter()
        self.timings["runner_s"] = 0.0
        for spec in models:
            res = ModelResult(spec=spec)
            model_start = time.perf_counter()
            log_text = [f"@@ model={spec.path} precision={spec.dtype} repeats={cfg.repeats} host"]
            for k in range(1, cfg.repeats + 1):
                before = host_thermal()
                args = [f"--graph={spec.path}", "--use_gpu=false", f"--num_threads={cfg.threads}",
                        f"--warmup_runs={cfg.warmup}", f"--num_runs={cfg.runs}", f"--min_secs={cfg.min_secs:g}",
                        f"--max_secs={cfg.max_secs:g}", "--report_peak_memory_footprint=true", *cfg.runner_args]
                t = time.perf_counter()
                try:   # --timeout: seconds for all the repeats of one model, as on the phone
                    rc, text = run_runner(args, max(0.001, cfg.timeout_s - (t - model_start)))
                except subprocess.TimeoutExpired:
                    self.timings["runner_s"] += time.perf_counter() - t
                    res.error = (f"timed out: {cfg.repeats} repeat(s) did not finish within --timeout "
                                 f"{cfg.timeout_s:g} s (stopped in repeat {k})")
                    log_text.append(f"@@ repeat={k} {res.error}")
                    break
                wall = time.perf_counter() - t
                self.timings["runner_s"] += wall
                after = host_thermal()
                out, problem, detail, cause = classify(text, rc)
                res.repeats.append(RepeatResult(k, rc, before, after, out, problem, detail, wall, cause))
                log_text += [f"@@ repeat={k} thermal_before status=NA temp_mC={before.temp_mc or 'NA'}",
                             text.rstrip(), f"@@ repeat={k} exit={rc}",
                             f"@@ repeat={k} thermal_after status=NA temp_mC={after.temp_mc or 'NA'}"]
                if k < cfg.repeats and cfg.cooldown_s > 0:
                    time.sleep(cfg.cooldown_s)
            log_text.append("@@ done")
            local = logs_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", f"host_{spec.label}_{spec.dtype}") + ".log")
            atomic_write_text(local, "\n".join(log_text) + "\n")
            res.log_file = str(local)
            results.append(res)
            if on_result:
                on_result(res)
        self.timings["total_s"] = time.perf_counter() - t0
        return results
