"""Virtual ``benchmark_model``: same flags and output format as TFLite's, running LiteRT on the host CPU.

It is what the virtual Android device runs as "the runner" (bench pushes a small wrapper script made by
:func:`write_runner`). It does not use a GPU: the delegate lines it prints are simulated from the model's
op list (ops named in the fault ``gpu_unsupported=OP+OP`` stay "on the CPU") so that bench's parsing and
partial-delegation flagging are exercised. Every table bench writes from a virtual device says so.

Environment (set by the virtual device's shell):
  CORONETGAN_VDEV_FAULTS   comma list: ``crash[=substr]`` (SIGSEGV after init), ``garbage[=substr]``,
                           ``throttle_after=K``, ``gpu_unsupported=OP+OP``, ``older_output``,
                           ``delegate_fail[=substr]`` (``Failed to apply GPU delegate.``, exit 1),
                           ``missing_lib`` (the Android linker's ``CANNOT LINK EXECUTABLE``, exit 1),
                           ``oom[=substr]`` (``std::bad_alloc``, SIGABRT), ``slow=SUBSTR:SECONDS``
                           (sleeps before the timed runs of matching models)
  CORONETGAN_VDEV_STATE    folder of the device's state files (thermal status, run counter)
  CORONETGAN_VDEV_SANDBOX  sandbox root, stripped from printed paths
  THERMAL_DIR              the sandbox's thermal zone folder
"""
from __future__ import annotations

import os
import random
import resource
import signal
import sys
import time
from pathlib import Path

TRUE = {"1", "true", "True", "yes"}

# flag -> default (strings, as benchmark_model takes them)
FLAGS = {
    "graph": "", "num_threads": "-1", "num_runs": "50", "warmup_runs": "1", "min_secs": "1",
    "max_secs": "150", "warmup_min_secs": "0.5", "run_delay": "-1", "run_frequency": "-1",
    "use_gpu": "false", "gpu_backend": "", "gpu_precision_loss_allowed": "true",
    "gpu_experimental_enable_quant": "true", "gpu_inference_for_sustained_speed": "false",
    "gpu_wait_type": "", "use_xnnpack": "false", "use_nnapi": "false", "enable_op_profiling": "false",
    "report_peak_memory_footprint": "false", "memory_footprint_check_interval_ms": "50", "verbose": "false",
    "benchmark_name": "", "output_prefix": "", "input_layer": "", "input_layer_shape": "",
    "max_delegated_partitions": "0", "min_nodes_per_partition": "0", "dry_run": "false",
    "delegate_serialize_dir": "", "delegate_serialize_token": "",
}


def parse_faults(text: str | None) -> dict[str, str]:
    """``"crash=foo,throttle_after=2"`` → ``{"crash": "foo", "throttle_after": "2"}`` (bare keys → "")."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if item:
            k, _, v = item.partition("=")
            out[k.strip()] = v.strip()
    return out


def _targets(faults: dict[str, str], key: str, graph: str) -> bool:
    return key in faults and (not faults[key] or faults[key] in graph)


def _memory_mb() -> tuple[float, float]:
    """(resident memory now, peak resident memory so far) of this process, MB: ``VmRSS`` and ``VmHWM`` of
    ``/proc/self/status`` (benchmark_model's ``MemoryUsage`` holds the same two). Not ``getrusage``'s
    ``ru_maxrss``: Linux carries it over ``exec`` from the parent's memory at ``fork``, so a runner started by a
    large process would report that process's size. Without ``/proc``: ``ru_maxrss`` for both."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                      if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024.0, int(fields["VmHWM"].split()[0]) / 1024.0
    except (OSError, ValueError, KeyError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return peak, peak


def _partitions(ops: list[str], unsupported: set[str]) -> tuple[int, int]:
    """(delegated node count, number of contiguous delegated partitions)."""
    n, parts, prev = 0, 0, False
    for op in ops:
        ok = op not in unsupported
        if ok:
            n += 1
            if not prev:
                parts += 1
        prev = ok
    return n, parts


def main(argv: list[str] | None = None) -> int:
    """Run like benchmark_model; returns its exit status (0 ok, 1 bad flags or model load failure)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    faults = parse_faults(os.environ.get("CORONETGAN_VDEV_FAULTS"))
    if "missing_lib" in faults:
        # what Android's linker prints before main() when a needed library is absent
        argv0 = sys.argv[0].replace(os.environ.get("CORONETGAN_VDEV_SANDBOX") or "\0", "")
        print(f'CANNOT LINK EXECUTABLE "{argv0}": library "libOpenCL.so" not found: needed by main executable',
              file=sys.stderr, flush=True)
        return 1
    sandbox = os.environ.get("CORONETGAN_VDEV_SANDBOX", "")
    state_env = os.environ.get("CORONETGAN_VDEV_STATE")
    state = Path(state_env) if state_env else None
    newer = "older_output" not in faults
    pfx = "INFO: " if newer else ""
    tfl = "INFO: "  # lines from the TFLite runtime itself carry the prefix in both forms

    def say(line: str = "", prefix: str | None = None) -> None:
        if sandbox:
            line = line.replace(sandbox, "")
        print(((pfx if prefix is None else prefix) + line) if line else "", flush=True)

    params = dict(FLAGS)
    unconsumed = []
    for a in argv:
        if a.startswith("--") and "=" in a and a[2:].split("=", 1)[0] in FLAGS:
            k, v = a[2:].split("=", 1)
            params[k] = v
        elif a in ("--help", "-h"):
            print("usage: benchmark_model --graph=PATH [flags]; flags: " + " ".join(sorted(FLAGS)))
            return 0
        else:
            unconsumed.append(a)
    say("STARTING!")
    if unconsumed:
        say(f"Unconsumed cmdline flags: {' '.join(unconsumed)}", "ERROR: ")
        return 1
    graph = params["graph"]
    use_gpu = params["use_gpu"] in TRUE
    if newer:
        say("Log parameter values verbosely: [0]")
        say(f"Num runs: [{params['num_runs']}]")
        say(f"Min warmup runs: [{params['warmup_runs']}]")
        say(f"Graph: [{graph}]")
        say(f"#threads used for CPU inference: [{params['num_threads']}]")
        if use_gpu:
            say("Use gpu: [1]")
            if params["gpu_backend"]:
                say(f"GPU backend: [{params['gpu_backend']}]")
            say(f"Allow lower precision in gpu: [{int(params['gpu_precision_loss_allowed'] in TRUE)}]")
        if params["report_peak_memory_footprint"] in TRUE:
            say("Report the peak memory footprint: [1]")
    else:
        say(f"Min num runs: [{params['num_runs']}]")
        say(f"Graph: [{graph}]")
        say(f"Use gpu : [{int(use_gpu)}]")
        say(f"Allow fp16 : [{int(params['gpu_precision_loss_allowed'] in TRUE)}]")
    if not graph:
        say("Please specify the name of your TF Lite input file with --graph", "ERROR: ")
        return 1
    if _targets(faults, "garbage", graph):
        rnd = random.Random(graph)
        for _ in range(8):
            print("".join(rnd.choice("abcdef0123456789 #%&*") for _ in range(60)), flush=True)
        return 0

    repo = str(Path(__file__).resolve().parents[2])
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from bench import litert_timing as lt

    lt.runtime()  # the runtime library is loaded before main() in the real tool: not part of the model's figures
    mem_start = _memory_mb()
    t_init = time.perf_counter()
    if not os.path.exists(graph):
        say(f"Could not open '{graph}'.", "ERROR: ")
        say(f"Failed to mmap model {graph}", "ERROR: ")
        return 1

    try:
        interp = lt.load_interpreter(graph, int(params["num_threads"]))
    except Exception as e:  # LiteRT: ValueError for bad flatbuffers, RuntimeError for kernels
        say(f"{str(e).splitlines()[0] if str(e) else type(e).__name__}", "ERROR: ")
        say(f"Failed to load model file '{graph}'" if newer else f"Failed to mmap model {graph}", "ERROR: ")
        return 1
    say(f"Loaded model {graph}")
    say("Initialized TensorFlow Lite runtime.", tfl)
    say(f"LiteRT version: [{_litert_version()}] (virtual benchmark_model, host CPU)", tfl)
    ops = lt.op_names(graph)
    if use_gpu:
        unsupported = {o for o in faults.get("gpu_unsupported", "").split("+") if o}
        bad = [o for o in dict.fromkeys(ops) if o in unsupported]
        say("Created TensorFlow Lite delegate for GPU.", tfl)
        if _targets(faults, "delegate_fail", graph):
            say("Failed to apply GPU delegate.", "ERROR: ")
            say("Benchmarking failed.", "ERROR: ")
            return 1
        if newer:
            say("GPU delegate created.")
        if bad:
            say("Following operations are not supported by GPU delegate:", "ERROR: ")
            for o in bad:
                print(f"{o}: Operation is not supported.", flush=True)
        n_del, parts = _partitions(ops, set(bad))
        if newer:
            say(f"Replacing {n_del} out of {len(ops)} node(s) with delegate (TfLiteGpuDelegateV2) node, "
                f"yielding {parts} partitions for the whole graph.", tfl)
        else:
            say(f"Replacing {n_del} node(s) with delegate (TfLiteGpuDelegateV2) node, yielding {parts} "
                "partitions.", tfl)
        backend = "OpenGL" if params["gpu_backend"] == "gl" else "OpenCL"
        say(f"Initialized {backend}-based API.", tfl)
        say(f"Created {parts} GPU delegate kernels.", tfl)
        if newer:
            if n_del == 0:
                say("Though GPU delegate is explicitly applied, the model graph will not be executed by the "
                    "delegate.")
            elif n_del == len(ops):
                say("Explicitly applied GPU delegate, and the model graph will be completely executed by the "
                    "delegate.")
            else:
                say("Explicitly applied GPU delegate, and the model graph will be partially executed by the "
                    f"delegate w/ {parts} delegate kernels.")
        else:
            say("Applied GPU delegate.")
    size_mb = lt.file_size_mb(graph)
    say(f"The input model file size (MB): {size_mb:.6g}")
    lt.random_inputs(interp)
    init_us = (time.perf_counter() - t_init) * 1e6
    say(f"Initialized session in {init_us / 1000:.3f}ms.")
    mem_init = _memory_mb()

    if _targets(faults, "crash", graph):
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    if _targets(faults, "oom", graph):
        print("libc++abi: terminating due to uncaught exception of type std::bad_alloc: std::bad_alloc",
              file=sys.stderr, flush=True)
        os.abort()
    slow_on, _, slow_s = faults.get("slow", "").rpartition(":")
    if slow_s and slow_on in graph:
        time.sleep(float(slow_s))

    w_runs, n_runs = max(int(params["warmup_runs"]), 0), max(int(params["num_runs"]), 1)
    w_secs, min_secs, max_secs = (float(params["warmup_min_secs"]), float(params["min_secs"]),
                                  float(params["max_secs"]))
    warm = []
    if w_runs > 0:
        say(f"Running benchmark for at least {w_runs} iterations and at least {w_secs:g} seconds but "
            f"terminate if exceeding {max_secs:g} seconds.")
        warm = lt.time_invokes(interp, w_runs, w_secs, max_secs)
        say(lt.format_stats(lt.block_stats(warm), newer))
        say()
    say(f"Running benchmark for at least {n_runs} iterations and at least {min_secs:g} seconds but "
        f"terminate if exceeding {max_secs:g} seconds.")
    timed = lt.time_invokes(interp, n_runs, min_secs, max_secs)
    st = lt.block_stats(timed)
    say(lt.format_stats(st, newer))
    say()
    first = warm[0] if warm else timed[0]
    warm_avg = (sum(warm) / len(warm)) if warm else float("nan")
    say(f"Inference timings in us: Init: {int(init_us)}, First inference: {int(first)}, "
        f"Warmup (avg): {warm_avg:.6g}, Inference (avg): {st['avg']:.6g}")
    # as benchmark_model: the newer form prints the growth of the resident memory since the tool's start and
    # (asked for) the process's peak; the older form the growth of the peak (max RSS) since the start
    mem_end = _memory_mb()
    if newer:
        say("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE "
            "to the actual memory footprint of the model at runtime. Take the information at your discretion.")
        say(f"Memory footprint delta from the start of the tool (MB): init={mem_init[0] - mem_start[0]:.4g} "
            f"overall={mem_end[0] - mem_start[0]:.4g}")
        if params["report_peak_memory_footprint"] in TRUE:
            say(f"Overall peak memory footprint (MB) via periodic monitoring: {mem_end[1]:.4g}")
    else:
        say(f"Peak memory footprint (MB): init={mem_init[1] - mem_start[1]:.4g} "
            f"overall={mem_end[1] - mem_start[1]:.4g}")
    if state is not None:
        _bump_thermal(state, faults)
    return 0


def run_guarded(argv: list[str]) -> int:
    """:func:`main` for ``--device host``: an exception of the runtime becomes benchmark_model's ``ERROR:`` line
    and exit status 1 (a LiteRT failure is a failed row, not a traceback)."""
    try:
        return main(argv)
    except Exception as e:
        print(f"ERROR: {type(e).__name__}: {e}", flush=True)
        return 1


def _litert_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:
        return "unknown"


def _bump_thermal(state: Path, faults: dict[str, str]) -> None:
    """Count runner invocations; with ``throttle_after=K`` the device reports SEVERE (3) from run K on."""
    try:
        counter = state / "runner_invocations"
        n = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(n))
        k = faults.get("throttle_after")
        if k and n >= int(k):
            (state / "thermal_status").write_text("3\n")
            tdir = os.environ.get("THERMAL_DIR")
            if tdir:
                for z in Path(tdir).glob("thermal_zone*/temp"):
                    z.write_text("93000\n")
    except OSError:
        pass


def write_runner(dest: str | os.PathLike) -> Path:
    """Write the executable wrapper that bench pushes as the virtual device's runner; returns its path.

    The wrapper's shebang is this interpreter (``sys.executable``) so the venv's LiteRT is used.
    """
    from compress.io import atomic_write_text

    repo = Path(__file__).resolve().parents[2]
    text = (f"#!{sys.executable}\n"
            "# CoroNetGAN virtual benchmark_model (host CPU, LiteRT): NOT a phone runner.\n"
            "import sys\n"
            f"sys.path.insert(0, {str(repo)!r})\n"
            "from bench.virtual_device.benchmark_model import main\n"
            "sys.exit(main())\n")
    dest = Path(dest)
    atomic_write_text(dest, text)
    dest.chmod(0o755)
    return dest


if __name__ == "__main__":
    sys.exit(main())
