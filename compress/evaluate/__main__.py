"""``python -m compress.evaluate RUN_DIR [RUN_DIR ...]``: FID/KID, params, MACs and a grid for finished runs.

Examples::

    python -m compress.evaluate runs/h2z                        # testA -> the 1,474 train+test zebras
    python -m compress.evaluate runs/h2z --real-set testB       # only the 140 test zebras
    python -m compress.evaluate runs/dcgan-50 --num-samples 5000 --real-set train
    python -m compress.evaluate fid FOLDER_A FOLDER_B --kid     # FID/KID between two folders of images

``python -m compress.evaluate fid ...`` (first argument ``fid``) compares two folders of images instead, see
``python -m compress.evaluate fid --help`` (a run folder named ``fid`` is reached as ``./fid``).

Writes ``RUN_DIR/evaluation.json``, ``RUN_DIR/evaluation_grid.png`` and an "Evaluation" section in
``RUN_DIR/compression_report.md``; skipped when generator.pt / architecture.json and the settings are
unchanged since the last evaluation (``--force`` recomputes). Exit status 2 on bad input, 1 on an OS error of
the machine (no space...), 130 on Ctrl-C: one line, no traceback (docs/errors.md). A run folder being written
by another process (``python -m compress``, an export) is refused (:mod:`compress.runlock`).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Sequence

from compress.cli_errors import (Terminated, end_line, log_to_run_folder, os_error_exit, os_error_message,
                                 run_cli)
from compress.errors import InputError
from compress.evaluate import folders
from compress.evaluate.core import EvalSettings, evaluate_run
from compress.evaluate.metrics import KID_SUBSET_SIZE, KID_SUBSETS
from compress.families import FAMILIES
from compress.families.dcgan import DCGAN_DEFAULT_SAMPLES
from compress.progress import quiet
from compress.runlock import run_lock

LOGGER = logging.getLogger("coronetgan")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m compress.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run folder(s) of python -m compress")
    p.add_argument("--num-samples", type=int, default=None,
                   help=f"DCGAN: images to generate (default {DCGAN_DEFAULT_SAMPLES}); pix2pix/CycleGAN: at most "
                        "this many test inputs (default: all)")
    choices = sorted({c for family in FAMILIES.values() for c in family.real_sets})
    p.add_argument("--real-set", choices=choices, default=None,
                   help="real images: CycleGAN train+test (default, as GAN Compression) or testB; DCGAN train "
                        "(default), test or train+test; pix2pix: test (the paired test/val split)")
    p.add_argument("--max-real", type=int, default=None, help="use at most the first N real images (default all)")
    p.add_argument("--kid-subsets", type=int, default=KID_SUBSETS, help="KID subsets (default %(default)s)")
    p.add_argument("--kid-subset-size", type=int, default=KID_SUBSET_SIZE,
                   help="KID subset size, capped at the smaller set (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the DCGAN latent vectors (default 0)")
    p.add_argument("--batch-size", type=int, default=50, help="images per generator/Inception call")
    p.add_argument("--device", default=None, help="auto (default: cuda when present), cpu, cuda, cuda:N")
    p.add_argument("--cache-dir", default=None,
                   help="FID statistics cache (default $CORONETGAN_FID_CACHE or ~/.cache/coronetgan/fid)")
    p.add_argument("--force", action="store_true", help="recompute even when nothing changed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _setup_logging(run_dir: Path) -> logging.Handler | None:
    root = logging.getLogger("coronetgan")
    root.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in root.handlers):
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(sh)
    if not (run_dir / "architecture.json").is_file():  # not a finished run: nothing is written into it
        return None
    fh = logging.FileHandler(run_dir / "log.txt")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(fh)
    return fh


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0, 2 after printing ``error: ...`` for bad input (one run folder's error does not
    stop the others), or another status of :func:`compress.cli_errors.run_cli`."""
    return run_cli(lambda: _run(list(sys.argv[1:] if argv is None else argv)))


def _run(argv: list[str]) -> int:
    if argv[:1] == [folders.COMMAND]:
        return folders.main(argv[1:])
    args = build_parser().parse_args(argv)
    settings = EvalSettings(num_samples=args.num_samples, real_set=args.real_set, max_real=args.max_real,
                            kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, seed=args.seed,
                            batch_size=args.batch_size)
    status = 0
    for run_dir in args.run_dirs:
        handler = None
        try:
            # a folder that is no finished run is reported by evaluate_run; the lock and the log would write there
            is_run = (run_dir / "architecture.json").is_file()
            with run_lock(run_dir, f"python -m compress.evaluate {run_dir}") if is_run \
                    else contextlib.nullcontext():
                handler = _setup_logging(run_dir)
                with quiet(args.quiet):  # the data readers' bars too
                    ev = evaluate_run(run_dir, settings, device=args.device, force=args.force,
                                      cache_dir=args.cache_dir, progress=not args.quiet)
        except InputError as exc:
            end_line(f"error: {exc}")
            status = status or 2
            continue
        except KeyboardInterrupt as exc:  # run_cli prints it, after this run's log file is closed below
            log_to_run_folder(("terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"),
                              logging.WARNING)
            raise
        except OSError as exc:
            end_line(f"error: {os_error_message(exc)}")
            status = status or os_error_exit(exc)
            continue
        finally:
            if handler is not None:
                logging.getLogger("coronetgan").removeHandler(handler)
                handler.close()
        note = " (unchanged, skipped; --force recomputes)" if ev.get("skipped") else ""
        print(f"{run_dir}: FID {ev['fid']:.2f}, KID {ev['kid_mean']:.4f} ± {ev['kid_std']:.4f} "
              f"({ev['n_fake']} vs {ev['n_real']} {ev['real_set']}), {ev['params'] / 1e6:.3f} M params, "
              f"{ev['macs'] / 1e9:.4f} G MACs{note}")
    return status


if __name__ == "__main__":
    sys.exit(main())
