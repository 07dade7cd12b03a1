"""``export_run``: compress run folder -> ONNX -> TFLite fp32/fp16/int8, gates, GPU check, manifest.

Output folder (default ``RUN_DIR/export/``)::

    generator.onnx            fixed 1 x C x H x W input "input", output "output" (NCHW); H x W is the
                              training size, or ``ExportOptions.input_size`` (:func:`export.inputs.export_input_shape`)
    generator_fp32.tflite     NHWC input/output, float32
    generator_fp16.tflite     NHWC, fp16 weights (DEQUANTIZE ops), float32 I/O
    generator_int8.tflite     NHWC, int8 from the equalised generator (export/int8_file.py); its label, composition,
                              mode and I/O in the manifest (every .tflite: ``file_bytes``, where its bytes go)
    manifest.json             written LAST; its presence means every file it lists is complete

Atomicity: everything is produced in a private staging folder beside the output folder
(``.<name>.staging-<pid>-*``, removed at the end, and by the next export when its process was killed). Only when every requested conversion succeeded and every gate passed (or
``ExportOptions.accept_gate_failure``) are the files moved into place (``os.replace``, atomic per file) after
the old manifest has been removed, and the new manifest is written last with
:func:`compress.io.atomic_write_json`.
A failed export leaves the previous export's files untouched (but with its manifest removed when the
install had started) and never a manifest. An export that missed a gate (without ``accept_gate_failure``) keeps
its complete files aside in ``.<name>.missed`` beside the output folder: the same export again (same run files,
options, tools and dtypes) fails at once from them, or with ``accept_gate_failure`` installs them without
converting again; any other export leaves them, an installed one removes them. An export skipped as unchanged whose installed files missed a gate
(accepted earlier) raises :class:`GateFailure` again unless ``accept_gate_failure`` is set.

Skip-if-unchanged: the manifest's ``source`` holds the SHA-256 of ``generator.pt`` and ``architecture.json``,
``options`` the export settings and ``converter_versions`` the tools; when all match, every requested dtype is
in the manifest and every listed file still has its recorded SHA-256, the export is skipped
(``ExportOptions.force`` re-exports). Dtypes exported earlier from the same source and not requested now are
kept in the manifest with their calibration facts (``inputs``) and timings; every file is judged by this
code's gates, a kept or skipped one included.

Errors: :class:`compress.errors.InputError` for bad user input (missing run folder, corrupt weights, an
unreadable manifest of an earlier export without ``force``,
architecture/weights mismatch, empty calibration folder; bad options already when
:class:`export.options.ExportOptions` is built); :class:`export.onnx_export.ExportError` when a converter fails;
:class:`GateFailure` when a quality gate is missed.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from compress.errors import InputError
from compress.io import atomic_write_json, replace_dir, sha256_file, staging_dir
from export.inputs import export_input_shape, resolve_input_sets, takes_image_input
from export.onnx_export import INPUT_NAME, ORT_MAX_ABS_DIFF, OUTPUT_NAME, ExportError, check_onnx, export_onnx
from export.options import DTYPES, ExportOptions
from export.parity import (GATES_DB, MIN_IMAGE_GATES_DB, file_figures, file_title, gate_failures, int8_target_hint,
                            io_details)
from export.representative import representative_sets
from quantize.composition import describe, file_bytes, int8_label
from quantize.litert import run_tflite

LOGGER = logging.getLogger("coronetgan.export")

FILE_NAMES = {"onnx": "generator.onnx", "fp32": "generator_fp32.tflite", "fp16": "generator_fp16.tflite",
              "int8": "generator_int8.tflite"}
MANIFEST = "manifest.json"
#: Format of manifest.json; an export of another version is redone rather than skipped.
MANIFEST_VERSION = 4

#: The packages whose code writes the exported files and the manifest: a change to any of them redoes an export
#: that would otherwise be skipped as unchanged (its files or manifest fields may differ).
_EXPORT_CODE = ("export", "quantize")


@functools.lru_cache(maxsize=1)
def export_code_sha256() -> str:
    """SHA-256 over the names and bytes of the ``.py`` files of :data:`_EXPORT_CODE` (this checkout's export code),
    recorded in the manifest as ``source.export_code_sha256`` and part of skip-if-unchanged."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for package in _EXPORT_CODE:
        for f in sorted((root / package).glob("*.py")):
            h.update(f"{package}/{f.name}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


class GateFailure(RuntimeError):
    """A quality gate was missed; ``.figures`` holds the per-file figures and ``.failures`` the reasons."""

    def __init__(self, message: str, figures: list[dict], failures: list[str]):
        super().__init__(message)
        self.figures = figures
        self.failures = failures


def converter_versions() -> dict[str, str]:
    """Versions of every tool that touches the exported files."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "onnx", "onnxruntime", "onnxsim", "onnx2tf", "tensorflow", "ai-edge-litert", "tflite-runtime",
                "scikit-image", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _source_info(run_dir: Path) -> dict:
    return {"run_dir": str(run_dir.resolve()),
            "generator_pt_sha256": sha256_file(run_dir / "generator.pt"),
            "architecture_json_sha256": sha256_file(run_dir / "architecture.json"),
            "export_code_sha256": export_code_sha256()}


def read_manifest(path: Path) -> tuple[dict | None, str | None]:
    """(manifest, None), or (None, what is wrong with the file at ``path``: unreadable, not JSON, or an entry of
    ``files`` without the ``dtype`` / ``path`` / ``sha256`` / ``size_bytes`` that skip, merge and install read)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: JSON and UTF-8 errors
        return None, (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
    if not (isinstance(data, dict) and isinstance(data.get("files"), list)):
        return None, "not an object with a 'files' list"
    for i, e in enumerate(data["files"]):   # what skip, merge and install read of every entry
        if not isinstance(e, dict):
            return None, f"files[{i}] is not an object"
        for key, kind in (("dtype", str), ("path", str), ("sha256", str), ("size_bytes", int)):
            if not isinstance(e.get(key), kind) or isinstance(e.get(key), bool):
                return None, f"files[{i}] has no {kind.__name__} {key!r}"
        if e["dtype"] not in FILE_NAMES:
            return None, f"files[{i}] has dtype {e['dtype']!r}; expected one of {', '.join(FILE_NAMES)}"
    return data, None


def _load_manifest(out_dir: Path, force: bool) -> dict | None:
    """The earlier export's manifest, None when there is none. One that exists but cannot be read (corrupt,
    not an object, unreadable) raises InputError unless ``force``: it is what says which files are complete, and
    the export would otherwise treat every file of another dtype as stale and remove it."""
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    data, problem = read_manifest(path)
    if problem is None:
        return data
    if not force:
        raise InputError(f"{path}: cannot be read as the earlier export's manifest ({problem}); it says which "
                         "files of this folder are complete. Pass --force to export again from scratch (files of "
                         "dtypes not exported now are then removed), or restore the file")
    LOGGER.warning("%s: unreadable (%s); --force: exporting from scratch", path, problem)
    return None


def _files_intact(out_dir: Path, entries: Iterable[dict]) -> bool:
    for e in entries:
        if not isinstance(e.get("path"), str) or Path(e["path"]).name != e["path"] or e["path"] in (".", ".."):
            return False  # an export lists bare file names of its own folder; anything else is not ours to keep
        p = out_dir / e["path"]
        if not p.is_file() or p.stat().st_size != e["size_bytes"] or sha256_file(p) != e["sha256"]:
            return False
    return True


def _same_source(old: dict | None, source: dict, recorded: dict) -> bool:
    if not old or old.get("manifest_version") != MANIFEST_VERSION:
        return False
    src = old.get("source", {})
    return (src.get("generator_pt_sha256") == source["generator_pt_sha256"]
            and src.get("export_code_sha256") == source["export_code_sha256"]
            and src.get("architecture_json_sha256") == source["architecture_json_sha256"]
            and old.get("options") == recorded
            and old.get("converter_versions") == converter_versions())  # other tools make other files


def _options_record(options: ExportOptions) -> dict:
    """The options that change the exported files, as recorded in the manifest (part of skip-if-unchanged)."""
    return {"heldout_count": options.heldout_count, "int8_io": options.int8_io, "int8_mode": options.int8_mode,
            "int8_weights": options.int8_weights, "int8_activations": options.int8_activations,
            "keep_tensor_names": options.keep_tensor_names,
            "fid_count": options.fid_count, "extra_float_ops": list(options.extra_float_ops),
            "int8_target_db": float(options.int8_target_db), "calibration_count": options.calibration_count,
            "int8_equalise": options.int8_equalise,
            "calibration_dir": str(options.calibration_dir.resolve()) if options.calibration_dir else None,
            "input_size": options.input_size}


def export_run(run_dir: str | os.PathLike, options: ExportOptions) -> dict:
    """Export the pruned generator of ``run_dir`` (module docstring) with the settings of ``options``.

    Args:
        run_dir: a finished compress run (``generator.pt`` + ``architecture.json``).
        options: dtypes, output folder, calibration/held-out counts, int8 recipe, FID count, threads
            (:class:`export.options.ExportOptions`, validated when it was built).
    Returns:
        the manifest dict written to ``manifest.json`` (with ``"skipped": True`` when nothing had to be done).
    Raises:
        InputError, ExportError, GateFailure (module docstring).
    """
    from compress.macs import count_macs, count_params
    from compress.artifacts import load_generator

    run_dir = Path(run_dir)
    wanted = options.dtypes
    generator, arch = load_generator(run_dir)  # InputError: missing folder/files, corrupt, mismatch
    out_dir = options.out_dir if options.out_dir is not None else run_dir / "export"
    if out_dir.name in ("", ".", ".."):    # the staging and missed folders are named after the folder
        out_dir = out_dir.resolve()
        if not out_dir.name:
            raise InputError(f"--out {options.out_dir}: the file system root; expected a folder for the exported "
                             "files")
    source = _source_info(run_dir)
    recorded = _options_record(options)
    old = _load_manifest(out_dir, options.force)
    if not options.force and _same_source(old, source, recorded):
        have = {e["dtype"] for e in old.get("files", [])}
        if set(wanted) <= have and _files_intact(out_dir, old["files"]):
            LOGGER.info("export of %s is up to date (%s): skipped", run_dir, out_dir / MANIFEST)
            # the gates of the stored figures, as this code draws them (the ONNX file feeds every .tflite)
            missed = gate_failures([e for e in old["files"] if e["dtype"] in ("onnx", *wanted)],
                                   int(old.get("params") or 0), ORT_MAX_ABS_DIFF)
            if missed and not options.accept_gate_failure:
                # installed by an earlier --accept-gate-failure: unchanged, but it still missed its gates
                raise GateFailure(f"the installed export in {out_dir} is up to date but missed its gate(s) (installed "
                                  "earlier with --accept-gate-failure): " + "; ".join(missed) +
                                  " (pass --accept-gate-failure to accept it)",
                                  [e for e in old["files"] if e["dtype"] in wanted], missed)
            return {**old, "skipped": True}
    missed_dir = _missed_dir(out_dir)
    if not options.force:
        kept = _missed_export(missed_dir, source, recorded, wanted)
        if kept is not None:  # the files of an export that missed its gates, from this run, options and tools
            return _gate_and_install(missed_dir, kept, missed_dir, out_dir, old, source, recorded, options)

    shape = export_input_shape(arch, generator, options.input_size)  # InputError: a size it cannot take
    sets = resolve_input_sets(arch, input_shape=shape, calibration_dir=options.calibration_dir,
                              calibration_count=options.calibration_count, heldout_count=options.heldout_count,
                              need_calibration="int8" in wanted)
    if "int8" in wanted:
        sets = representative_sets(arch, sets)
    with torch.no_grad():
        reference = generator(torch.from_numpy(sets.heldout)).numpy()

    staging = staging_dir(out_dir.parent, f".{out_dir.name}.staging")  # and removes those of killed exports
    try:
        manifest = _export_in(staging, run_dir, generator, arch, shape, sets, reference, options)
        manifest.update({
            "manifest_version": MANIFEST_VERSION,
            "model": f"{arch['family']}:{run_dir.resolve().name}",
            "family": arch["family"],
            "macs": int(count_macs(generator, shape)),
            "params": int(count_params(generator)),
            "macs_convention": "compress.macs (conv MACs at output resolution, ConvTranspose included), at the "
                               "exported input size",
            "image_size_hw": [int(s) for s in reference.shape[2:]],  # what the file takes/gives (DCGAN: gives)
            "training_input_shape": [int(s) for s in arch["input_shape"]],
            "source": source,
            "options": recorded,
            "inputs": sets.description,
            "converter_versions": converter_versions(),
            "gates_db": {d: GATES_DB[d] for d in wanted},
            "min_image_gates_db": {d: MIN_IMAGE_GATES_DB[d] for d in wanted if d in MIN_IMAGE_GATES_DB},
            "onnx_gate_max_abs_diff": ORT_MAX_ABS_DIFF,
        })
        return _gate_and_install(staging, manifest, missed_dir, out_dir, old, source, recorded, options)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _missed_dir(out_dir: Path) -> Path:
    """``.<out>.missed`` beside the output folder: the last export that missed a gate and was not installed."""
    return out_dir.with_name(f".{out_dir.name}.missed")


def _missed_export(missed_dir: Path, source: dict, recorded: dict, wanted: Sequence[str]) -> dict | None:
    """The manifest of the export kept in ``missed_dir`` when it was made from this run's files with these options,
    tools and dtypes and its files are intact; else None (a stale or damaged one is removed; one of other dtypes
    is left for the command that asks for them)."""
    if not missed_dir.is_dir():
        return None
    manifest, problem = read_manifest(missed_dir / MANIFEST)
    if problem is None and _same_source(manifest, source, recorded) \
            and _files_intact(missed_dir, manifest.get("files", [])):
        if {e["dtype"] for e in manifest["files"]} - {"onnx"} == set(wanted):
            return manifest
        return None
    shutil.rmtree(missed_dir, ignore_errors=True)
    return None


def _gate_and_install(folder: Path, manifest: dict, missed_dir: Path, out_dir: Path, old: dict | None,
                      source: dict, recorded: dict, options: ExportOptions) -> dict:
    """Judge the files in ``folder`` (a new export's staging folder, or ``missed_dir`` holding an earlier export of
    the same run, options and tools) by this code's gates; install them when they pass or ``accept_gate_failure``,
    else keep them in ``missed_dir`` (with their manifest) and raise :class:`GateFailure`."""
    failures = gate_failures(manifest["files"], manifest["params"], ORT_MAX_ABS_DIFF)
    manifest.update(gates_passed=not failures, gate_failures=failures)
    again = folder == missed_dir
    if failures and not options.accept_gate_failure:
        if not again:
            keep = {e["path"] for e in manifest["files"]}
            for p in folder.iterdir():   # the converter's work files (SavedModel, trial files) are not kept
                if p.name not in keep:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            atomic_write_json(folder / MANIFEST, manifest)
            replace_dir(folder, missed_dir)  # kept aside: a rerun that accepts the miss installs these files
        hints = [h for e in manifest["files"] if (h := int8_target_hint(e))]
        raise GateFailure("quality gate(s) missed" + (" (the same export as before)" if again else "") + ": "
                          + "; ".join(failures) + " (pass --accept-gate-failure to install anyway: the files wait "
                          f"in {missed_dir})" + "".join(f". To try: {h}" for h in hints), manifest["files"], failures)
    if again:
        LOGGER.info("installing the export kept in %s (same run, options and tools; no conversion)", missed_dir)
    manifest["gate_failures_accepted"] = bool(failures)
    (folder / MANIFEST).unlink(missing_ok=True)
    _install(folder, out_dir, manifest, old, source, recorded)
    shutil.rmtree(missed_dir, ignore_errors=True)  # installed, or an older miss that is no longer the latest export
    return manifest


def _export_in(staging: Path, run_dir: Path, generator, arch: dict, shape: tuple, sets, reference: np.ndarray,
               options: ExportOptions) -> dict:
    from export.finish import finish_tflite, finished_size
    from export.gpu_check import gpu_delegate_check
    from export.int8_file import build_int8_file
    from export.photos import unseen_inputs
    from export.tflite_convert import run_onnx2tf, sample_data_from_inputs

    wanted, threads = options.dtypes, options.threads
    timings: dict[str, float] = {}
    files: list[dict] = []
    t0 = time.perf_counter()
    onnx_path = export_onnx(generator, shape, staging / FILE_NAMES["onnx"])
    onnx_check = check_onnx(onnx_path, generator, sets.heldout, tolerance=math.inf)
    timings["onnx_s"] = time.perf_counter() - t0
    files.append({"path": FILE_NAMES["onnx"], "dtype": "onnx", "label": "onnx", "format": "onnx", "layout": "NCHW",
                  "max_abs_diff": onnx_check["max_abs_diff"], "checker": onnx_check["checker"],
                  "runtime": "onnxruntime (CPU)", "conversion_s": timings["onnx_s"]})

    t0 = time.perf_counter()
    samples = sets.heldout if len(sets.calibration) == 0 else sets.calibration
    sample_data = sample_data_from_inputs(samples)
    converted = run_onnx2tf(onnx_path, staging / "onnx2tf", staging / "work", sample_data)
    timings["onnx2tf_s"] = time.perf_counter() - t0
    products = {}
    if "fp32" in wanted:
        products["fp32"] = (converted["fp32"], timings["onnx2tf_s"], {"precision": "float32"})
    if "fp16" in wanted:
        products["fp16"] = (converted["fp16"], timings["onnx2tf_s"],
                            {"precision": "float16 weights (DEQUANTIZE to float32 at run time)"})
    # the size gate compares with the fp32 file as installed (after export.finish), exported now or not
    fp32_size = finished_size(converted["fp32"].read_bytes(), staging / "fp32_size_probe.tflite",
                              options.keep_tensor_names) if "int8" in wanted else None
    if "int8" in wanted:
        path, seconds, detail = build_int8_file(staging, generator, shape, sets, options, converted["saved_model"],
                                                sample_data, fp32_size, family=arch["family"])
        timings["int8_s"] = seconds
        products["int8"] = (path, seconds + (0.0 if options.int8_equalise else timings["onnx2tf_s"]), detail)

    unseen = unseen_inputs(arch["family"], (shape[2], shape[3]))
    unseen_reference = None
    if unseen is not None:
        with torch.no_grad():
            unseen_reference = generator(torch.from_numpy(unseen.inputs)).numpy()
    for dtype, (path, conv_s, detail) in products.items():
        final = staging / FILE_NAMES[dtype]
        os.replace(path, final)
        finished = finish_tflite(final, options.keep_tensor_names)
        names = finished.pop("tensor_names")   # None: the file keeps them
        detail = {**detail, **finished, **({} if names is None else {"tensor_names": names})}
        # ops and convolutions are named by their output tensors, whose names the compaction moved to the manifest
        composition = describe(final, names) if dtype == "int8" else None
        if dtype == "fp32":
            fp32_size = final.stat().st_size
        try:
            figures = file_figures(final, sets.heldout, reference, unseen, unseen_reference, threads)
        except RuntimeError as exc:
            raise ExportError(str(exc)) from exc
        io = io_details(final)
        # what the generator takes and gives, beside what the file's tensors can hold (value_range, int8 only)
        io["input"]["expected_range"] = [-1, 1] if takes_image_input(arch, generator) else None  # None: N(0,1)
        io["output"]["expected_range"] = [-1, 1]
        entry = {"path": FILE_NAMES[dtype], "dtype": dtype, "label": dtype, "format": "tflite", "layout": "NHWC",
                 **figures, "gate_db": GATES_DB[dtype], "conversion_s": conv_s,
                 "input": io["input"], "output": io["output"], "gpu_delegate": gpu_delegate_check(final),
                 "file_bytes": file_bytes(final), **detail}
        if dtype in MIN_IMAGE_GATES_DB:
            entry["min_image_gate_db"] = MIN_IMAGE_GATES_DB[dtype]
        if dtype == "int8":
            entry.update(_int8_composition(final, composition, fp32_size))
        if dtype == "int8" and options.fid_count > 0:
            entry["fid"] = _fid_change(run_dir, arch, generator, final, options.fid_count, threads, shape)
        files.append(entry)
        LOGGER.info("%s: PSNR %s dB, max abs diff %.3g", file_title(entry), figures["psnr_db"],
                    figures["max_abs_diff"])
    for entry in files:
        p = staging / entry["path"]
        entry["sha256"] = sha256_file(p)
        entry["size_bytes"] = p.stat().st_size
    nchw_out = [int(s) for s in reference.shape[1:]]
    manifest = {
        # the generator's own I/O (PyTorch, ONNX, the float files); each file's, int8 included, is in its entry
        "input": {"name": INPUT_NAME, "shape": [int(shape[0]), int(shape[2]), int(shape[3]), int(shape[1])],
                  "dtype": "float32", "layout": "NHWC",
                  **({"value_range": [-1, 1]} if takes_image_input(arch, generator) else
                     {"value_range": None, "distribution": "N(0, 1) noise"}),
                  "onnx_shape": list(shape), "onnx_layout": "NCHW"},
        "output": {"name": OUTPUT_NAME, "shape": [1, nchw_out[1], nchw_out[2], nchw_out[0]], "dtype": "float32",
                   "layout": "NHWC", "value_range": [-1, 1], "onnx_shape": [1, *nchw_out], "onnx_layout": "NCHW"},
        "files": files,
        "unseen_inputs": unseen.description if unseen is not None else None,
        "timings_s": timings,
    }
    manifest["tflite_signature"] = _signatures(files)
    return manifest


def _signatures(files: list[dict]) -> dict:
    """``{dtype: {"input", "output"}}``: the ``serving_default`` signature keys of each .tflite file (the
    converters name them per file: the int8 file's output is ``output_0``, the float files' ``output``)."""
    return {e["dtype"]: {"input": e["input"]["name"], "output": e["output"]["name"]}
            for e in files if e.get("format") == "tflite" and isinstance(e.get("input"), dict)}


def _int8_composition(path: Path, comp: dict, fp32_size: int) -> dict:
    """The manifest fields that say what the int8 file at ``path`` really is, from ``comp``
    (:func:`quantize.composition.describe` of it before its tensor names were dropped): its label, the int8 share
    of weight bytes and MACs, the ops left in float by name, hybrid ops, and its size against fp32 (both as
    installed)."""
    return {"label": int8_label(comp), "int8_share": comp["int8_share"], "weight_scales": comp["weight_scales"],
            "convolutions_float": len(comp["float_convolutions"]) + len(comp["hybrid_ops"]),
            "convolutions_total": comp["convolution_count"], "float_convolutions": comp["float_convolutions"],
            "hybrid_ops": comp["hybrid_ops"], "float_ops": comp["float_ops"], "float_op_names": comp["float_op_names"],
            "conversions": comp["conversions"],
            "weight_bytes": comp["weight_bytes"], "op_count": comp["op_count"],
            "size_ratio_to_fp32": path.stat().st_size / fp32_size}


def _install(staging: Path, out_dir: Path, manifest: dict, old: dict | None, source: dict,
             recorded: dict) -> None:
    """Move the staged files into ``out_dir`` and write the manifest last (module docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    new_dtypes = {e["dtype"] for e in manifest["files"]}
    kept = []
    if old and _same_source(old, source, recorded):  # keep other dtypes exported earlier from the same run
        kept = [e for e in old.get("files", []) if e["dtype"] not in new_dtypes
                and _files_intact(out_dir, [e])]
    (out_dir / MANIFEST).unlink(missing_ok=True)  # from here on, no manifest claims completeness
    for e in manifest["files"]:
        os.replace(staging / e["path"], out_dir / e["path"])
    keep_paths = {e["path"] for e in manifest["files"]} | {e["path"] for e in kept}
    removed = [stale for stale in FILE_NAMES.values() if stale not in keep_paths and (out_dir / stale).is_file()]
    for stale in removed:
        (out_dir / stale).unlink()
    if removed:   # files the new manifest cannot list: made from other weights, options, tools or export code
        LOGGER.warning("removed %s from %s: exported earlier from other weights, options, tools or export code "
                       "than this export (only %s now); export those dtypes again if you need them",
                       ", ".join(removed), out_dir, ", ".join(e["dtype"] for e in manifest["files"]))
    manifest["files"] = sorted(manifest["files"] + kept, key=lambda e: ["onnx", *DTYPES].index(e["dtype"]))
    manifest["tflite_signature"] = _signatures(manifest["files"])
    if kept:  # the kept files' facts, and their gates: a miss accepted earlier stays listed (and in the release)
        _carry_kept_facts(manifest, old, {e["dtype"] for e in kept})
        failures = gate_failures(manifest["files"], manifest["params"], ORT_MAX_ABS_DIFF)
        manifest.update(gates_passed=not failures, gate_failures=failures,
                        gate_failures_accepted=bool(failures),
                        gates_db={e["dtype"]: GATES_DB[e["dtype"]] for e in manifest["files"]
                                  if e["dtype"] in GATES_DB},
                        min_image_gates_db={e["dtype"]: MIN_IMAGE_GATES_DB[e["dtype"]] for e in manifest["files"]
                                            if e["dtype"] in MIN_IMAGE_GATES_DB})
    atomic_write_json(out_dir / MANIFEST, manifest)


def _is_calibration_fact(key: str) -> bool:
    """The keys of an export's ``inputs`` that describe its calibration inputs (the int8 file's alone)."""
    return key.startswith(("calibration", "target_domain")) or key == "heldout_left_out_of_calibration"


def _carry_kept_facts(manifest: dict, old: dict, kept_dtypes: set[str]) -> None:
    """Give a merged manifest the facts of the files kept from the earlier export ``old``: a kept int8 file's
    calibration inputs (an export without int8 loads none and records a count of 0) and the kept files' timings
    (``<dtype>_s``). Held-out inputs, options and tools are the same for both exports (:func:`_same_source`)."""
    if "int8" in kept_dtypes:
        facts = {k: v for k, v in (old.get("inputs") or {}).items() if _is_calibration_fact(k)}
        manifest["inputs"] = {**{k: v for k, v in manifest.get("inputs", {}).items()
                                 if not _is_calibration_fact(k)}, **facts}
    old_timings = old.get("timings_s") or {}
    manifest["timings_s"] = {**manifest.get("timings_s", {}),
                             **{f"{d}_s": old_timings[f"{d}_s"] for d in kept_dtypes if f"{d}_s" in old_timings}}


def _fid_change(run_dir: Path, arch: dict, generator, int8_path: Path, count: int, threads: int,
                shape: tuple) -> dict:
    """FID and KID of the PyTorch fp32 outputs and of the int8 TFLite outputs, on the same inputs, against the
    same real images: the protocol of ``python -m compress.evaluate`` (:func:`compress.evaluate.core.evaluation_data`,
    family default real set, cached reference statistics), with at most ``count`` inputs (DCGAN: ``count``
    samples, z seed 0). The FID change of int8 is ``fid_int8 - fid_fp32``; both use the same N, so the
    small-sample bias of FID cancels in the difference.

    FID is a figure, not a gate: when the dataset is missing, the reason is recorded under ``skipped``. Image
    inputs are resized (bicubic) to the exported ``shape`` (1, C, H, W) when it is not the training size.
    """
    from compress.evaluate import distance, reference
    from compress.evaluate.core import EvalSettings, check_run_dir, evaluation_data, generate

    t0 = time.perf_counter()
    try:
        files = check_run_dir(run_dir)
        settings = EvalSettings(num_samples=count).resolved(arch["family"])
        data = evaluation_data(arch, files.config, settings)
    except InputError as exc:
        return {"skipped": str(exc)}
    x = data.inputs
    if tuple(x.shape[2:]) != tuple(shape[2:]):  # images of the training size, file of another
        x = torch.nn.functional.interpolate(x, size=tuple(shape[2:]), mode="bicubic", align_corners=False).clamp(-1, 1)
    inputs = x.numpy().astype(np.float32)
    fp32 = generate(generator, x, progress=False)
    int8 = torch.from_numpy(run_tflite(int8_path, inputs, threads))
    real = reference.reference_statistics(data.real, name=data.real_label, progress=False)
    out = {"n_fake": int(len(inputs)), "n_real": int(len(real.features)), "protocol": data.description,
           "real_set": settings.real_set, "metric": "pool3 FID (fast) and unbiased KID, as compress.evaluate"}
    for name, images in (("fp32", fp32), ("int8", int8)):
        res = distance.fid_between(images.clamp(-1, 1), real, kid=True, fid_method="fast", progress=False)
        out[f"fid_{name}"] = res["fid"]
        out[f"kid_{name}"] = [res["kid_mean"], res["kid_std"]]
    out["fid_delta"] = out["fid_int8"] - out["fid_fp32"]
    out["seconds"] = time.perf_counter() - t0
    LOGGER.info("FID of int8 vs fp32 outputs (%d inputs): %.2f -> %.2f (%+.2f)", out["n_fake"], out["fid_fp32"],
                out["fid_int8"], out["fid_delta"])
    return out

