"""``python -m compress``: the CoroNetGAN search and converging stages for pix2pix, cyclegan or dcgan.

Examples::

    python -m compress --model cyclegan --dataset horse2zebra --target 0.75 --preset small --run-dir runs/h2z
    python -m compress --resume --run-dir runs/h2z          # continue after an interruption
    torchrun --nproc_per_node 4 -m compress --model cyclegan --run-dir runs/h2z-4gpu   # data-parallel, 4 GPUs

Exit status: 0 done, 3 target missed with --strict, 2 bad input, 1 the run failed, 130 interrupted
(docs/errors.md lists the messages).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

from compress.accel import PRECISIONS
from compress.api import run_compression
from compress.cli_errors import run_cli
from compress.config import CLI_FIELDS, PRESETS, RunConfig, config_conflicts, preset
from compress.distributed import is_main_process
from compress.errors import InputError
from compress.families import FAMILIES, get_family
from compress.trainer import CHECKPOINT

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
    p.add_argument("--qat-steps", type=int, help="the last N converging steps train with the int8 file's activation "
                   "rounding simulated (quantization-aware training, compress/qat.py; default 0: none). Measured on "
                   "the small preset's 95%% pix2pix: no reliable int8 gain (docs/export.md, session 18)")
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
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its checkpoint, with its saved settings (flags may "
                        "repeat them; only --device and --skip-bad may change)")
    p.add_argument("--baseline", choices=("unpruned", "uniform", "random"),
                   help="train a baseline instead of searching (compress/baselines.py); with --reference-run "
                        "it matches that CoroNetGAN run's MACs/channels, training budget and settings")
    p.add_argument("--reference-run", type=Path, help="the finished CoroNetGAN run a baseline is compared with")
    p.add_argument("--strict", action="store_true", help="exit 3 when the target was not reached")
    return p


#: Count flags: a value the user gives must be >= 1 (leaving the flag out keeps the preset's value).
_COUNT_FLAGS = ("steps", "search_steps", "converge_steps", "qat_steps", "max_train_images", "check_interval",
                "batch_size", "sample_interval", "checkpoint_interval", "image_size")


def _key_values(items: list[str], flag: str) -> dict:
    """Parse KEY=VALUE flags; values are read as JSON when possible (numbers, booleans), else kept as text
    (checked against the family's declared options by :meth:`RunConfig.validate`)."""
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


def _check_flag_values(args: argparse.Namespace) -> None:
    """Counts and widths given on the command line must be positive (messages name the flag)."""
    for name in _COUNT_FLAGS:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} {value}: expected an integer >= 1 (leave the flag out "
                             "for the preset's value)")
    if args.ngf is not None and args.ngf < 1:
        raise InputError(f"--ngf {args.ngf}: expected an integer >= 1 (width of the generator's first layer, "
                         "channels)")


def _apply_flags(values: dict, args: argparse.Namespace, model: str) -> dict:
    """``values`` (a preset's or a saved run's settings) overridden by the flags the user gave."""
    values = dict(values)
    if args.preset is not None:
        values["preset"] = args.preset
    if args.baseline:
        values["baseline"] = args.baseline
    for name in CLI_FIELDS:
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    # a budget in epochs given alone replaces the preset's budget in steps (steps win when both are set)
    for epochs, steps in (("epochs", "steps"), ("search_epochs", "search_steps")):
        if getattr(args, epochs, None) is not None and getattr(args, steps, None) is None:
            values[steps] = 0
    load_size = get_family(model, "--model").load_size(args.image_size) if args.image_size is not None else None
    if load_size is not None:
        values["load_size"] = load_size
    values["generator"] = {**values.get("generator", {}), **_key_values(args.generator, "--generator")}
    values["discriminator"] = {**values.get("discriminator", {}), **_key_values(args.discriminator, "--discriminator")}
    if args.ngf is not None:
        values["generator"]["ngf"] = args.ngf
    return values


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Preset values, overridden by the flags the user gave.

    Raises:
        InputError: a flag value out of range (named), or a ``--reference-run`` without its config.
    """
    _check_flag_values(args)
    if args.reference_run is not None:
        values = _read_config(args.reference_run / "config.json", f"--reference-run {args.reference_run}")
        values.update(reference_run=str(args.reference_run), converge_steps=0, search_steps=0, steps=0)
        model = values.get("model", "")
        applied = _apply_flags(values, args, model)
        # a baseline is matched to its reference: what the reference is cannot be changed by a flag
        changed = [f"--{k.replace('_', '-')} {applied[k]!r} (the reference's: {values.get(k)!r})"
                   for k in _REFERENCE_FIELDS if k in applied and applied[k] != values.get(k)]
        if changed:
            raise InputError(f"--reference-run {args.reference_run}: {'; '.join(changed)}; a baseline is matched to "
                             "its reference run's model, data, target and networks: leave these flags out")
        return RunConfig.from_dict(applied).validate()
    model = args.model or "cyclegan"
    values = {"model": model, "preset": args.preset or "paper", **preset(model, args.preset or "paper")}
    return RunConfig.from_dict(_apply_flags(values, args, model)).validate()


#: The settings of a ``--reference-run`` that its baseline keeps (it is matched to that run).
_REFERENCE_FIELDS = ("model", "dataset", "direction", "target", "image_size", "load_size", "generator",
                     "discriminator")


def _read_config(path: Path, what: str) -> dict:
    """A run's ``config.json`` as a dict. Raises InputError naming ``what`` and the file when it is missing or
    not valid JSON."""
    if not path.is_file():
        raise InputError(f"{what}: {path} not found; expected a run folder written by python -m compress")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what}: {path} is not valid JSON ({exc}); the run's settings are corrupt") from None
    if not isinstance(data, dict):
        raise InputError(f"{what}: {path} holds a {type(data).__name__}; expected a JSON object of run settings")
    return data


def resume_config(args: argparse.Namespace) -> RunConfig:
    """The saved config of ``--run-dir``; flags may change only the device, ``--skip-bad`` (and repeat a saved
    value).

    Raises:
        InputError: no ``--run-dir``, a missing/corrupt ``config.json`` (named), or flags that conflict with the
            saved settings (each named with the saved value).
    """
    if args.run_dir is None:
        raise InputError("--resume needs --run-dir (the folder of the run to continue)")
    path = args.run_dir / "config.json"
    saved_values = _read_config(path, "--resume")
    try:
        saved = RunConfig.from_dict(saved_values, where=str(path)).validate()
    except InputError as exc:
        raise InputError(f"--resume: {path}: {exc}") from None
    _check_flag_values(args)
    if args.reference_run is not None and str(args.reference_run) != (saved.reference_run or None):
        raise InputError(f"--resume: --reference-run {args.reference_run} against the run's settings in {path} "
                         f"(reference run: {saved.reference_run or 'none'}); a resumed run keeps its settings: leave "
                         "it out, or start a new run in another --run-dir")
    wanted = RunConfig.from_dict(_apply_flags(saved.to_dict(), args, saved.model), where="the flags")
    conflicts = config_conflicts(saved, wanted)
    if conflicts:
        raise InputError(f"--resume: {conflicts} from the run's settings in {path}; a resumed run "
                         "keeps its settings: leave these flags out, or start a new run in another --run-dir")
    return wanted.validate()


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.resume:
        cfg = resume_config(args)
        run_dir = args.run_dir
    else:
        cfg = config_from_args(args)
        tag = cfg.baseline or str(int(round(cfg.target * 100)))
        run_dir = args.run_dir or Path("runs") / f"{cfg.model}-{tag}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        report = run_compression(cfg, run_dir, resume=args.resume)
    except KeyboardInterrupt as exc:
        if (run_dir / CHECKPOINT).is_file():
            why = f"{exc.args[0]}; " if exc.args else ""   # e.g. which torchrun rank received the signal
            raise type(exc)(f"{why}the last checkpoint is kept; python -m compress --resume --run-dir {run_dir} "
                            "continues the run") from None
        raise
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m compress``; returns the exit status: 0 done, 3 target missed with ``--strict``, and the
    statuses of :func:`compress.cli_errors.run_cli` (2 bad input, 1 failed run, 130 Ctrl-C; docs/errors.md)."""
    return run_cli(lambda: _run(argv))
