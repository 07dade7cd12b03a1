"""``python -m export RUN_DIR --dtype fp32|fp16|int8|all|LIST`` (or ``--latest runs/``): see export/pipeline.py.

``--input-size 256`` exports a fully convolutional generator (pix2pix, CycleGAN) at 256 x 256 whatever its
training size (export/inputs.py); ``--original`` exports the unpruned generator of the run's family and width
instead, into ``RUN_DIR/original/export`` (export/original.py; weights: ``--original-weights``).

Output: the files exported (only the dtypes asked for) with their figures and ``wrote .../manifest.json``; an
unchanged run prints one line, ``export skipped (unchanged): ...``.

Exit status: 0 exported (or skipped: unchanged), 1 a quality gate was missed (figures printed; nothing
installed unless ``--accept-gate-failure``) or a converter failed, 2 bad input (InputError, printed without
a traceback), and the statuses of :func:`compress.cli_errors.run_cli` (OS errors in one line, 130 on Ctrl-C,
143 on SIGTERM: the converter child is killed and the staging folder removed first). A run folder being
written by another process is refused (:mod:`compress.runlock`).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Sequence

from compress.cli_errors import end_line, os_error_message, run_cli
from compress.errors import InputError
from compress.runlock import run_lock
from export.inputs import DEFAULT_CALIBRATION_COUNT, DEFAULT_HELDOUT_COUNT
from export.onnx_export import ExportError
from export.options import DTYPE_CHOICES, INT8_ACTIVATIONS, INT8_WEIGHTS, ExportOptions, parse_dtypes
from export.original import INIT, is_original, prepare_original, read_original
from export.parity import file_title, format_db, int8_target_hint
from export.pipeline import GateFailure, export_run
from quantize import DEFAULT_TARGET_DB, IO_DTYPES, MODES


def latest_run(runs_root: str | Path) -> Path:
    """The most recently modified folder under ``runs_root`` (searched recursively, depth <= 3) that holds
    ``generator.pt`` and ``architecture.json``, is not a run's original (:mod:`export.original`) and is not inside
    a benchmark's result folder (``runs/bench-*``: :data:`compress.benchmarks.RESULTS_PREFIX`; its runs are
    measurements of the method, not a generator to deploy). Raises InputError when there is none."""
    from compress.benchmarks import RESULTS_PREFIX

    root = Path(runs_root)
    if not root.is_dir():
        raise InputError(f"--latest {root}: not a folder; expected the runs/ folder of `python -m compress`")
    found = [p.parent for pattern in ("generator.pt", "*/generator.pt", "*/*/generator.pt")
             for p in root.glob(pattern) if (p.parent / "architecture.json").is_file() and not is_original(p.parent)
             and not any(part.startswith(RESULTS_PREFIX) for part in p.parent.relative_to(root).parts)]
    if not found:
        raise InputError(f"--latest {root}: no finished compress run (a folder with generator.pt and "
                         "architecture.json) under it")
    return max(found, key=lambda d: (d / "generator.pt").stat().st_mtime)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", help="compress run folder (generator.pt + architecture.json)")
    p.add_argument("--latest", metavar="RUNS", help="export the newest finished run under this folder instead")
    p.add_argument("--dtype", default="all", metavar="DTYPE",
                   help=f"one of {', '.join(DTYPE_CHOICES)}, or a comma list such as fp32,int8 (default all)")
    p.add_argument("--out", help="output folder (default RUN_DIR/export)")
    p.add_argument("--accept-gate-failure", action="store_true",
                   help="install the files even when a quality gate is missed (recorded in the manifest)")
    p.add_argument("--force", action="store_true", help="re-export even when nothing changed")
    p.add_argument("--calibration-dir", help="folder of source-domain images for int8 calibration "
                                             "(default: the run's dataset source folder)")
    p.add_argument("--calibration-count", type=int, default=DEFAULT_CALIBRATION_COUNT,
                   help=f"representative inputs for int8 (default {DEFAULT_CALIBRATION_COUNT})")
    p.add_argument("--heldout-count", type=int, default=DEFAULT_HELDOUT_COUNT,
                   help=f"held-out inputs for the parity gates (default {DEFAULT_HELDOUT_COUNT})")
    p.add_argument("--int8-io", default="int8", choices=IO_DTYPES,
                   help="input/output tensor type of the int8 model (default int8)")
    p.add_argument("--int8-weights", default=INT8_WEIGHTS[0], choices=INT8_WEIGHTS,
                   help="int8 weight scales: per-channel, per-tensor (smaller file; one scale per convolution, "
                        "as some accelerators require) or auto (default: per-channel, and per-tensor instead when "
                        "the per-channel file misses the size gate and the per-tensor one meets it and the int8 "
                        "gates on validation inputs)")
    p.add_argument("--int8-activations", default=INT8_ACTIVATIONS[0], choices=INT8_ACTIVATIONS,
                   help="activation precision of the int8 file: int8; int16 (a 16x8 file: int8 weights, int16 "
                        "activations; CPU kernels only, no GPU delegate, labelled 'int8 (16x8: int16 "
                        "activations)'); auto (default: int8, and 16x8 only when the int8 file misses the int8 "
                        "gates on validation inputs even with convolutions in float and the 16x8 file meets them)")
    p.add_argument("--keep-tensor-names", action="store_true",
                   help="keep every tensor name in the .tflite files (default: only the input/output names; the "
                        "manifest keeps the others, by tensor index)")
    p.add_argument("--int8-mode", default="robust", choices=MODES,
                   help="robust (default): every convolution int8, InstanceNorm/residual element-wise ops and "
                        "LEAKY_RELU in float, bias correction; naive: the converter's full-integer recipe")
    p.add_argument("--int8-target-db", type=float, default=DEFAULT_TARGET_DB, metavar="DB",
                   help="robust int8, last resort: when int8 misses DB against float on calibration inputs, keep "
                        "convolutions in float (InstanceNorm-feeding ones first), the one that measurably helps "
                        "most first, within the size gate, until it does and the worst input reaches DB - 3 (the "
                        "file is then labelled mixed; "
                        f"default {DEFAULT_TARGET_DB:g}; 0 = off)")
    p.add_argument("--no-equalise", action="store_true",
                   help="int8 from the generator as trained, without the equalisation that folds BatchNorm and "
                        "equalises channel ranges (see docs/export.md)")
    p.add_argument("--extra-float-ops", default="", metavar="OPS",
                   help="comma list of TFLite ops also kept in float in robust int8, e.g. "
                        "TRANSPOSE_CONV,STRIDED_SLICE (see docs/export.md)")
    p.add_argument("--fid", type=int, default=0, metavar="N",
                   help="also measure the FID change of int8: FID/KID of the fp32 (PyTorch) and int8 outputs "
                        "on N test inputs (DCGAN: N samples) against compress.evaluate's real set (slow: "
                        "~0.1 s per image on a CPU; default 0 = off)")
    p.add_argument("--threads", type=int, default=2, help="LiteRT threads for the parity runs (default 2)")
    p.add_argument("--input-size", type=int, metavar="S",
                   help="export at S x S (e.g. 256: the phone's input size) whatever the training size; the "
                        "parity gates and int8 calibration use the images resized to S x S (fully convolutional "
                        "generators only: DCGAN keeps its fixed size; default: the training size)")
    p.add_argument("--original", action="store_true",
                   help="export the unpruned generator of RUN_DIR's family and width instead, into "
                        "RUN_DIR/original/export (the original beside the compressed one)")
    p.add_argument("--original-weights", default=INIT, metavar="W",
                   help=f"weights of --original: {INIT} (default: initialised, latency only), a baseline run folder "
                        "(python -m compress --baseline unpruned) or a state-dict .pt of the unpruned generator")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="console: warnings and errors only (RUN_DIR/log.txt still gets every step)")
    p.add_argument("-v", "--verbose", action="store_true", help="console: debug lines too")
    return p


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    """The :class:`ExportOptions` of parsed ``python -m export`` arguments. Raises InputError (named flag) for
    a bad ``--dtype`` or any other value outside its range."""
    return ExportOptions(
        dtypes=parse_dtypes(args.dtype), out_dir=args.out, accept_gate_failure=args.accept_gate_failure,
        force=args.force, calibration_dir=args.calibration_dir, calibration_count=args.calibration_count,
        heldout_count=args.heldout_count, int8_io=args.int8_io, int8_weights=args.int8_weights,
        int8_activations=args.int8_activations,
        int8_mode=args.int8_mode,
        int8_target_db=args.int8_target_db, int8_equalise=not args.no_equalise,
        extra_float_ops=tuple(o.strip() for o in args.extra_float_ops.split(",") if o.strip()),
        fid_count=args.fid, threads=args.threads, input_size=args.input_size,
        keep_tensor_names=args.keep_tensor_names)


def print_figures(files: list[dict], stream=None) -> None:
    """One line per exported file (label, PSNR pooled/worst on the held-out inputs and on the unseen photos, gate,
    max abs diff, size, GPU readiness, runtimes that ran it), plus what the int8 file is made of and the FID change."""
    stream = stream or sys.stdout
    print(f"{'file':24s} {'label':40s} {'PSNR dB':>8s} {'worst':>6s} {'unseen':>7s} {'worst':>6s} {'gate':>5s} "
          f"{'max|diff|':>9s} {'bytes':>10s} {'GPU':>5s}  runtimes", file=stream)
    for e in files:
        unseen = e.get("unseen") or {}
        gate = f"{e['gate_db']:.0f}" if "gate_db" in e else "-"
        gpu = str(e["gpu_delegate"]["gpu_ready"]) if "gpu_delegate" in e else "-"
        runtimes = ", ".join(f"{k} {'ok' if v['ok'] else 'FAILED'}" for k, v in (e.get("runtimes") or {}).items())
        print(f"{e['path']:24s} {e.get('label') or e.get('dtype', '-'):40s} {format_db(e.get('psnr_db', '-')):>8s} "
              f"{format_db(e.get('min_image_psnr_db', '-')):>6s} {format_db(unseen.get('psnr_db', '-')):>7s} "
              f"{format_db(unseen.get('min_image_psnr_db', '-')):>6s} {gate:>5s} {e['max_abs_diff']:>9.3g} "
              f"{str(e.get('size_bytes', '-')):>10s} {gpu:>5s}  {runtimes or '-'}", file=stream)
        share = e.get("int8_share")
        if share:
            pct = {k: "-" if v is None else f"{100 * v:.0f}%" for k, v in share.items()}
            ratio = e.get("size_ratio_to_fp32")
            int16 = share.get("macs_int16_activations")
            print(f"  int8 share: {pct['weight_bytes']} of the weight bytes, {pct['macs']} of the MACs; "
                  f"{e['convolutions_total'] - e['convolutions_float']} of {e['convolutions_total']} convolutions "
                  f"int8" + (f" ({pct['macs_int16_activations']} of the MACs with int16 activations: 16x8)"
                             if int16 else "")
                  + (f"; {ratio:.4f} x the fp32 file" if ratio else ""), file=stream)
            choice = e.get("activations_choice") or {}
            if choice.get("chosen") == "int16x8":
                print(f"  16x8 ({choice.get('why')}): int16 activations run on TFLite's reference CPU kernels only, "
                      "no XNNPACK and no GPU delegate (--int8-activations int8 keeps int8 activations)", file=stream)
            if e.get("float_ops"):
                print("  ops left in float: " + ", ".join(f"{k} x{v}" for k, v in e["float_ops"].items()),
                      file=stream)
        sel = e.get("float_selection") or {}
        if sel.get("float_convolutions"):
            traj = sel["trajectory"]
            print(f"  last resort: {sel['float_convolutions']} of {len(sel['candidates'])} candidate "
                  f"convolutions kept in float; validation PSNR {format_db(traj[0]['validation_psnr_db'])} -> "
                  f"{format_db(traj[sel['float_convolutions']]['validation_psnr_db'])} dB "
                  f"(target {sel['target_db']:g}; {sel.get('quantizations', '?')} files measured)", file=stream)
        fid = e.get("fid")
        if fid and "fid_delta" in fid:
            print(f"  FID change of int8 ({fid['n_fake']} outputs vs {fid['n_real']} real, {fid['real_set']}): "
                  f"fp32 {fid['fid_fp32']:.2f} -> int8 {fid['fid_int8']:.2f} ({fid['fid_delta']:+.2f})", file=stream)
        elif fid:
            print(f"  FID change of int8 not measured: {fid.get('skipped')}", file=stream)


def _log_to(run_dir: Path) -> None:
    """Add ``run_dir/log.txt`` to the ``coronetgan`` logger; a run folder that cannot be written (read-only,
    exported to ``--out`` elsewhere) is exported without it."""
    try:
        handler = logging.FileHandler(run_dir / "log.txt")
    except OSError as exc:
        logging.getLogger("coronetgan.export").warning("not logging to the run folder: %s", os_error_message(exc))
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("coronetgan")
    logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))  # the log gets INFO; -v keeps DEBUG


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # the console shows each step (long ones: conversion, calibration, float-selection trials, bias correction);
    # --quiet: warnings only, -v: debug too; RUN_DIR/log.txt below gets INFO whatever the console shows
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    console = logging.StreamHandler()
    console.setLevel(level)
    logging.basicConfig(level=max(level, logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[console])
    if args.verbose:  # this project's debug lines, not those of TensorFlow, PIL and the like
        logging.getLogger("coronetgan").setLevel(logging.DEBUG)
    if (args.run_dir is None) == (args.latest is None):
        raise InputError("give exactly one of RUN_DIR or --latest RUNS")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads {args.threads}: expected an integer >= 1 (LiteRT threads)")
    if args.original_weights != INIT and not args.original:
        raise InputError(f"--original-weights {args.original_weights}: applies to --original only")
    run_dir = Path(args.run_dir) if args.run_dir else latest_run(args.latest)
    options = options_from_args(args)
    try:
        # a folder that is no finished run is reported by export_run; the lock and the log would write into it
        is_run = (run_dir / "architecture.json").is_file()
        with run_lock(run_dir, f"python -m export {run_dir}") if is_run else contextlib.nullcontext():
            if is_run:
                _log_to(run_dir)
            if args.original:
                original, wrote = prepare_original(run_dir, args.original_weights)
                if wrote:
                    print(f"wrote {original}: the unpruned generator of {run_dir}, "
                          f"{read_original(run_dir)['weights']['text']}")
                run_dir = original
            manifest = export_run(run_dir, options)
    except GateFailure as exc:
        print_figures(exc.figures, sys.stderr)
        end_line(f"error: {exc}")
        return 1
    except ExportError as exc:
        end_line(f"error: {exc}")
        return 1
    out = Path(args.out) if args.out else run_dir / "export"
    asked = [e for e in manifest["files"] if e["dtype"] in options.dtypes]  # what this command was asked for
    if manifest.get("skipped"):
        print(f"export skipped (unchanged): {out / 'manifest.json'} holds "
              f"{', '.join(file_title(e) for e in asked)} of this run and these options (--force re-exports)")
        return 0
    print_figures(asked)
    if manifest.get("gate_failures"):
        print("gate failures accepted: " + "; ".join(manifest["gate_failures"]))
        for hint in filter(None, map(int8_target_hint, asked)):
            print(f"to try: {hint}")
    print(f"wrote {out / 'manifest.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m export``; returns the exit status (module docstring)."""
    return run_cli(lambda: _run(argv))


if __name__ == "__main__":
    sys.exit(main())
