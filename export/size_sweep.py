"""The int8 size gate at its edge: the smallest generators it applies to, in every family (issue 15).

The gate asks int8 <= 0.30 x the fp32 file for every generator above 0.1 M parameters
(:data:`export.parity.SIZE_GATE_MIN_PARAMS`). At about 0.1 M parameters the bytes that do not scale with the weights
(operator and tensor tables, quantization parameters, the float islands of the InstanceNorms) decide the ratio
(docs/export.md, "Size, what else was tried"), so the hardest generators for the gate are the narrowest ones above
that bound, and the deeper the network, the more of those bytes per parameter. For each architecture of
:data:`SWEEP` this takes the narrowest stand-in (:mod:`export.tiny`: every prunable channel count scaled by one
width, or the channel counts given) with at least ``--min-params`` parameters, trains it briefly on the mirror's
real data, exports fp32 and int8 with the export's defaults (``--int8-weights auto``) and reports the int8 / fp32
file ratio, the weight scales chosen, the label, and the int8 PSNR against PyTorch on the held-out inputs and on
the unseen photos of :mod:`export.photos`.

Each architecture's row is kept in ``OUT/size_sweep.partial.json`` as it finishes: the same command again measures
only the rest (``--restart``: all of them). The log goes to ``OUT/size_sweep.log``.

Usage: ``python -m export.size_sweep --out build/size-sweep [--min-params 100001] [--steps 150] [--qat-steps N]
[--only NAME,...] [--md table.md] [--restart]`` (``--qat-steps``: the stand-ins' last N steps train with the int8
activations simulated, :mod:`compress.qat`). Exit status: 0 when every int8 file met the size gate, 1 when one missed it,
2 for bad input (one line naming the flag or file), 130 on Ctrl-C (the finished rows are kept).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from compress.cli_errors import run_cli
from compress.data.fetch import mirror_root
from compress.errors import InputError
from compress.io import atomic_write_json, atomic_write_text

LOGGER = logging.getLogger("coronetgan.export")

#: name -> (family, generator arguments over the stand-in's, image side in pixels). Entries whose arguments hold
#: ``channels`` are taken as they are; the others are narrowed to the width that first reaches ``--min-params``.
#: The last entry is the CycleGAN 75% generator of the benchmark (``h2z-75``) with its residual trunk narrowed
#: until it is just above 0.1 M parameters: a pruned, uneven channel pattern rather than a uniform width.
SWEEP: dict[str, tuple[str, dict[str, Any], int]] = {
    "pix2pix U-Net num_downs 6": ("pix2pix", {"num_downs": 6}, 64),
    "pix2pix U-Net num_downs 7": ("pix2pix", {"num_downs": 7, "ngf": 16}, 128),
    "cyclegan ResNet 3 blocks": ("cyclegan", {"n_blocks": 3, "ngf": 16}, 64),
    "cyclegan ResNet 6 blocks": ("cyclegan", {"n_blocks": 6, "ngf": 16}, 64),
    "cyclegan ResNet 9 blocks": ("cyclegan", {"n_blocks": 9, "ngf": 16}, 64),
    "cyclegan ResNet 6, h2z-75 channels, trunk 30": ("cyclegan", {
        "n_blocks": 6, "ngf": 16, "channels": {
            "block0": 25, "block1": 32, "block2": 28, "block3": 23, "block4": 28, "block5": 31, "down1": 10,
            "input": 3, "output": 3, "stem": 8, "trunk": 30, "up1": 12, "up2": 10}}, 64),
    "dcgan": ("dcgan", {"ngf": 16}, 32),
}
PARTIAL = "size_sweep.partial.json"


def narrowest_width(family: str, generator: dict[str, Any], min_params: int) -> tuple[float, int]:
    """The smallest width (to 1e-3) whose stand-in has at least ``min_params`` parameters, and that count.

    Raises:
        InputError: the full-width stand-in (width 1) has fewer than ``min_params`` parameters.
    """
    from export.tiny import stand_in_params

    if "channels" in generator:
        return 1.0, stand_in_params(family, 1.0, generator)
    full = stand_in_params(family, 1.0, generator)
    if full < min_params:
        raise InputError(f"--min-params {min_params}: the {family} stand-in {generator} has only {full} at full "
                         "width; expected a wider generator in SWEEP")
    low, high = 0.0, 1.0
    while high - low > 1e-3:   # params grow with the width, up to the rounding of channel counts
        mid = (low + high) / 2
        if stand_in_params(family, mid, generator) >= min_params:
            high = mid
        else:
            low = mid
    return high, stand_in_params(family, high, generator)


def measure(name: str, out: Path, data_root: Path, min_params: int, steps: int, qat_steps: int = 0
            ) -> dict[str, Any]:
    """Train, export and measure one architecture of :data:`SWEEP` under ``out/<slug>``; returns its row.

    Row: {"name", "family", "generator", "image_size", "width", "params", "macs", "fp32_bytes", "int8_bytes",
    "ratio" (int8 / fp32 file bytes), "gate" (the size gate's ratio), "weight_scales", "choice" (the manifest's
    ``weight_scales_choice``), "label", "heldout_db"/"heldout_worst_db", "unseen_db"/"unseen_worst_db" (int8 PSNR
    against PyTorch, dB), "gate_failures", "seconds"}.
    """
    from export.options import ExportOptions
    from export.parity import INT8_SIZE_RATIO
    from export.pipeline import export_run
    from export.tiny import train_tiny_run

    family, generator, size = SWEEP[name]
    width, params = narrowest_width(family, generator, min_params)
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    run = out / slug
    t0 = time.perf_counter()
    train_tiny_run(family, run, data_root, steps=steps, width=width, generator=generator, image_size=size,
                   qat_steps=qat_steps)
    manifest = export_run(run, ExportOptions(dtypes=("fp32", "int8"), out_dir=run / "export",
                                             accept_gate_failure=True, force=True))
    files = {f["dtype"]: f for f in manifest["files"]}
    fp32, int8 = files["fp32"], files["int8"]
    unseen = int8.get("unseen") or {}
    return {"name": name, "family": family, "generator": generator, "image_size": size, "width": width,
            "params": params, "macs": manifest.get("macs"), "fp32_bytes": fp32["size_bytes"],
            "int8_bytes": int8["size_bytes"], "ratio": int8["size_bytes"] / fp32["size_bytes"],
            "gate": INT8_SIZE_RATIO, "weight_scales": int8.get("weight_scales"),
            "choice": int8.get("weight_scales_choice"), "label": int8["label"],
            "heldout_db": int8.get("psnr_db"), "heldout_worst_db": int8.get("min_image_psnr_db"),
            "unseen_db": unseen.get("psnr_db"), "unseen_worst_db": unseen.get("min_image_psnr_db"),
            "gate_failures": manifest.get("gate_failures", []), "seconds": time.perf_counter() - t0}


def _db(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"   # DCGAN: z in, no unseen photos


def _other_misses(row: dict[str, Any]) -> str:
    """The row's quality-gate misses, without the file name and the size gate (a column of its own)."""
    # a failure starts with its file's title, and a mixed file's title holds a colon of its own
    titles = [f"generator_int8.tflite ({row['label']}): ", "generator_int8.tflite: ", "generator_fp32.tflite: ",
              "generator.onnx: "]
    misses = [next((m[len(t):] for t in titles if m.startswith(t)), m)
              for m in row["gate_failures"] if "x the fp32 file" not in m]
    return "; ".join(misses) if misses else "none"


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as the markdown table of docs/export.md."""
    lines = ["| generator | params | fp32 B | int8 B | int8 / fp32 | size gate | weight scales | label | "
             "held-out PSNR dB (pooled / worst) | unseen PSNR dB (pooled / worst) | other gates missed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        met = "met" if r["ratio"] <= r["gate"] else "**missed**"
        lines.append(f"| {r['name']} (width {r['width']:.3f}, {r['image_size']} px) | {r['params']:,} | "
                     f"{r['fp32_bytes']:,} | {r['int8_bytes']:,} | {r['ratio']:.4f} | {met} | "
                     f"{r['weight_scales']} | {r['label']} | {_db(r['heldout_db'])} / {_db(r['heldout_worst_db'])} | "
                     f"{_db(r['unseen_db'])} / {_db(r['unseen_worst_db'])} | {_other_misses(r)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m export.size_sweep`` (module docstring). Returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m export.size_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/size-sweep", help="working folder (runs, exports, partial results, log)")
    p.add_argument("--data", default=None, help="the data mirror (default $CORONETGAN_DATA_MIRROR, else "
                                                "../shared/data)")
    p.add_argument("--min-params", type=int, default=100_001,
                   help="parameters (count) each generator reaches (default: just above the gate's 0.1 M)")
    p.add_argument("--steps", type=int, default=150, help="training steps of each stand-in")
    p.add_argument("--qat-steps", type=int, default=0, help="the last N training steps with the int8 activations "
                   "simulated (compress/qat.py; default 0: none)")
    p.add_argument("--only", default=None, help=f"comma-separated names of {', '.join(SWEEP)}")
    p.add_argument("--md", default=None, help="also write the markdown table to this file")
    p.add_argument("--restart", action="store_true", help="measure every architecture again")
    args = p.parse_args(argv)
    return run_cli(lambda: _checked_sweep(args))


def _checked_sweep(args: argparse.Namespace) -> int:
    """Check the flags (InputError naming the flag), then run :func:`_sweep` with the log in ``--out``."""
    names = list(SWEEP) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SWEEP]
    if unknown or not names:
        raise InputError(f"--only {args.only!r}: unknown {unknown or 'empty'}; expected names of {', '.join(SWEEP)}")
    if args.min_params < 1 or args.steps < 1:
        raise InputError(f"--min-params {args.min_params} / --steps {args.steps}: expected whole numbers >= 1")
    if not 0 <= args.qat_steps <= args.steps:
        raise InputError(f"--qat-steps {args.qat_steps}: expected a whole number from 0 to --steps ({args.steps})")
    data_root = mirror_root(args.data)
    if not data_root.is_dir():
        raise InputError(f"--data {data_root}: not a folder; expected the data mirror (../shared/data)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: a file; expected a folder for the sweep's runs and results")
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "size_sweep.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    project = logging.getLogger("coronetgan")
    level = project.level
    project.addHandler(handler)
    project.setLevel(logging.INFO)
    try:
        return _sweep(names, out, data_root, args)
    finally:
        project.removeHandler(handler)
        project.setLevel(level)
        handler.close()


def _sweep(names: list[str], out: Path, data_root: Path, args: argparse.Namespace) -> int:
    """The rows of ``names`` (kept or measured), the table, and the exit status of :func:`main`."""
    settings = {"min_params": args.min_params, "steps": args.steps, "qat_steps": args.qat_steps}
    partial = out / PARTIAL
    done: dict[str, dict] = {}
    if partial.is_file() and not args.restart:
        try:
            saved = json.loads(partial.read_text())
            rows = saved["rows"] if saved.get("settings") == settings else {}
            if not isinstance(rows, dict) or not all(isinstance(r, dict) and "ratio" in r for r in rows.values()):
                raise ValueError("rows of another form")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{partial}: not a size sweep's partial results ({exc}); pass --restart to measure "
                             "again") from None
        done = rows
    for i, name in enumerate(names, 1):
        if name in done:
            print(f"[{i}/{len(names)}] {name}: kept from {partial}")
            continue
        print(f"[{i}/{len(names)}] {name}: training and exporting ...", flush=True)
        done[name] = measure(name, out, data_root, args.min_params, args.steps, args.qat_steps)
        r = done[name]
        line = (f"{name}: {r['params']:,} params, int8 {r['int8_bytes']:,} B = {r['ratio']:.4f} x fp32 "
                f"({r['weight_scales']}), {r['seconds']:.0f} s")
        LOGGER.info("size sweep: %s", line)
        print(f"[{i}/{len(names)}] {line}", flush=True)
        atomic_write_json(partial, {"settings": settings, "rows": done})
    rows = [done[n] for n in names]
    table = to_markdown(rows)
    print(table)
    if args.md:
        atomic_write_text(Path(args.md), table)
    return 0 if all(r["ratio"] <= r["gate"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
