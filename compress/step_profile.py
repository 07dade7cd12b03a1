"""Where a training step's time goes on an accelerator: the PyTorch profiler over a few steps of a step-cost case,
and eq. 4 of the hypernetwork timed in other formulations (``scripts/gpu_check.py --sections profile,eq4``).

A step whose kernels keep the GPU busy for less than its wall time is bound by the host (Python, the dispatcher,
kernel launches), not by the GPU: then fewer, larger kernels (``torch.compile``, CUDA graphs) are the remedy, not
faster kernels. :func:`profile_case` measures exactly that ratio (GPU busy time / wall time) for the search and
the plain step of one :data:`compress.benchmarks.STEP_CASES` case.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from compress.benchmarks import STEP_CASES, _StepBench, _synchronizer

#: Rows of each top-ops list in :func:`profile_case`.
TOP_OPS = 12


def _device_us(avg) -> float:
    """Self device time (us) of a profiler average; the attribute was renamed from ``self_cuda_time_total``."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(avg, name):
            return float(getattr(avg, name))
    return 0.0


def _profile(fn: Callable[[], None], steps: int, sync: Callable[[], None], cuda: bool) -> dict:
    """Run ``fn`` ``steps`` times without and then under ``torch.profiler``; per-step wall ms (unprofiled),
    GPU busy ms and kernel launches per step (profiled), and the top ops by self GPU time and by self CPU time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    wall_ms = 1e3 * (time.perf_counter() - t0) / steps
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        sync()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_ms = sum(e.time_range.elapsed_us() for e in kernels) / 1e3 / steps
    # ops only (their self GPU time is the kernels they launched): the kernels' own rows would count it twice
    avgs = [a for a in prof.key_averages() if a.device_type != torch.autograd.DeviceType.CUDA]

    def top(key) -> list[dict]:
        rows = sorted(avgs, key=key, reverse=True)[:TOP_OPS]
        return [{"op": a.key[:80], "calls_per_step": a.count / steps, "self_gpu_ms": _device_us(a) / 1e3 / steps,
                 "self_cpu_ms": a.self_cpu_time_total / 1e3 / steps} for a in rows]

    return {"wall_ms": wall_ms, "gpu_busy_ms": busy_ms, "gpu_busy_share": busy_ms / wall_ms if wall_ms else 0.0,
            "kernels_per_step": len(kernels) / steps,
            "cpu_ops_per_step": sum(a.count for a in avgs) / steps,
            "top_gpu": top(_device_us) if cuda else [], "top_cpu": top(lambda a: a.self_cpu_time_total)}


def profile_case(name: str, device: str = "cuda", steps: int = 5, warmup: int = 5) -> dict:
    """Profile the search step and the plain step of step-cost case ``name`` on ``device``.

    Returns {"case", "device", "search": {...}, "plain": {...}} where each variant holds ``wall_ms`` (ms per step,
    measured without the profiler), ``gpu_busy_ms`` (sum of the kernels' durations per step, ms; 0 without CUDA),
    ``gpu_busy_share`` (busy / wall), ``kernels_per_step``, ``cpu_ops_per_step`` and the top :data:`TOP_OPS` ops by
    self GPU time and by self CPU time (ms per step).

    Raises:
        KeyError: ``name`` is not a case of :data:`compress.benchmarks.STEP_CASES`.
    """
    import torch

    family, preset_name, overrides = STEP_CASES[name]
    with tempfile.TemporaryDirectory(prefix="profile-step-") as tmp:
        b = _StepBench(family, preset_name, overrides, Path(tmp), device=device)
        sync, cuda = _synchronizer(b.device), b.device.type == "cuda"
        for _ in range(warmup):
            b.search_step()
            b.plain_step()
        out = {"case": name, "device": str(b.device), "accel": b.search_tr.accel.describe(),
               "torch_threads": torch.get_num_threads()}
        for variant, fn in (("plain", b.plain_step), ("search", b.search_step)):
            out[variant] = _profile(fn, steps, sync, cuda)
        out["eq4"] = eq4_variants(b.G.hyper, b.device, sync)
    return out


def eq4_variants(hyper, device, sync: Callable[[], None], reps: int = 5) -> dict:
    """Eq. 4 (F = W2 . S + B2, :class:`compress.hyper.hypernetwork.HyperConvWeights`) for every layer of ``hyper``
    (an ``nn.ModuleDict`` of HyperConvWeights), forward + backward to W2, S and B2, in three formulations:
    ``baddbmm`` (the project's, with its hand-written backward), ``einsum`` (autograd's) and ``mul_sum``
    (broadcast product summed over m). Returns {variant: median ms per pass over all layers} and the largest
    difference of each variant's F and dF/dW2 from ``baddbmm``'s (relative to its max |F|)."""
    import torch

    from compress.hyper.hypernetwork import _Eq4, _eq4_elementwise

    formulations = {
        "baddbmm": lambda W2, S, B2: _Eq4.apply(W2, S, B2),
        "einsum": lambda W2, S, B2: torch.einsum("nckm,ncm->nck", W2, S) + B2,
        "mul_sum": _eq4_elementwise,          # what eq4() runs on CUDA
    }
    layers = []
    gen = torch.Generator(device="cpu").manual_seed(0)
    for mod in hyper.values():
        n, c, kk, m = mod.W2.shape
        W2 = mod.W2.detach().clone().requires_grad_(True)
        S = torch.randn(n, c, m, generator=gen).to(device).requires_grad_(True)
        B2 = mod.B2.detach().clone().requires_grad_(True)
        g = torch.randn(n, c, kk, generator=gen).to(device)
        layers.append((W2, S, B2, g))
    results: dict = {"layers": len(layers), "w2_elements": sum(l[0].numel() for l in layers), "ms": {},
                     "max_rel_diff": {}}
    reference = None
    for name, fn in formulations.items():
        def one_pass():
            outs = []
            for W2, S, B2, g in layers:
                for t in (W2, S, B2):
                    t.grad = None
                f = fn(W2, S, B2)
                f.backward(g)
                outs.append(f)
            return outs

        one_pass()                               # warm-up (and cuBLAS handles, allocator)
        times = []
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            outs = one_pass()
            sync()
            times.append(1e3 * (time.perf_counter() - t0))
        results["ms"][name] = statistics.median(times)
        first = (outs[0].detach(), layers[0][0].grad.detach())
        if reference is None:
            reference = first
        scale = reference[0].abs().max().clamp_min(1e-30)
        gscale = reference[1].abs().max().clamp_min(1e-30)
        results["max_rel_diff"][name] = max(float((first[0] - reference[0]).abs().max() / scale),
                                            float((first[1] - reference[1]).abs().max() / gscale))
    return results


def profile_table(rec: dict) -> str:
    """Markdown for one :func:`profile_case` record: the summary and the top ops of each variant."""
    lines = [f"### {rec['case']} on {rec['device']} ({rec['accel']})", "",
             "| variant | wall ms / step | GPU busy ms / step | GPU busy share | kernels / step "
             "| profiled ops / step |",
             "|---|---|---|---|---|---|"]
    for v in ("plain", "search"):
        r = rec[v]
        lines.append(f"| {v} | {r['wall_ms']:.1f} | {r['gpu_busy_ms']:.1f} | {r['gpu_busy_share']:.0%} | "
                     f"{r['kernels_per_step']:.0f} | {r['cpu_ops_per_step']:.0f} |")
    for v in ("plain", "search"):
        for key, label in (("top_gpu", "self GPU"), ("top_cpu", "self CPU")):
            rows = rec[v][key]
            if not rows:
                continue
            lines += ["", f"{v}, top ops by {label} time (ms per step):", "",
                      "| op | calls / step | self GPU ms | self CPU ms |", "|---|---|---|---|"]
            lines += [f"| `{r['op']}` | {r['calls_per_step']:.0f} | {r['self_gpu_ms']:.2f} | {r['self_cpu_ms']:.2f} |"
                      for r in rows]
    eq4 = rec.get("eq4")
    if eq4:
        lines += ["", f"Eq. 4 forward + backward over all {eq4['layers']} layers ({eq4['w2_elements'] / 1e6:.0f} M "
                      "elements of W2), median of 5 passes:", "", "| formulation | ms | max rel. diff from baddbmm |",
                  "|---|---|---|"]
        lines += [f"| {k} | {v:.2f} | {eq4['max_rel_diff'][k]:.1e} |" for k, v in eq4["ms"].items()]
    return "\n".join(lines) + "\n"
