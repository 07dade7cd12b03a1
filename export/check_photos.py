"""``python -m export.check_photos RUN_DIR|--latest RUNS --photos DIR [DIR ...]``: an installed export measured
on your photos (``make check-photos PHOTOS=DIR [RUN=DIR]``).

The export gates every file on the photographs scikit-image ships (:mod:`export.photos`); a phone that will see
other pictures (scans, night shots, drawings, a domain of its own) deserves the same gates on those. This command
runs every .tflite of the export (``RUN_DIR/export``, or ``--export-dir``) in every runtime
(:data:`quantize.litert.RUNTIMES`: LiteRT and tflite-runtime) on the photos of the folders, and, for pix2pix, on
edge maps drawn from them with the unseen set's recipe (the family registry's ``unseen_input_kinds``), against the
PyTorch generator the export was made from. It measures only: nothing of the export changes, and no file is
calibrated or chosen on these photos, so they stay unseen.

Figures and gates are the export's (:mod:`export.parity`): PSNR (dB) over [-1, 1], pooled over every pixel and per
image; fp32 >= 60, fp16 >= 45, int8 >= 30 pooled and >= 27 on the worst image, in every runtime.

Output: one line per file and runtime (pooled and worst-image PSNR, the worst image's name, met / MISSED), the
lowest images of each int8 file; ``--out FILE.json`` also writes every per-image figure (temp file, then rename).

Exit status: 0 every gate met; 1 a gate missed (each named) or a runtime cannot run a file; 2 bad input (a folder
that does not exist or holds no photo, an unreadable photo, a run without an export, an export made from another
``generator.pt`` or whose files changed since, a generator whose input is noise), one line, no traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from compress.cli_errors import run_cli
from compress.errors import InputError
from compress.io import atomic_write_json, sha256_file
from export.parity import (GATES_DB, MIN_IMAGE_GATES_DB, figure_failures, file_title, float_from_json,
                           format_db, json_float, parity)
from export.photos import photo_set, square_photo
from export.pipeline import MANIFEST, read_manifest
from quantize.litert import DEFAULT_RUNTIME, RUNTIMES, run_tflite, runtime_version
from quantize.metrics import psnr_db

LOGGER = logging.getLogger("coronetgan.export")

#: File name endings read as photos (case-insensitive); other files in the folders are left out.
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Photos read at most by default (sorted by path); ``--limit`` changes it.
DEFAULT_LIMIT = 200
#: Lowest images listed per int8 file and runtime on the console.
LOWEST_SHOWN = 5


def load_photos(folders: Sequence[str | Path], limit: int = DEFAULT_LIMIT) -> list[tuple[str, Image.Image]]:
    """The photos of ``folders`` (not recursive), each RGB and centre-cropped to a square (:func:`square_photo`).

    Args:
        folders: folders of image files (:data:`PHOTO_SUFFIXES`; other files are left out).
        limit: at most this many photos, the first by path (count >= 1).
    Returns:
        (name, image) pairs, name = the file name without its ending, or the file's path where two photos share
        that name.
    Raises:
        InputError: a folder that does not exist, no photo in any folder, a photo that cannot be read (named), or
            ``limit`` < 1.
    """
    if limit < 1:
        raise InputError(f"--limit {limit}: expected a count >= 1 of photos")
    paths = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise InputError(f"--photos {folder}: not a folder; expected a folder of photos "
                             f"({', '.join(PHOTO_SUFFIXES)})")
        paths += sorted(p for p in folder.iterdir()
                        if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith("."))
    if not paths:
        raise InputError(f"--photos {' '.join(map(str, folders))}: no photo found; expected files ending in "
                         f"{', '.join(PHOTO_SUFFIXES)}")
    if len(paths) > limit:
        LOGGER.warning("using the first %d of %d photos (--limit raises it)", limit, len(paths))
        paths = paths[:limit]
    stems = [p.stem for p in paths]
    photos = []
    for p in paths:
        try:
            with Image.open(p) as img:
                img.load()
                photos.append(square_photo(img))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"{p}: not a readable image ({type(exc).__name__}: {exc}); expected a photo "
                             f"({', '.join(PHOTO_SUFFIXES)})") from None
    names = [str(p) if stems.count(p.stem) > 1 else p.stem for p in paths]
    return list(zip(names, photos))


def _export_manifest(run_dir: Path, export_dir: Path) -> dict:
    """The export's manifest, checked to belong to ``run_dir``'s generator.pt and to its files as they are.
    Raises InputError naming the file otherwise."""
    manifest, problem = read_manifest(export_dir / MANIFEST)
    if manifest is None:
        raise InputError(f"{export_dir / MANIFEST}: {problem}; expected the manifest that python -m export "
                         f"{run_dir} writes")
    made_from = (manifest.get("source") or {}).get("generator_pt_sha256")
    if made_from != sha256_file(run_dir / "generator.pt"):
        raise InputError(f"{export_dir / MANIFEST}: made from another generator.pt than {run_dir / 'generator.pt'}"
                         f"; export it again (python -m export {run_dir} --force)")
    for entry in manifest["files"]:
        path = export_dir / entry["path"]
        if entry.get("format") == "tflite" and (not path.is_file() or sha256_file(path) != entry["sha256"]):
            raise InputError(f"{path}: missing or changed since the export wrote {export_dir / MANIFEST}; export "
                             f"again (python -m export {run_dir} --force)")
    return manifest


def check_photos(run_dir: str | Path, folders: Sequence[str | Path], *, export_dir: str | Path | None = None,
                 limit: int = DEFAULT_LIMIT, threads: int = 2) -> dict:
    """Measure every .tflite of a run's export on the photos of ``folders`` (module docstring).

    Args:
        run_dir: a finished compress run (``generator.pt`` + ``architecture.json``) that was exported.
        folders: folders of photos (:func:`load_photos`).
        export_dir: the export folder (default ``run_dir/export``).
        limit: at most this many photos.
        threads: interpreter threads (count >= 1).
    Returns:
        {"run_dir", "export_dir", "photos": {"set", "files", "kinds", "count", "size_hw", ...}, "files": [{"path",
        "dtype", "label", "gate_db", "min_image_gate_db" (int8), "runtimes": {runtime: {"version", "ok", and
        "psnr_db", "min_image_psnr_db", "worst_image", "max_abs_diff", "per_image_psnr_db" {name: dB}, or
        "error"}}}], "gate_failures": [one line each]}; PSNR in dB ("inf" for identical outputs).
    Raises:
        InputError: bad photos (:func:`load_photos`), a run or export that cannot be read or does not match
            (:func:`_export_manifest`), a generator whose input is not an image, ``threads`` < 1.
    """
    from compress.artifacts import load_generator

    if threads < 1:
        raise InputError(f"--threads {threads}: expected an integer >= 1 (interpreter threads)")
    photos = load_photos(folders, limit)
    run_dir = Path(run_dir)
    generator, _ = load_generator(run_dir)
    export_dir = Path(export_dir) if export_dir is not None else run_dir / "export"
    manifest = _export_manifest(run_dir, export_dir)
    family = manifest.get("family")
    shape = (manifest.get("input") or {}).get("onnx_shape")
    if not (isinstance(family, str) and isinstance(shape, list) and len(shape) == 4):
        raise InputError(f"{export_dir / MANIFEST}: no 'family' and 'input.onnx_shape' [1, C, H, W]; expected a "
                         f"manifest of this version of python -m export (export again: python -m export {run_dir} "
                         "--force)")
    size = tuple(int(v) for v in shape[2:])
    inputs = photo_set(family, photos, size, {"set": "your photos: " + ", ".join(map(str, folders)),
                                              "files": [n for n, _ in photos]})
    if inputs is None:
        raise InputError(f"{run_dir}: the {family} generator's input is a noise vector, not an image; there is "
                         "nothing to measure on photos")
    LOGGER.info("%d inputs from %d photos at %d x %d", len(inputs.inputs), len(photos), *size)
    with torch.no_grad():
        reference = np.concatenate([generator(torch.from_numpy(inputs.inputs[i:i + 16])).numpy()
                                    for i in range(0, len(inputs.inputs), 16)])
    files, failures = [], []
    for entry in manifest["files"]:
        if entry.get("format") != "tflite":
            continue
        dtype, title = entry["dtype"], file_title(entry)
        record = {"path": entry["path"], "dtype": dtype, "label": entry.get("label", dtype),
                  "gate_db": GATES_DB[dtype], "runtimes": {}}
        worst_gate = MIN_IMAGE_GATES_DB.get(dtype)
        if worst_gate is not None:
            record["min_image_gate_db"] = worst_gate
        for rt in RUNTIMES:
            LOGGER.info("%s in %s", entry["path"], rt)
            result = {"version": runtime_version(rt)}
            try:
                out = run_tflite(export_dir / entry["path"], inputs.inputs, threads, rt)
            except Exception as exc:  # the runtimes raise RuntimeError/ValueError/ImportError: "does not run"
                record["runtimes"][rt] = {**result, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:600]}
                failures.append(f"{title}: does not run in {rt} {result['version']}: {exc}"[:300])
                continue
            fig = parity(reference, out)
            per_image = {n: json_float(psnr_db(r, o)) for n, r, o in zip(inputs.names, reference, out)}
            record["runtimes"][rt] = {**result, "ok": True, "psnr_db": json_float(fig["psnr_db"]),
                                      "min_image_psnr_db": json_float(fig["min_image_psnr_db"]),
                                      "worst_image": inputs.names[fig["worst_image"]],
                                      "max_abs_diff": fig["max_abs_diff"], "per_image_psnr_db": per_image}
            failures += figure_failures(title, record["runtimes"][rt], "--photos", GATES_DB[dtype], worst_gate,
                                        "" if rt == DEFAULT_RUNTIME else f" in {rt}")
        files.append(record)
    return {"run_dir": str(run_dir), "export_dir": str(export_dir), "photos": inputs.description,
            "files": files, "gate_failures": failures}


def print_report(report: dict, stream=None) -> None:
    """The console form of a :func:`check_photos` report: one line per file and runtime, the lowest images of
    each int8 file, then every missed gate."""
    stream = stream or sys.stdout
    photos = report["photos"]
    print(f"{photos['count']} inputs ({', '.join(photos['kinds'])}) from {len(photos['files'])} photos at "
          f"{photos['size_hw'][0]} x {photos['size_hw'][1]}; PSNR against PyTorch (dB, pooled / worst image)",
          file=stream)
    for f in report["files"]:
        gate = f"{f['gate_db']:g}" + (f" / {f['min_image_gate_db']:g}" if "min_image_gate_db" in f else "")
        for rt, r in f["runtimes"].items():
            name = f"{f['path']} ({f['label']})" if f["label"] != f["dtype"] else f["path"]
            if not r["ok"]:
                print(f"{name:60s} {rt:15s} FAILS: {r['error'][:200]}", file=stream)
                continue
            print(f"{name:60s} {rt:15s} {format_db(r['psnr_db']):>7s} / {format_db(r['min_image_psnr_db']):>7s} "
                  f"({r['worst_image']})  gate {gate}", file=stream)
            if f["dtype"] == "int8":
                lowest = sorted(r["per_image_psnr_db"].items(), key=lambda kv: float_from_json(kv[1]))
                print("    lowest: " + ", ".join(f"{n} {format_db(v)}" for n, v in lowest[:LOWEST_SHOWN]), file=stream)
    if report["gate_failures"]:
        print("gates MISSED on your photos: " + "; ".join(report["gate_failures"]), file=stream)
    else:
        print("every gate met on your photos", file=stream)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.check_photos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", help="the exported compress run (generator.pt + architecture.json)")
    p.add_argument("--latest", metavar="RUNS", help="the newest finished run under this folder instead "
                                                    "(as python -m export --latest)")
    p.add_argument("--photos", nargs="+", required=True, metavar="DIR",
                   help=f"folders of photos ({', '.join(PHOTO_SUFFIXES)}; not recursive)")
    p.add_argument("--export-dir", metavar="DIR", help="the export folder (default RUN_DIR/export)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                   help=f"at most this many photos, the first by name (default {DEFAULT_LIMIT})")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads (default 2)")
    p.add_argument("--out", metavar="FILE", help="also write the figures, every image's included, as JSON here")
    return p


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (args.run_dir is None) == (args.latest is None):
        raise InputError("give exactly one of RUN_DIR or --latest RUNS")
    if args.out is not None and Path(args.out).is_dir():
        raise InputError(f"--out {args.out}: a folder; expected a file name for the JSON figures")
    from export.__main__ import latest_run

    run_dir = Path(args.run_dir) if args.run_dir else latest_run(args.latest)
    report = check_photos(run_dir, args.photos, export_dir=args.export_dir, limit=args.limit,
                          threads=args.threads)
    print_report(report)
    if args.out is not None:
        print(f"wrote {atomic_write_json(args.out, report)}")
    return 1 if report["gate_failures"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m export.check_photos``; returns the exit status (module docstring)."""
    return run_cli(lambda: _run(argv))


if __name__ == "__main__":
    sys.exit(main())
