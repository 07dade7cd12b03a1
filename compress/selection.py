"""How much of the search's channel selection its latent vectors' initialisation already decides.

``python -m compress.selection RUN_DIR [--seeds 0 1 2] [--latent-lr LR] [--out NAME]`` reruns the search of a
finished CoroNetGAN run (its ``config.json``; ``--converge-steps 1`` in a temporary folder, the run folder is only
read) at each seed and compares, per layer, the channels the search kept (the frozen masks, eq. 5 applied until
the MACs target) with the channels whose latent entries were largest in magnitude at initialisation (the
latent vectors start N(0, 1), DHP's and our choice). The share of kept channels that are also the top-|z| ones
at initialisation is the *init overlap*; a selection made by chance among the same per-layer counts overlaps
``sum_l k_l^2 / n_l`` of ``sum_l k_l`` channels on average (the *chance overlap*). An init overlap near 100%
means the search's soft threshold mostly removed the entries that started small: the search then chose little
beyond what random pruning with the same per-layer counts would choose (docs/evaluate.md, DCGAN over seeds).

Writes ``runs/bench-<NAME>/results.json`` and ``results.md``. The rerun reproduces the run's own search for
the run's seed (same configuration, same random streams): its kept counts equal the run's report.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from compress.cli_errors import run_cli
from compress.errors import InputError
from compress.io import atomic_write_json, atomic_write_text, read_json

REPO = Path(__file__).resolve().parents[1]


def overlap_with_init(z_init: torch.Tensor, mask: torch.Tensor) -> dict:
    """Kept channels of one layer that are also the largest |z| at initialisation.

    Args:
        z_init: (C,) latent vector at initialisation.
        mask: (C,) bool, the channels the search kept.
    Returns:
        {"kept": k, "original": C, "init_overlap": channels in both sets, "chance_overlap": k^2 / C (the mean
        overlap of k channels drawn at random)}.
    Raises:
        ValueError: shapes differ.
    """
    if z_init.shape != mask.shape or z_init.dim() != 1:
        raise ValueError(f"latent vector {tuple(z_init.shape)} and mask {tuple(mask.shape)}: expected two (C,)")
    mask = mask.bool()
    k, n = int(mask.sum()), mask.numel()
    top = torch.zeros(n, dtype=torch.bool)
    top[z_init.abs().argsort(descending=True)[:k]] = True
    return {"kept": k, "original": n, "init_overlap": int((top & mask.cpu()).sum()), "chance_overlap": k * k / n}


def search_selection(config: dict, seed: int, latent_lr: float | None = None) -> dict:
    """Run the search of ``config`` (a run's ``config.json``) at ``seed`` and compare its selection with the
    initialisation (:func:`overlap_with_init` per latent vector of the generator).

    Returns:
        {"seed", "latent_lr", "search_steps" (steps the search ran), "status", "achieved", "layers": {name:
        overlap dict}, "init_overlap" and "chance_overlap" (fractions of all kept channels)}.
    Raises:
        InputError: the configuration is not valid (named field).
    """
    from compress.config import RunConfig
    from compress.trainer import Trainer

    values = {**config, "seed": int(seed), "converge_steps": 1}
    if latent_lr is not None:
        values["latent_lr"] = float(latent_lr)
    cfg = RunConfig.from_dict(values).validate()
    captured: dict = {}

    class _Capturing(Trainer):
        def build_search_networks(self):
            G, D, extra = super().build_search_networks()
            captured["G"] = G
            captured["z_init"] = {n: z.detach().cpu().clone() for n, z in G.prunable_latents().items()}
            return G, D, extra

    work = Path(tempfile.mkdtemp(prefix="coronetgan-selection-"))
    try:
        report = _Capturing(cfg, work / "run").run()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    masks = captured["G"].frozen_masks
    layers = {n: overlap_with_init(z, masks[n]) for n, z in captured["z_init"].items()}
    kept = sum(v["kept"] for v in layers.values())
    return {"seed": int(seed), "latent_lr": cfg.latent_lr, "search_steps": report["search"]["steps"],
            "status": report["search"]["status"]["G"]["status"], "achieved": report["achieved_macs_reduction"],
            "layers": layers, "init_overlap": sum(v["init_overlap"] for v in layers.values()) / kept,
            "chance_overlap": sum(v["chance_overlap"] for v in layers.values()) / kept}


def selection_table(rows: Sequence[dict], run_dir: str) -> str:
    """Markdown table of :func:`search_selection` rows."""
    lines = [f"Search selection against the latent vectors' initialisation, search of `{run_dir}` rerun per seed.",
             "", "| seed | latent lr | search steps | MACs reduction | kept channels in the top-\\|z\\| at init "
             "| chance overlap | per layer (kept / original, overlap) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        per = ", ".join(f"{n} {v['kept']}/{v['original']} ({v['init_overlap']})" for n, v in r["layers"].items())
        lines.append(f"| {r['seed']} | {r['latent_lr']:g} | {r['search_steps']} | {r['achieved']:.4f} | "
                     f"{r['init_overlap']:.0%} | {r['chance_overlap']:.0%} | {per} |")
    return "\n".join(lines) + "\n"


def _main(args: argparse.Namespace) -> int:
    config = read_json(Path(args.run_dir) / "config.json", "expected a run folder written by `python -m compress`")
    if config.get("baseline"):
        raise InputError(f"{args.run_dir} is a --baseline {config['baseline']} run; expected a CoroNetGAN run")
    if args.latent_lr is not None and not args.latent_lr > 0:
        raise InputError(f"--latent-lr {args.latent_lr}: expected a positive learning rate")
    rows = []
    for seed in args.seeds:
        rows.append(search_selection(config, seed, args.latent_lr))
        print(f"seed {seed}: {rows[-1]['search_steps']} search steps, {rows[-1]['init_overlap']:.0%} of the kept "
              f"channels were the top-|z| at init (chance {rows[-1]['chance_overlap']:.0%})", flush=True)
    out = REPO / "runs" / f"bench-{args.out}"
    table = selection_table(rows, args.run_dir)
    atomic_write_json(out / "results.json", {"run_dir": str(args.run_dir), "rows": rows})
    atomic_write_text(out / "results.md", table)
    print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m compress.selection RUN``: the selection diagnostic of a finished run (module docstring), one
    search per ``--seeds`` entry; prints the comparison. Returns the exit status (2: bad input)."""
    p = argparse.ArgumentParser(prog="python -m compress.selection", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a finished CoroNetGAN run folder (its config.json is read)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--latent-lr", type=float, help="override the run's latent vectors' learning rate")
    p.add_argument("--out", default="selection", help="results folder name under runs/ (bench-<out>)")
    args = p.parse_args(argv)
    return run_cli(lambda: _main(args))


if __name__ == "__main__":
    raise SystemExit(main())
