"""Simple baselines at equal MACs and equal training budget (issue: honest comparisons).

* ``unpruned``: the full generator, trained from scratch with the same recipe.
* ``uniform``: every prunable layer narrowed by the same factor until the MACs match the CoroNetGAN run
  (the student shape of OMGD and GAN Compression, e.g. ngf 16 for ResNet-9), trained from scratch, no teacher.
* ``random``: the per-layer channel counts that CoroNetGAN found, but the channels chosen at random from the
  hypernetwork at initialisation (no search), then the same training: the paper's "random pruning" baseline
  for DCGAN. The difference to CoroNetGAN is only *which* channels the search kept and what it learnt.

Equal budget: a baseline trains for the CoroNetGAN run's search steps plus its converging steps.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from compress.errors import InputError
from compress.io import read_json
from compress.hyper import HyperNetwork, materialize
from compress.macs import MacsModel
from compress.models.base import FIXED_LATENTS, PrunableNetwork

BASELINES = ("unpruned", "uniform", "random")


def load_reference(run_dir: str | Path) -> dict:
    """The compression report of a finished CoroNetGAN run (for its MACs, channels and budget).

    Raises:
        InputError: the folder has no ``compression_report.json``, or one that is not JSON or lacks what a
            baseline reads (``pruned.macs``, ``channels.<layer>.kept``, ``search.steps``,
            ``budget.converge_steps_done``): named with the file.
    """
    path = Path(run_dir) / "compression_report.json"
    if not path.is_file():
        raise InputError(f"--reference-run {run_dir}: {path} not found; expected a finished CoroNetGAN run")
    expected = "expected the report python -m compress writes at the end of a run"
    try:
        report = read_json(path)
    except InputError as exc:
        raise InputError(f"--reference-run {run_dir}: {exc}; {expected}") from None

    def number(*keys: str) -> bool:
        v: Any = report
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0

    missing = [".".join(k) for k in (("pruned", "macs"), ("search", "steps"), ("budget", "converge_steps_done"))
               if not number(*k)]
    channels = report.get("channels") if isinstance(report, dict) else None
    if not (isinstance(channels, dict) and channels and all(
            isinstance(v, dict) and isinstance(v.get("kept"), int) and v["kept"] >= 1 for v in channels.values())):
        missing.append("channels.<layer>.kept")
    if missing:
        raise InputError(f"--reference-run {run_dir}: {path} has no valid {', '.join(missing)}; {expected}")
    return report


def uniform_channels(generator: PrunableNetwork, input_shape, target_macs: int) -> dict[str, int]:
    """Channel counts with every prunable latent scaled by one factor w, MACs as close to ``target_macs``
    as the rounding allows (bisection on w in (0, 1])."""
    model = MacsModel(generator, input_shape)
    full = generator.channels

    def counts(w: float) -> dict[str, int]:
        return {n: c if n in FIXED_LATENTS else max(1, int(round(c * w))) for n, c in full.items()}

    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if model(counts(mid)) > target_macs:
            hi = mid
        else:
            lo = mid
    best = min((counts(lo), counts(hi)), key=lambda c: abs(model(c) - target_macs))
    return best


def random_pruned(generator: PrunableNetwork, input_shape, channels: dict[str, int], seed: int,
                  embedding_size: int = 8) -> PrunableNetwork:
    """Materialise ``generator``'s hypernetwork at initialisation with random masks of the given counts."""
    g = torch.Generator().manual_seed(seed)
    hyper = HyperNetwork(generator, input_shape, embedding_size=embedding_size)
    masks = {}
    for name, full in generator.channels.items():
        keep = channels.get(name, full)
        m = torch.zeros(full, dtype=torch.bool)
        m[torch.randperm(full, generator=g)[:keep]] = True
        masks[name] = m
    hyper.frozen_masks = masks
    return materialize(hyper)


def build_baseline(kind: str, generator: PrunableNetwork, input_shape, reference: dict | None,
                   seed: int = 0) -> PrunableNetwork:
    """The baseline generator of ``kind`` (see module docstring), built from the unpruned ``generator``.

    Raises:
        InputError: unknown kind, or ``uniform``/``random`` without a reference run.
    """
    if kind not in BASELINES:
        raise InputError(f"--baseline {kind!r}: expected one of {', '.join(BASELINES)}")
    if kind == "unpruned":
        return generator
    if reference is None:
        raise InputError(f"--baseline {kind} needs --reference-run (the CoroNetGAN run to match)")
    if kind == "uniform":
        channels = uniform_channels(generator, input_shape, reference["pruned"]["macs"])
        return type(generator)(**{**generator.config(), "channels": channels})
    channels = {n: v["kept"] for n, v in reference["channels"].items()}
    return random_pruned(generator, input_shape, channels, seed)
