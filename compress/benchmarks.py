"""Benchmarks of the CoroNetGAN search (issue 3 item 8; tables in ``docs/compress.md``).

``python -m compress.benchmarks controllability|step-cost|memory [--quick]`` reproduces each table:

* ``controllability``: for each family x MACs-reduction target, one ``python -m compress`` run on the real
  data (``$CORONETGAN_DATA_MIRROR``), small preset, search stage only (``--converge-steps 1``): achieved
  MACs reduction, params before/after, search iterations and wall time (s). A target not reached within the
  budget is reported as ``budget_exhausted`` (and, with ``--retry-steps N``, rerun with a budget of N steps).
* ``step-cost``: wall time (ms) of one search step (hypernetwork-driven generator, proximal step, MACs
  check) against one plain training step of the same generator, same batch, same machine, measured
  interleaved (A B A B ...) so that the machine's load weighs on both alike; the ratio; and where the
  search step's time goes (manual timers). ``--device cuda`` times both on the GPU with the run's CUDA
  settings (:mod:`compress.accel`: bf16 autocast, channels_last, cuDNN autotuning), synchronising before
  every clock read.
* ``memory``: peak resident memory (MiB, ``ru_maxrss`` of a fresh subprocess) of a few search steps of the
  paper's U-Net-256 (ngf 64, 256 px, batch 4) beside the plain training step, and the parameter /
  gradient / Adam-state sizes (MiB); on a GPU (:func:`memory_worker` with ``device="cuda"``) also
  ``torch.cuda.max_memory_allocated``.

Every command writes ``runs/bench-<name>/results.json`` and ``results.md`` (the table) and prints the table.
Each record carries the machine (CPU model, cores) and the load average (``os.getloadavg``) around it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from compress.errors import InputError
from compress.families import FAMILIES
from compress.step import gan_step

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs"
#: Prefix of the result folders under runs/ (``runs/bench-<name>/``); ``python -m export --latest`` and the
#: single-stage make targets skip the runs inside them (measurements, not a generator to deploy).
RESULTS_PREFIX = "bench-"

#: (family, targets) of the controllability table.
CONTROL_TARGETS = {"pix2pix": (0.5, 0.75, 0.9, 0.95), "cyclegan": (0.5, 0.75, 0.85, 0.9), "dcgan": (0.5, 0.75, 0.9)}


# --- machine ---------------------------------------------------------------------------------------------
def load_average() -> list[float]:
    """1/5/15-minute load averages (processes running or waiting; 2.0 saturates these 2 cores)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict:
    """:func:`compress.machine.describe_machine` plus the torch version and threads; ``gpu`` None without one."""
    import torch

    from compress.machine import describe_machine

    return {"gpu": None, **describe_machine(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def _write(name: str, results: dict, table: str) -> Path:
    from compress.io import atomic_write_json, atomic_write_text

    out = RUNS / f"{RESULTS_PREFIX}{name}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", table)
    return out


# --- (a) controllability ---------------------------------------------------------------------------------
def controllability_run(model: str, target: float, run_dir: Path, search_steps: int | None = None,
                        extra_args: Sequence[str] = (), threads: int = 0) -> dict:
    """One ``python -m compress`` run (small preset, ``--converge-steps 1``) in a subprocess.

    Returns a row: achieved MACs reduction (fraction), status (reached | overshoot | budget_exhausted),
    search steps used and the step the masks froze at, search seconds (s, the trainer's own timer), process
    wall time (s), params/MACs before and after, and the load average before and after.
    """
    cmd = [sys.executable, "-m", "compress", "--model", model, "--preset", "small", "--target", str(target),
           "--converge-steps", "1", "--run-dir", str(run_dir), *extra_args]
    if search_steps:
        cmd += ["--search-steps", str(search_steps)]
    load_before = load_average()
    t0 = time.perf_counter()
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"model": model, "target": target, "run_dir": str(run_dir), "command": " ".join(cmd[1:]),
                           "returncode": proc.returncode, "wall_s": wall, "load_before": load_before,
                           "load_after": load_average()}
    report_path = run_dir / "compression_report.json"
    if proc.returncode != 0 or not report_path.is_file():
        row.update(status="failed", stderr_tail=proc.stderr[-2000:])
        return row
    rep = json.loads(report_path.read_text())
    st = rep["search"]["status"]["G"]
    row.update(status=st["status"], achieved=rep["achieved_macs_reduction"], frozen_at_step=st["step"],
               search_steps=rep["search"]["steps"], search_budget=json.loads((run_dir / "config.json").read_text())
               ["search_steps"], search_s=rep["seconds"].get("search", 0.0),
               params_before=rep["original"]["params"], params_after=rep["pruned"]["params"],
               macs_before=rep["original"]["macs"], macs_after=rep["pruned"]["macs"],
               check_interval=json.loads((run_dir / "config.json").read_text())["check_interval"],
               gap_db=rep.get("materialization_gap_db"), layers=rep.get("layers", []),
               floors=rep["search"].get("floors", {}),
               above_threshold=rep["search"].get("latent_entries_above_threshold", {}))
    return row


def controllability(quick: bool = False, retry_steps: int = 0, out_name: str = "controllability",
                    targets: dict | None = None, threads: int = 0) -> dict:
    """Run the controllability table (11 runs; ``quick``: DCGAN at 0.5 with a 10-step budget).

    Args:
        retry_steps: when > 0, a run that ends ``budget_exhausted`` is rerun with this search budget (steps);
            both rows are kept.
    """
    targets = targets or ({"dcgan": (0.5,)} if quick else CONTROL_TARGETS)
    base = RUNS / f"{RESULTS_PREFIX}{out_name}"
    rows = []
    for model, ts in targets.items():
        for t in ts:
            run_dir = base / f"{model}-{int(round(t * 100))}"
            _clear_run(run_dir)
            row = controllability_run(model, t, run_dir, search_steps=10 if quick else None, threads=threads)
            rows.append(row)
            print(_control_line(row), flush=True)
            if row["status"] == "budget_exhausted" and retry_steps > 0:
                run_dir = base / f"{model}-{int(round(t * 100))}-retry{retry_steps}"
                _clear_run(run_dir)
                row = controllability_run(model, t, run_dir, search_steps=retry_steps, threads=threads)
                row["retry"] = True
                rows.append(row)
                print(_control_line(row), flush=True)
    results = {"kind": "controllability", "quick": quick, "machine": machine(), "rows": rows,
               "threads": threads or "default",
               "note": "small preset, search stage only (--converge-steps 1), real data from $CORONETGAN_DATA_MIRROR"}
    table = controllability_table(results) + "\n" + allocation_table(results)
    _write(out_name, results, table)
    print(table)
    return results


def _clear_run(run_dir: Path) -> None:
    import shutil

    if run_dir.exists():
        shutil.rmtree(run_dir)


def _control_line(r: dict) -> str:
    if r["status"] == "failed":
        return f"{r['model']} {r['target']}: FAILED (rc {r['returncode']})\n{r.get('stderr_tail', '')}"
    return (f"{r['model']} {r['target']}: {r['status']} {r['achieved']:.4f} at step {r['frozen_at_step']} "
            f"(budget {r['search_budget']}), search {r['search_s']:.1f} s, wall {r['wall_s']:.1f} s, "
            f"load {r['load_before']} -> {r['load_after']}")


def _gap(r: dict) -> str:
    if "gap_db" not in r:
        return "-"
    return "identical" if r["gap_db"] is None else f"{r['gap_db']:.0f}"


def controllability_table(results: dict) -> str:
    """Markdown table of :func:`controllability` results (MACs reduction as a fraction, times in s, the
    materialisation gap in dB of PSNR)."""
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, torch threads per run: "
             f"{results.get('threads', 'default')}, GPU: {m['gpu'] or 'none'}. {results['note']}.", "",
             "| family | target | achieved MACs reduction | off by (points) | status | search steps (frozen at / "
             "budget) | search s | process wall s | params before -> after | MACs before -> after | "
             "materialisation gap dB | load 1-min before/after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        if r["status"] == "failed":
            lines.append(f"| {r['model']} | {r['target']:.2f} | - | - | FAILED (rc {r['returncode']}) | | | "
                         f"{r['wall_s']:.0f} | | | | |")
            continue
        label = r["status"].replace("_", " ") + (" (rerun, larger budget)" if r.get("retry") else "")
        lines.append(
            f"| {r['model']} | {r['target']:.2f} | {r['achieved']:.3f} | {100 * (r['achieved'] - r['target']):+.2f} | "
            f"{label} | {r['frozen_at_step']} / "
            f"{r['search_budget']} | {r['search_s']:.1f} | {r['wall_s']:.1f} | {r['params_before'] / 1e6:.3f} M -> "
            f"{r['params_after'] / 1e6:.3f} M | {r['macs_before'] / 1e6:.1f} M -> {r['macs_after'] / 1e6:.1f} M | "
            f"{_gap(r)} | {(r['load_before'] or ['?'])[0]} / {(r['load_after'] or ['?'])[0]} |")
    return "\n".join(lines) + "\n"


def allocation_table(results: dict) -> str:
    """Per-layer allocation of the rows the paper reports a remaining-parameter fraction for
    (``paper_params_remaining`` of :class:`compress.families.Family`): kept / original output channels and the layer's share of the pruned
    generator's MACs, beside the remaining parameters (ours vs the paper's)."""
    out = []
    for r in results["rows"]:
        family = FAMILIES.get(r["model"])
        paper = family.paper_params_remaining.get(r["target"]) if family is not None else None
        if paper is None or r["status"] == "failed" or not r.get("layers"):
            continue
        ours = r["params_after"] / r["params_before"]
        out += [f"### {r['model']} {r['target']:.0%}: {ours:.1%} of the parameters remain (paper: {paper:.1%})", "",
                "| layer | out channels kept / original | kept | share of the pruned MACs |", "|---|---|---|---|"]
        out += [f"| {l['layer']} | {l['out_channels']} / {l['original_out']} | "
                f"{l['out_channels'] / l['original_out']:.0%} | {l.get('macs_share', 0):.1%} |" for l in r["layers"]]
        out.append("")
    return "\n".join(out)


# --- (b) step cost ---------------------------------------------------------------------------------------
#: name -> (family, preset, overrides). Small-preset cases and the paper-size generators.
STEP_CASES: dict[str, tuple[str, str, dict]] = {
    "cyclegan-small": ("cyclegan", "small", {}),
    "pix2pix-small": ("pix2pix", "small", {}),
    "dcgan-small": ("dcgan", "small", {}),
    "pix2pix-unet256-b4": ("pix2pix", "paper", {}),
    "cyclegan-resnet9-b1": ("cyclegan", "paper", {}),
}
#: Timing rounds of the paper-size cases on a CPU (seconds to a minute per step on 2 shared cores: few rounds).
CPU_PAPER_ROUNDS = {"pix2pix-unet256-b4": 3, "cyclegan-resnet9-b1": 2}


def _synchronizer(device) -> Callable[[], None]:
    """What to call before reading the clock: ``torch.cuda.synchronize`` on CUDA (kernels run asynchronously),
    nothing elsewhere."""
    import torch

    if torch.device(device).type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class _Timers:
    """Accumulating wall-clock timers (s); ``sync`` is called before each clock read (:func:`_synchronizer`)."""

    def __init__(self, sync: Callable[[], None] = lambda: None):
        self.t: dict[str, float] = {}
        self.sync = sync

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - t0


class _StepBench:
    """One family's two variants, search and plain, with their own networks, optimizers and recipe.

    The search variant does what ``Trainer._search`` does per step: :func:`compress.step.gan_step` with the controller
    (generator through the hypernetwork, discriminator, both Adam steps, proximal step), the controller's
    interval check and the per-step ``reductions()`` (masks + MACs) for the progress bar. Logging,
    samples and checkpoints (every 10/100/100 steps) are left out. The plain variant is
    ``gan_step`` without a controller, with the unpruned plain generator: ordinary GAN training.
    Both use the same fixed batch (one real batch from the dataset), so data loading is not timed. On
    ``device`` (default the CPU) both run with the trainer's settings for it (:mod:`compress.accel`).
    """

    def __init__(self, family: str, preset_name: str, overrides: dict, workdir: Path, seed: int = 0,
                 device: str = "cpu"):
        import torch

        from compress.data.stream import to_device
        from compress.config import RunConfig, preset
        from compress.trainer import Trainer

        torch.manual_seed(seed)
        values = {"model": family, "preset": preset_name, **preset(family, preset_name), "device": device,
                  **overrides}
        cfg = RunConfig(**values).validate()
        self.cfg = cfg
        self.search_tr = Trainer(cfg, workdir / "search")
        self.plain_tr = Trainer(cfg, workdir / "plain")
        ds = self.search_tr.family.dataset(cfg, train=True)
        items = [ds[i] for i in range(cfg.batch_size)]
        self.device = self.search_tr.device
        self.batch = self.search_tr.accel.prepare_batch(to_device(torch.utils.data.default_collate(items),
                                                                  self.device))
        # search variant
        tr = self.search_tr
        self.G, self.D, self.extra = tr.build_search_networks()
        self.opt_G, self.opt_D = tr.build_optimizers(self.G, self.D, self.extra, cfg.latent_lr)
        self.step_count = 0
        # plain variant: same generator class at full width, its own D and extra networks
        tr = self.plain_tr
        self.Gp = tr.recipe.make_generator().to(self.device)
        self.Dp = tr.recipe.make_discriminator().to(self.device)
        self.extra_p = {k: v.to(self.device) for k, v in tr.recipe.extra_networks().items()}
        self.opt_Gp, self.opt_Dp = tr.build_optimizers(self.Gp, self.Dp, self.extra_p, None)

    def search_step(self, fused: bool = False) -> None:
        tr = self.search_tr
        opt_G, opt_D = (self._fused("search") if fused else (self.opt_G, self.opt_D))
        gan_step(tr.recipe, self.batch, self.G, self.D, self.extra, opt_G, opt_D, controller=tr.controller,
                 hooks=tr.hooks)
        self.step_count += 1
        tr.controller.maybe_check(self.step_count)
        tr.controller.reductions()

    def plain_step(self, fused: bool = False) -> None:
        opt_G, opt_D = (self._fused("plain") if fused else (self.opt_Gp, self.opt_Dp))
        gan_step(self.plain_tr.recipe, self.batch, self.Gp, self.Dp, self.extra_p, opt_G, opt_D,
                 hooks=self.plain_tr.hooks)

    def _fused(self, variant: str):
        """Copies of a variant's two optimizers with ``fused=True`` (same groups, own state): what the step
        would cost if the trainer built its Adam optimizers fused."""
        import torch

        cache = self.__dict__.setdefault("_fused_opts", {})
        if variant not in cache:
            opts = (self.opt_G, self.opt_D) if variant == "search" else (self.opt_Gp, self.opt_Dp)
            cache[variant] = tuple(torch.optim.Adam([{k: g[k] for k in ("params", "lr", "betas", "name") if k in g}
                                                     for g in o.param_groups], fused=True) for o in opts)
        return cache[variant]

    def sizes(self) -> dict:
        """Parameter counts: plain generator, hypernetwork (all HyperConvWeights), latent vectors, and the
        optimizers' state (elements) of both variants."""
        from compress.macs import count_params

        def adam_elems(opt):
            return sum(t.numel() for s in opt.state.values() for t in s.values() if hasattr(t, "numel") and t.dim() > 0)

        return {"generator_params": count_params(self.Gp),
                "hypernetwork_params": count_params(self.G.hyper),
                "latent_params": count_params(self.G.latent_vectors),
                "search_G_trainable": sum(p.numel() for p in self.G.search_parameters()),
                "adam_state_G_search": adam_elems(self.opt_G), "adam_state_G_plain": adam_elems(self.opt_Gp)}

    def breakdown(self, steps: int) -> dict:
        """Mean seconds per search step spent in each phase (timers inside :func:`compress.step.gan_step` and
        around the forward passes and the controller calls), plus isolated measurements of the hypernetwork's
        weight generation forward and forward+backward, and of Adam on the hypernetwork parameters."""
        import torch

        tm = _Timers(_synchronizer(self.device))
        tr, r = self.search_tr, self.search_tr.recipe
        G, D = self.G, self.D
        orig_gen = G.generated_weights

        def timed_gen(*a, **k):
            with tm("hyper: weight generation forward (eqs. 1-4)"):
                return orig_gen(*a, **k)

        class _Timed(torch.nn.Module):
            def __init__(self, net, label):
                super().__init__()
                self.net, self.label = net, label

            def forward(self, x, *a, **k):
                with tm(self.label):
                    return self.net(x, *a, **k)

        G.generated_weights = timed_gen
        Gt = _Timed(G, "G forward (incl. weight generation)")
        Dt = _Timed(D, "D forward")
        extra = {k: _Timed(v, "D forward" if k.startswith("D") else "other G forward (CycleGAN G_B)")
                 for k, v in self.extra.items()}
        try:
            for _ in range(steps):
                gan_step(r, self.batch, Gt, Dt, extra, self.opt_G, self.opt_D, controller=tr.controller, timer=tm,
                         hooks=tr.hooks)
                self.step_count += 1
                with tm("masks + MACs check"):
                    tr.controller.maybe_check(self.step_count)
                    tr.controller.reductions()
        finally:
            del G.generated_weights
        per_step = {k: v / steps for k, v in tm.t.items()}
        # isolated: weight generation fwd and fwd+bwd (no generator), Adam on the hypernetwork alone
        iso = _Timers(_synchronizer(self.device))
        n_iso = max(2, min(steps, 3))
        for _ in range(n_iso):
            with iso("hyper fwd"):
                ws = G.generated_weights()
            grads = [torch.randn_like(w) for w in ws.values()]
            with iso("hyper bwd"):
                torch.autograd.backward(list(ws.values()), grads)
        # Adam: the trainer's own opt_G (hypernetworks + latent vectors + norm/bias, and CycleGAN's G_B),
        # stepped alone on the gradients left by the last backward
        for _ in range(n_iso):
            with iso("trainer opt_G step"):
                self.opt_G.step()
        hyper_params = list(G.hyper.parameters())
        if sum(p.numel() for p in hyper_params) < 100_000_000:   # a fused copy doubles the Adam state in memory
            opt_f = torch.optim.Adam(hyper_params, lr=1e-9, betas=(0.5, 0.999), fused=True)
            opt_f.step()
            for _ in range(n_iso):
                with iso("Adam fused=True on hypernetwork params"):
                    opt_f.step()
            del opt_f
        for p in hyper_params:
            p.grad = None
        n_calls = self.search_tr.family.generator_calls_per_step
        isolated = {k: v / n_iso for k, v in iso.t.items()}
        isolated["generator calls per step"] = n_calls
        # the networks the recipe trains beside G that opt_G also steps (GANRecipe.extra_networks: ``G*`` names)
        also_in_opt_g = sorted(k for k in self.extra if k.startswith("G"))
        return {"per_step_s": per_step, "isolated_s": isolated, "opt_G_also_steps": also_in_opt_g}


def _interleaved(fns: Sequence[Callable[[], None]], rounds: int, per_round: int,
                 sync: Callable[[], None] = lambda: None) -> list[list[float]]:
    """Time the callables alternately (A B A B ..., or A B C A B C ...): ``rounds`` blocks of ``per_round``
    calls each, ``sync`` called before each clock read. Returns, per callable, the mean seconds per call of
    every block."""
    out: list[list[float]] = [[] for _ in fns]
    for i in range(rounds):
        for f, acc in zip(fns, out):
            sync()
            t0 = time.perf_counter()
            for _ in range(per_round):
                f()
            sync()
            acc.append((time.perf_counter() - t0) / per_round)
        print(f"  round {i + 1}/{rounds}: " + ", ".join(f"{1e3 * acc[-1]:.0f} ms" for acc in out)
              + f", load {load_average()}", flush=True)
    return out


def step_cost_case(name: str, rounds: int, per_round: int, breakdown_steps: int, warmup: int = 2,
                   compare_no_reuse: bool | None = None, compare_fused: bool = False, device: str = "cpu",
                   settings: dict | None = None) -> dict:
    """Measure one case of :data:`STEP_CASES`: ms per search step and per plain step, interleaved, the
    ratio, and the breakdown of the search step. ``compare_no_reuse`` (default: for families that call
    the compressed generator several times per step, i.e. CycleGAN) also times the search step with
    ``HyperNetwork.reuse_weights = False`` (weights generated at every call, without the per-step weight cache).
    ``compare_fused`` also times both steps with fresh ``torch.optim.Adam(fused=True)`` copies of the optimizers
    (the trainer's own are fused too since issue 18; the comparison is kept for older records). ``device``: where both
    steps run (``cuda``: with the trainer's CUDA settings). ``settings``: RunConfig fields set on top of the
    case's (e.g. ``{"channels_last": False}``)."""
    import torch

    from compress.families import get_family

    family, preset_name, overrides = STEP_CASES[name]
    if compare_no_reuse is None:
        compare_no_reuse = get_family(family).generator_calls_per_step > 1
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        b = _StepBench(family, preset_name, {**overrides, **(settings or {})}, Path(tmp), device=device)

        def search_no_reuse():
            b.G.reuse_weights = False
            try:
                b.search_step()
            finally:
                b.G.reuse_weights = True

        fns = [b.search_step, b.plain_step] + ([search_no_reuse] if compare_no_reuse else [])
        if compare_fused:
            fns += [lambda: b.search_step(fused=True), lambda: b.plain_step(fused=True)]
        print(f"{name}: built, warming up", flush=True)
        for _ in range(warmup):
            for f in fns:
                f()
        load_before = load_average()
        times = _interleaved(fns, rounds, per_round, _synchronizer(b.device))
        load_after = load_average()
        bd = b.breakdown(breakdown_steps) if breakdown_steps else None
        sizes = b.sizes()
    ts, tp = times[0], times[1]
    ratios = [s / p for s, p in zip(ts, tp)]
    cfg = b.cfg
    row = {"case": name, "family": family, "preset": preset_name, "batch": cfg.batch_size,
           "image_size": cfg.image_size, "generator": cfg.generator, "rounds": rounds, "per_round": per_round,
           "search_ms": [1e3 * t for t in ts], "plain_ms": [1e3 * t for t in tp],
           "search_ms_median": 1e3 * statistics.median(ts), "plain_ms_median": 1e3 * statistics.median(tp),
           "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
           "load_before": load_before, "load_after": load_after, "breakdown": bd, "sizes": sizes,
           "threads": torch.get_num_threads(), "device": str(b.device), "accel": b.search_tr.accel.describe()}
    if compare_fused:
        tsf, tpf = times[-2], times[-1]
        rf = [a / c for a, c in zip(tsf, tpf)]
        row.update(fused_search_ms_median=1e3 * statistics.median(tsf), fused_plain_ms_median=1e3 * statistics.median(tpf),
                   fused_ratio_median=statistics.median(rf), fused_ratio_min=min(rf), fused_ratio_max=max(rf))
    if compare_no_reuse:
        tn = times[2]
        rn = [s / p for s, p in zip(tn, tp)]
        row.update(search_no_reuse_ms=[1e3 * t for t in tn], search_no_reuse_ms_median=1e3 * statistics.median(tn),
                   ratio_no_reuse_median=statistics.median(rn), ratio_no_reuse_min=min(rn),
                   ratio_no_reuse_max=max(rn))
    return row


def step_cost_rows(quick: bool = False, cases: Sequence[str] | None = None, compare_fused: bool = False,
                   device: str = "cpu", settings: dict | None = None) -> list[dict]:
    """One :func:`step_cost_case` row per case (default: every case of :data:`STEP_CASES`; ``quick``: DCGAN small
    only, 2 rounds of 1 step), each printed as it is measured. On CUDA (tens of ms per step) every case runs
    5 rounds of 10 steps after 5 warm-up steps (cuDNN autotuning, the allocator), with a 5-step breakdown."""
    import torch

    if cases is None:
        cases = ["dcgan-small"] if quick else list(STEP_CASES)
    rows = []
    for name in cases:
        paper = STEP_CASES[name][1] == "paper"
        if quick:
            rounds, per_round, bd, warmup = 2, 1, 1, 1
        elif torch.device(device).type == "cuda":
            rounds, per_round, bd, warmup = 5, 10, 5, 5
        elif paper:
            rounds, per_round, bd, warmup = CPU_PAPER_ROUNDS.get(name, 2), 1, 1, 1
        else:
            rounds, per_round, bd, warmup = 4, 2, 3, 2
        row = step_cost_case(name, rounds, per_round, bd, warmup=warmup, compare_fused=compare_fused, device=device,
                             settings=settings)
        rows.append(row)
        print(f"{name}: search {row['search_ms_median']:.1f} ms, plain {row['plain_ms_median']:.1f} ms, "
              f"ratio {row['ratio_median']:.2f} [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}], load "
              f"{row['load_before']} -> {row['load_after']}"
              + (f"; without weight reuse {row['search_no_reuse_ms_median']:.1f} ms, ratio "
                 f"{row['ratio_no_reuse_median']:.2f}" if "search_no_reuse_ms" in row else ""), flush=True)
    return rows


def step_cost(quick: bool = False, cases: Sequence[str] | None = None, tag: str = "",
              out_name: str = "step-cost", compare_fused: bool = False, device: str = "cpu",
              settings: dict | None = None) -> dict:
    """The step-cost table (:func:`step_cost_rows`): small-preset CycleGAN, Pix2Pix, DCGAN, and the paper-size
    U-Net-256 (batch 4) and ResNet-9 (batch 1) at 256 px, on ``device`` (``settings``: RunConfig fields set on
    every case); written to ``runs/bench-<out_name>/``."""
    rows = step_cost_rows(quick, cases, compare_fused, device, settings)
    results = {"kind": "step-cost", "quick": quick, "tag": tag, "machine": machine(), "rows": rows,
               "device": device, "settings": settings or {}}
    table = step_cost_table(results)
    _write(out_name, results, table)
    print(table)
    return results


def step_cost_table(results: dict) -> str:
    """Markdown tables of :func:`step_cost` results: ms per step and ratio, then the breakdown."""
    m = results["machine"]
    rows = results["rows"]
    on = (f" Steps timed on {rows[0]['device']} ({rows[0]['accel']})." if rows and rows[0].get("device", "cpu") != "cpu"
          else "")
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
             f"GPU: {m['gpu'] or 'none (CPU only)'}.{on}{' ' + results['tag'] if results.get('tag') else ''}", "",
             "| case | batch | px | search step ms (median) | plain step ms (median) | ratio median [min-max] | "
             "before: search ms / ratio without weight reuse | rounds x steps | G params | hypernetwork params | "
             "threads | load 1-min before/after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        s = r["sizes"]
        lines.append(f"| {r['case']} | {r['batch']} | {r['image_size']} | {r['search_ms_median']:.1f} | "
                     f"{r['plain_ms_median']:.1f} | **{r['ratio_median']:.2f}** [{r['ratio_min']:.2f}-"
                     f"{r['ratio_max']:.2f}] | "
                     + (f"{r['search_no_reuse_ms_median']:.1f} / {r['ratio_no_reuse_median']:.2f} [{r['ratio_no_reuse_min']:.2f}-"
                        f"{r['ratio_no_reuse_max']:.2f}]" if "search_no_reuse_ms" in r else "same (1 generator call per step)")
                     + f" | {r['rounds']} x {r['per_round']} | {s['generator_params'] / 1e6:.3f} M | "
                     f"{s['hypernetwork_params'] / 1e6:.2f} M | {r['threads']} | {(r['load_before'] or ['?'])[0]} / "
                     f"{(r['load_after'] or ['?'])[0]} |")
    fused = [r for r in results["rows"] if "fused_ratio_median" in r]
    if fused:
        lines += ["", "With `torch.optim.Adam(fused=True)` for both variants (not what the trainer does today):", "",
                  "| case | search step ms | plain step ms | ratio median [min-max] |", "|---|---|---|---|"]
        lines += [f"| {r['case']} | {r['fused_search_ms_median']:.1f} | {r['fused_plain_ms_median']:.1f} | "
                  f"**{r['fused_ratio_median']:.2f}** [{r['fused_ratio_min']:.2f}-{r['fused_ratio_max']:.2f}] |"
                  for r in fused]
    for r in results["rows"]:
        bd = r.get("breakdown")
        if not bd:
            continue
        total = sum(v for k, v in bd["per_step_s"].items() if not k.startswith("hyper:"))
        lines += ["", f"Where the search step's time goes, {r['case']} (ms per step, manual timers; "
                      f"sum of timed phases {1e3 * total:.1f} ms):", "", "| phase | ms | share |", "|---|---|---|"]
        for k, v in sorted(bd["per_step_s"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {k} | {1e3 * v:.1f} | {v / total:.0%} |")
        iso = bd["isolated_s"]
        lines.append(f"| isolated: weight generation forward, once | {1e3 * iso['hyper fwd']:.1f} | "
                     f"x {iso['generator calls per step']} calls per step |")
        lines.append(f"| isolated: weight generation backward, once | {1e3 * iso['hyper bwd']:.1f} | |")
        if "trainer opt_G step" in iso:
            lines.append(f"| isolated: the trainer's Adam of G (fused; hypernetworks + "
                         f"latents{''.join(' + ' + k for k in bd.get('opt_G_also_steps', []))}) | "
                         f"{1e3 * iso['trainer opt_G step']:.1f} | |")
        if "Adam on hypernetwork params" in iso:
            lines.append(f"| isolated: default Adam (single-tensor loop on the CPU) on the hypernetwork parameters | "
                         f"{1e3 * iso['Adam on hypernetwork params']:.1f} | |")
        if "Adam fused=True on hypernetwork params" in iso:
            lines.append(f"| isolated: Adam fused=True on the hypernetwork parameters | "
                         f"{1e3 * iso['Adam fused=True on hypernetwork params']:.1f} | |")
    return "\n".join(lines) + "\n"


# --- (c) memory ------------------------------------------------------------------------------------------
def _rss_mib() -> float:
    """Peak resident set size of this process so far (MiB; ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return float("nan")


def memory_worker(variant: str, steps: int, family: str, preset_name: str, overrides: dict,
                  device: str = "cpu") -> dict:
    """In a fresh process: build one variant (``search`` or ``plain``), run ``steps`` steps, report
    peak RSS (MiB) after imports, after building and after the steps, and the tensor sizes (MiB). On CUDA
    (``device``, with the trainer's CUDA settings) also the peak GPU memory, ``torch.cuda.max_memory_allocated``
    (MiB), after building and after the steps."""
    import torch

    from compress.data.stream import to_device
    from compress.config import RunConfig, preset
    from compress.trainer import Trainer

    mib = lambda n: n * 4 / 2**20  # noqa: E731  float32 elements -> MiB
    rss_import = _rss_mib()
    torch.manual_seed(0)
    cfg = RunConfig(**{"model": family, "preset": preset_name, **preset(family, preset_name), "device": device,
                       **overrides}).validate()
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        tr = Trainer(cfg, Path(tmp))
        cuda = tr.device.type == "cuda"
        sync = _synchronizer(tr.device)
        ds = tr.family.dataset(cfg, train=True)
        batch = tr.accel.prepare_batch(to_device(torch.utils.data.default_collate(
            [ds[i] for i in range(cfg.batch_size)]), tr.device))
        if variant == "search":
            G, D, extra = tr.build_search_networks()
            opt_G, opt_D = tr.build_optimizers(G, D, extra, cfg.latent_lr)
            g_trainable = sum(p.numel() for p in G.search_parameters())
            hyper = sum(p.numel() for p in G.hyper.parameters())
            gen = sum(p.numel() for p in G.network.parameters())
        else:
            G, D = tr.recipe.make_generator().to(tr.device), tr.recipe.make_discriminator().to(tr.device)
            extra = {k: v.to(tr.device) for k, v in tr.recipe.extra_networks().items()}
            opt_G, opt_D = tr.build_optimizers(G, D, extra, None)
            g_trainable = gen = sum(p.numel() for p in G.parameters())
            hyper = 0
        rss_built = _rss_mib()
        gpu_built = torch.cuda.max_memory_allocated(tr.device) / 2**20 if cuda else None
        times = []
        for i in range(steps):
            sync()
            t0 = time.perf_counter()
            gan_step(tr.recipe, batch, G, D, extra, opt_G, opt_D,
                     controller=tr.controller if variant == "search" else None, hooks=tr.hooks)
            if variant == "search":
                tr.controller.maybe_check(i + 1)
                tr.controller.reductions()
            sync()
            times.append(time.perf_counter() - t0)
        adam = sum(t.numel() for s in opt_G.state.values() for t in s.values() if hasattr(t, "numel") and t.dim() > 0)
        trained = G.search_parameters() if variant == "search" else G.parameters()
        grads = sum(p.grad.numel() for p in trained if p.grad is not None)  # measured, after the last step
        d_params = sum(p.numel() for p in D.parameters())
    return {"variant": variant, "steps": steps, "step_s": times, "peak_rss_after_import_mib": rss_import,
            "peak_rss_after_build_mib": rss_built, "peak_rss_mib": _rss_mib(), "rss_now_mib": _current_rss_mib(),
            "generator_params": gen, "hypernetwork_params": hyper, "G_trainable_params": g_trainable,
            "G_trainable_mib": mib(g_trainable), "G_grad_mib": mib(grads), "G_adam_state_mib": mib(adam),
            "D_params": d_params, "batch": cfg.batch_size, "image_size": cfg.image_size, "generator": cfg.generator,
            "load": load_average(), "device": str(tr.device), "accel": tr.accel.describe(),
            "gpu_peak_after_build_mib": gpu_built,
            "gpu_peak_mib": torch.cuda.max_memory_allocated(tr.device) / 2**20 if cuda else None}


def memory_row(variant: str, steps: int, family: str, preset_name: str, overrides: dict, device: str = "cpu",
               threads: int = 0) -> dict:
    """:func:`memory_worker` in a fresh ``python -m compress.benchmarks _memory-worker`` process (its peak RSS and
    GPU peak are this variant's alone); adds ``wall_s`` (s).

    Raises:
        RuntimeError: the worker failed (its stderr tail in the message).
    """
    spec = json.dumps({"variant": variant, "steps": steps, "family": family, "preset_name": preset_name,
                       "overrides": overrides, "device": device})
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or 1)}   # peak memory does not depend on it
    proc = subprocess.run([sys.executable, "-m", "compress.benchmarks", "_memory-worker", spec], cwd=REPO,
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker {variant} failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["wall_s"] = time.perf_counter() - t0
    return row


def memory(quick: bool = False, steps: int = 3, threads: int = 0) -> dict:
    """Peak RSS (MiB) of a U-Net-256 (paper: ngf 64, 256 px, batch 4) search vs plain training, each in a
    fresh subprocess, plain and search alternated. ``quick``: the small-preset Pix2Pix, 1 step."""
    if quick:
        family, preset_name, overrides, steps = "pix2pix", "small", {}, 1
    else:
        family, preset_name, overrides = "pix2pix", "paper", {}
    rows = []
    for variant in ("plain", "search"):
        row = memory_row(variant, steps, family, preset_name, overrides, threads=threads)
        rows.append(row)
        print(f"{variant}: peak RSS {row['peak_rss_mib']:.0f} MiB, steps {[round(s, 2) for s in row['step_s']]} s, "
              f"load {row['load']}", flush=True)
    results = {"kind": "memory", "quick": quick, "machine": machine(), "rows": rows, "threads": threads or 1}
    table = memory_table(results)
    _write("memory" if not quick else "memory-quick", results, table)
    print(table)
    return results


def memory_table(results: dict) -> str:
    """Markdown table of :func:`memory` results (MiB)."""
    m = results["machine"]
    r0 = results["rows"][0]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; GPU: {m['gpu'] or 'none'} "
             f"(on a GPU the figure would be torch.cuda.max_memory_allocated). Generator {r0['generator']}, "
             f"{r0['image_size']} px, batch {r0['batch']}; each variant in a fresh process.", "",
             "| variant | steps | s per step | peak RSS after import MiB | after build MiB | **peak RSS MiB** | "
             "G params | hypernetwork params | G-side trainable MiB | grads MiB | Adam state MiB | load 1-min |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(
            f"| {r['variant']} | {r['steps']} | {', '.join(f'{s:.1f}' for s in r['step_s'])} | "
            f"{r['peak_rss_after_import_mib']:.0f} | {r['peak_rss_after_build_mib']:.0f} | **{r['peak_rss_mib']:.0f}** | "
            f"{r['generator_params'] / 1e6:.2f} M | {r['hypernetwork_params'] / 1e6:.1f} M | "
            f"{r['G_trainable_mib']:.0f} | {r['G_grad_mib']:.0f} | {r['G_adam_state_mib']:.0f} | "
            f"{(r['load'] or ['?'])[0]} |")
    if len(results["rows"]) == 2:
        p, s = results["rows"]
        lines += ["", f"Search / plain peak RSS: {s['peak_rss_mib'] / p['peak_rss_mib']:.2f}x "
                      f"(+{s['peak_rss_mib'] - p['peak_rss_mib']:.0f} MiB); hypernetwork / generator params: "
                      f"{s['hypernetwork_params'] / s['generator_params']:.2f}x."]
    return "\n".join(lines) + "\n"


# --- CLI -------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m compress.benchmarks WHAT``: the search's controllability, step-cost or memory benchmark
    (module docstring); writes its results folder and prints the table. Returns the exit status (2: bad
    input, said in one line)."""
    p = argparse.ArgumentParser(prog="python -m compress.benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("controllability", "step-cost", "memory", "_memory-worker"))
    p.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="a seconds-long version (tests, smoke checks)")
    p.add_argument("--retry-steps", type=int, default=0,
                   help="controllability: rerun a budget_exhausted target with this search budget (steps)")
    p.add_argument("--cases", help=f"step-cost: comma-separated subset of {', '.join(STEP_CASES)}")
    p.add_argument("--fused", action="store_true",
                   help="step-cost: also time both steps with Adam(fused=True) optimizers")
    p.add_argument("--no-channels-last", action="store_true",
                   help="step-cost: run both steps in NCHW memory (RunConfig channels_last=False; on CUDA the "
                        "default is channels_last)")
    p.add_argument("--tag", default="", help="step-cost: a note stored with the results (e.g. 'before')")
    p.add_argument("--out", help="results folder name under runs/ (default bench-<what>)")
    p.add_argument("--steps", type=int, default=3, help="memory: search/plain steps per process")
    p.add_argument("--device", default="cpu",
                   help="step-cost: where both steps run, cpu (default) or cuda[:N] (with the CUDA settings of "
                        "compress/accel.py)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (step-cost: torch.set_num_threads; controllability: OMP_NUM_THREADS of the "
                        "runs; default: torch's choice, the core count)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.environ.setdefault("CORONETGAN_DATA_MIRROR", str(REPO.parent / "shared" / "data"))
    if args.what == "_memory-worker":
        spec = json.loads(args.spec)
        print(json.dumps(memory_worker(**spec)))
        return 0
    if args.what == "controllability":
        controllability(args.quick, args.retry_steps,
                        out_name=(args.out or "controllability") + ("-quick" if args.quick else ""),
                        threads=args.threads)
    elif args.what == "step-cost":
        cases = args.cases.split(",") if args.cases else None
        if cases:
            bad = [c for c in cases if c not in STEP_CASES]
            if bad:
                print(f"error: --cases {','.join(bad)}: expected names from {', '.join(STEP_CASES)}", file=sys.stderr)
                return 2
        try:
            from compress.trainer import pick_device

            pick_device(args.device)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        step_cost(args.quick, cases, args.tag, out_name=(args.out or "step-cost") + ("-quick" if args.quick else ""),
                  compare_fused=args.fused, device=args.device,
                  settings={"channels_last": False} if args.no_channels_last else None)
    else:
        memory(args.quick, args.steps, args.threads)
    return 0


if __name__ == "__main__":
    from compress.cli_errors import run_cli

    raise SystemExit(run_cli(main))
