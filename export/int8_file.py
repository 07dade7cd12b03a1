"""The int8 .tflite of an export: equalised generator -> ONNX -> onnx2tf SavedModel -> :mod:`quantize`.

The fp32/fp16 files are the generator as trained (``generator.onnx``). The int8 file is made from a function-
preserving rewrite of it (:func:`quantize.equalize.equalise_for_int8`: BatchNorm folded, InstanceNorm inputs and
cross-layer ranges equalised on the representative dataset), exported and converted on its own; its ONNX is
checked against the *original* PyTorch generator with the ONNX gate (onnxruntime, max abs diff <= 1e-4), so an
equalisation that changed the function stops the export. ``ExportOptions.int8_equalise = False`` quantizes the
plain generator's SavedModel instead (the comparison in docs/export.md).

Input/output ranges are fixed, not calibrated (:func:`quantize.int8.fix_io_ranges`): images [-1, 1]; DCGAN's
noise input z ~ N(0, 1) gets :data:`NOISE_RANGE`.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from export.onnx_export import check_onnx, export_onnx
from export.options import ExportOptions
from quantize import FLOAT_OPS, quantize_saved_model
from quantize.equalize import equalise_for_int8
from quantize.int8 import IMAGE_RANGE

#: Fixed int8 range of a N(0, 1) noise input: +-4 sigma (an entry falls outside with probability 6.3e-5).
NOISE_RANGE = (-4.0, 4.0)


def build_int8_file(staging: Path, generator: torch.nn.Module, shape: tuple, sets, options: ExportOptions,
                    plain_saved_model: Path, sample_data: np.ndarray) -> tuple[Path, float, dict]:
    """Make the int8 file in ``staging`` (module docstring).

    Args:
        staging: the export's staging folder (work files go to ``staging/int8_work``).
        generator: the PyTorch generator (eval mode), not modified.
        shape: its ONNX input shape (1, C, H, W).
        sets: :class:`export.inputs.InputSets` (calibration = representative dataset, heldout for the ONNX check).
        options: the export options (int8 mode, I/O dtype, float ops, target, equalisation).
        plain_saved_model: onnx2tf SavedModel of the plain generator (used when equalisation is off).
        sample_data: onnx2tf's sample-data array (:func:`export.tflite_convert.sample_data_from_inputs`).
    Returns:
        (path of the int8 .tflite in staging, seconds spent here, manifest detail dict).
    Raises:
        ExportError: ONNX export/conversion failure, or an equalised ONNX that differs from PyTorch.
    """
    from export.tflite_convert import run_onnx2tf

    t0 = time.perf_counter()
    detail: dict = {"equalisation": None}
    saved_model = plain_saved_model
    if options.int8_equalise:
        work = staging / "int8_work"
        work.mkdir(parents=True, exist_ok=True)
        equalised, report = equalise_for_int8(generator, sets.calibration)
        onnx_path = export_onnx(equalised, shape, work / "generator_equalised.onnx")
        report["onnx_max_abs_diff"] = check_onnx(onnx_path, generator, sets.heldout)["max_abs_diff"]
        saved_model = run_onnx2tf(onnx_path, work / "onnx2tf", work / "cwd", sample_data)["saved_model"]
        detail["equalisation"] = report
    float_ops = tuple(FLOAT_OPS) + tuple(o for o in options.extra_float_ops if o not in FLOAT_OPS)
    noise = sets.description.get("kind") == "noise"
    source = sets.calibration[:len(sets.calibration) - sets.description.get("target_domain_count", 0)]
    result = quantize_saved_model(saved_model, sets.calibration, mode=options.int8_mode, io_dtype=options.int8_io,
                                  per_channel=options.int8_weights == "per-channel",
                                  float_ops=float_ops, target_db=options.int8_target_db,
                                  input_range=NOISE_RANGE if noise else IMAGE_RANGE, output_range=IMAGE_RANGE,
                                  correction_nchw=source)
    path = staging / "int8.tflite"
    path.write_bytes(result.content)
    detail.update({
        "precision": "int8", "int8_mode": options.int8_mode, "int8_io": options.int8_io,
        "weight_quantization": f"{options.int8_weights} int8 (convolutions in int8), int32 biases",
        "float_denylist": list(float_ops) if options.int8_mode == "robust" else [],
        "fixed_ranges": {"input": list(NOISE_RANGE if noise else IMAGE_RANGE), "output": list(IMAGE_RANGE)}
        if options.int8_mode == "robust" else None,
        "float_nodes": result.float_nodes, "float_selection": result.selection,
        "bias_correction": result.bias_correction, "norm_input_ranges": result.norm_ranges,
        "calibration_count": int(len(sets.calibration)),
        "calibration_scaling": "NHWC float32 in the generator's input range ([-1, 1] images, x / 127.5 - 1; "
                               "N(0,1) noise for dcgan), no mean/std"})
    return path, time.perf_counter() - t0, detail
