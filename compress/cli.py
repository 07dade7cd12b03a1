"""``python -m compress``: the CoroNetGAN search and converging stages for pix2pix, cyclegan or dcgan.

Examples::

    python -m compress --model cyclegan --dataset horse2zebra --target 0.75 --preset small --run-dir runs/h2z
    python -m compress --resume --run-dir runs/h2z          # continue after an interruption
    torchrun --nproc_per_node 4 -m compress --model cyclegan --run-dir runs/h2z-4gpu   # data-parallel, 4 GPUs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from compress.accel import PRECISIONS
from compress.api import run_compression
from compress.config import PRESETS, RunConfig, preset
from compress.distributed import is_main_process
from compress.errors import InputError
from compress.families import FAMILIES, get_family

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m compress", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=tuple(FAMILIES), help="GAN family (default cyclegan)")
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="paper: the paper's settings (default); small: minutes on 2 CPU cores")
    p.add_argument("--dataset", help="dataset name (horse2zebra, edges2shoes, facades, cifar10, ...) or folder")
    p.add_argument("--direction", choices=("AtoB", "BtoA"))
    p.add_argument("--target", type=float, help="fraction of generator MACs to remove (0.75 = 75%%)")
    p.add_argument("--tolerance", type=float, help="accepted distance to the target (default 0.02)")
    p.add_argument("--steps", type=int, help="total budget in batches, the search included (Algorithm 1; "
                   "default: from the preset)")
    p.add_argument("--epochs", type=float, help="total budget in epochs when --steps is not given")
    p.add_argument("--search-steps", type=int, help="the most the search may take of the total budget, in batches "
                   "(default: from the preset)")
    p.add_argument("--converge-steps", type=int, help="override: converging steps whatever the search took "
                   "(default 0: the rest of the total budget; for search-only benchmarks)")
    p.add_argument("--min-channel-fraction", type=float,
                   help="floor of every layer as a fraction of its channels (default 0: DHP's 4 channels only)")
    p.add_argument("--check-interval", type=int, help="batches between MACs checks (DHP: 100)")
    p.add_argument("--image-size", type=int, help="crop size (load size scales with it: 286/256)")
    p.add_argument("--ngf", type=int, help="generator width")
    p.add_argument("--generator", action="append", default=[], metavar="KEY=VALUE",
                   help="generator constructor argument, e.g. n_blocks=6 or num_downs=7 (repeatable)")
    p.add_argument("--discriminator", action="append", default=[], metavar="KEY=VALUE",
                   help="discriminator constructor argument, e.g. ndf=32 (repeatable)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--latent-lr", type=float, help="learning rate of the latent vectors (default: --lr)")
    p.add_argument("--regularization", type=float, help="lambda of the proximal step (paper: 0.5)")
    p.add_argument("--compress-discriminator", action="store_true", default=None,
                   help="also prune the discriminator to the same target (paper Table 2, G+D)")
    p.add_argument("--max-train-images", type=int, help="train on a seeded subset of this many items")
    p.add_argument("--sample-interval", type=int)
    p.add_argument("--checkpoint-interval", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (cuda when present), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="CUDA only: autocast of the GAN steps' forward passes; auto = bf16 (default)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="CUDA only: NHWC memory for networks and batches (default on)")
    p.add_argument("--data-on-device", action="store_true", default=None,
                   help="CUDA only: hold the decoded training set in GPU memory (small datasets)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="CUDA only: torch.compile the plain networks (discriminators, the converging generator)")
    p.add_argument("--skip-bad", action="store_true", default=None, help="skip unreadable images (counted in the log)")
    p.add_argument("--run-dir", type=Path, help="run folder (default runs/<model>-<target>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its checkpoint")
    p.add_argument("--baseline", choices=("unpruned", "uniform", "random"),
                   help="train a baseline instead of searching (compress/baselines.py); with --reference-run "
                        "it matches that CoroNetGAN run's MACs/channels, training budget and settings")
    p.add_argument("--reference-run", type=Path, help="the finished CoroNetGAN run a baseline is compared with")
    p.add_argument("--strict", action="store_true", help="exit 3 when the target was not reached")
    return p


_FLAG_FIELDS = ("model", "dataset", "direction", "target", "tolerance", "steps", "epochs", "search_steps",
                "converge_steps", "min_channel_fraction",
                "check_interval", "image_size", "batch_size", "lr", "latent_lr", "regularization",
                "compress_discriminator", "max_train_images", "sample_interval", "checkpoint_interval", "seed",
                "device", "skip_bad", "precision", "channels_last", "data_on_device", "compile")


def _key_values(items: list[str], flag: str) -> dict:
    """Parse KEY=VALUE flags; values are read as JSON when possible (numbers, booleans), else kept as text."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} ngf=32")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Preset values, overridden by the flags the user gave."""
    if args.reference_run is not None:
        ref_cfg = args.reference_run / "config.json"
        if not ref_cfg.is_file():
            raise InputError(f"--reference-run {args.reference_run}: {ref_cfg} not found; expected a CoroNetGAN run")
        values = json.loads(ref_cfg.read_text())
        values.update(reference_run=str(args.reference_run), converge_steps=0, search_steps=0, steps=0)
        model = values["model"]
    else:
        model = args.model or "cyclegan"
        values = {"model": model, "preset": args.preset or "paper", **preset(model, args.preset or "paper")}
    if args.baseline:
        values["baseline"] = args.baseline
    for name in _FLAG_FIELDS:
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    load_size = get_family(model, "--model").load_size(args.image_size) if args.image_size is not None else None
    if load_size is not None:
        values["load_size"] = load_size
    values["generator"] = {**values.get("generator", {}), **_key_values(args.generator, "--generator")}
    values["discriminator"] = {**values.get("discriminator", {}), **_key_values(args.discriminator, "--discriminator")}
    if args.ngf is not None:
        values["generator"]["ngf"] = args.ngf
    return RunConfig.from_dict(values).validate()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.resume:
            if args.run_dir is None:
                raise InputError("--resume needs --run-dir (the folder of the run to continue)")
            cfg_path = args.run_dir / "config.json"
            if not cfg_path.is_file():
                raise InputError(f"--resume: {cfg_path} not found; expected a run folder written by python -m compress")
            cfg = RunConfig.from_dict(json.loads(cfg_path.read_text()))
            if args.device:
                cfg.device = args.device
            run_dir = args.run_dir
        else:
            cfg = config_from_args(args)
            tag = cfg.baseline or str(int(round(cfg.target * 100)))
            run_dir = args.run_dir or Path("runs") / f"{cfg.model}-{tag}-{time.strftime('%Y%m%d-%H%M%S')}"
        report = run_compression(cfg, run_dir, resume=args.resume)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not is_main_process():      # torchrun: rank 0 reports
        return 0
    status = report["search"]["status"]["G"]["status"]
    if cfg.baseline:
        print(f"{run_dir}: baseline {cfg.baseline}: MACs reduction {report['achieved_macs_reduction']:.1%}, "
              f"params {report['pruned']['params'] / 1e6:.2f} M")
        return 0
    print(f"{run_dir}: MACs reduction {report['achieved_macs_reduction']:.1%} "
          f"(target {cfg.target:.0%} +- {cfg.tolerance:.0%}: {status}); "
          f"params {report['original']['params'] / 1e6:.2f} M -> {report['pruned']['params'] / 1e6:.2f} M")
    if args.strict and not report["target_reached"]:
        return 3
    return 0
