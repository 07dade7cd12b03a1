"""The int8 .tflite of an export: equalised generator -> ONNX -> onnx2tf SavedModel -> :mod:`quantize`.

The fp32/fp16 files are the generator as trained (``generator.onnx``). The int8 file is made from a function-
preserving rewrite of it (:func:`quantize.equalize.equalise_for_int8`: BatchNorm folded, InstanceNorm inputs and
cross-layer ranges equalised on the representative dataset), exported and converted on its own; its ONNX is
checked against the *original* PyTorch generator with the ONNX gate (onnxruntime, max abs diff <= 1e-4), so an
equalisation that changed the function stops the export. ``ExportOptions.int8_equalise = False`` quantizes the
plain generator's SavedModel instead (the comparison in docs/export.md).

Input/output ranges are fixed, not calibrated (:func:`quantize.int8.fix_io_ranges`): images [-1, 1]; DCGAN's
noise input z ~ N(0, 1) gets :data:`NOISE_RANGE`.

Weight scales (``ExportOptions.int8_weights``): "auto" (the default) makes the per-channel file and, for a
generator above the size gate's parameter count whose per-channel file misses the size gate, the per-tensor file
as well, which is kept when it meets the same validation targets with no more convolutions in float
(:func:`choose_weight_scales`); "per-channel" and "per-tensor" make that file alone. At about 0.1 M parameters the per-channel scales' quantization parameters (12 bytes
per output channel) are what decides the ratio (docs/export.md, "Size, what else was tried").
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from export.finish import finished_size
from export.onnx_export import check_onnx, export_onnx
from export.options import ExportOptions
from export.parity import INT8_SIZE_RATIO, SIZE_GATE_MIN_PARAMS
from quantize import FLOAT_OPS, quantize_saved_model
from quantize.equalize import equalise_for_int8
from quantize.int8 import IMAGE_RANGE

LOGGER = logging.getLogger("coronetgan.export")

#: Fixed int8 range of a N(0, 1) noise input: +-4 sigma (an entry falls outside with probability 6.3e-5).
NOISE_RANGE = (-4.0, 4.0)


def validation_figures(selection: dict) -> dict | None:
    """The validation PSNR of the file :func:`quantize.quantize_saved_model` made, from its float-selection report:
    {"validation_psnr_db", "validation_worst_db" (dB against the float model on the first calibration inputs),
    "float_convolutions" (count), "target_db", "worst_target_db"}; None when nothing was measured (naive mode,
    ``--int8-target-db 0``)."""
    trajectory = (selection or {}).get("trajectory") or []
    if not trajectory:
        return None
    last = trajectory[-1]
    return {"validation_psnr_db": float(last["validation_psnr_db"]),
            "validation_worst_db": float(last["validation_worst_db"]),
            "float_convolutions": int(last["float_convolutions"]),
            "target_db": float(selection["target_db"]), "worst_target_db": float(selection["worst_target_db"])}


def choose_weight_scales(candidates: dict[str, dict], params: int) -> tuple[str, str]:
    """Which int8 weight scales ``--int8-weights auto`` keeps.

    Args:
        candidates: {"per-channel": figures, and "per-tensor": figures when that file was made}, figures =
            {"size_ratio_to_fp32" (installed int8 bytes / installed fp32 bytes), "validation": the dict of
            :func:`validation_figures` or None}.
        params: the generator's parameter count (the size gate applies above
            :data:`export.parity.SIZE_GATE_MIN_PARAMS`).
    Returns:
        ("per-channel" | "per-tensor", why, in words). Per-tensor only when the per-channel file misses the size
        gate (:data:`export.parity.INT8_SIZE_RATIO`), the per-tensor file is smaller, reaches the validation
        targets (pooled and worst input) and keeps no more convolutions in float than the per-channel one.
    """
    pc = candidates["per-channel"]
    if params <= SIZE_GATE_MIN_PARAMS:
        return "per-channel", f"{params:,} parameters: the size gate does not apply"
    if pc["size_ratio_to_fp32"] <= INT8_SIZE_RATIO:
        return "per-channel", f"per-channel meets the size gate ({pc['size_ratio_to_fp32']:.4f} x fp32)"
    pt = candidates.get("per-tensor")
    if pt is None:
        return "per-channel", "per-tensor was not made"
    v, v_pc = pt["validation"], pc["validation"]
    miss = f"per-channel misses the size gate ({pc['size_ratio_to_fp32']:.4f} x fp32 > {INT8_SIZE_RATIO})"
    if v is None or v_pc is None:
        return "per-channel", f"{miss}, but without validation figures (naive mode or --int8-target-db 0) " \
                              "per-tensor cannot be judged"
    if not pt["size_ratio_to_fp32"] < pc["size_ratio_to_fp32"]:
        return "per-channel", f"{miss}; per-tensor is not smaller ({pt['size_ratio_to_fp32']:.4f} x)"
    if v["float_convolutions"] > v_pc["float_convolutions"]:
        return "per-channel", f"{miss}; per-tensor keeps {v['float_convolutions']} convolution(s) in float " \
                              f"against {v_pc['float_convolutions']}"
    if v["validation_psnr_db"] < v["target_db"] or v["validation_worst_db"] < v["worst_target_db"]:
        return "per-channel", f"{miss}; per-tensor misses the validation targets ({v['validation_psnr_db']:.2f} / " \
                              f"{v['validation_worst_db']:.2f} dB against {v['target_db']:g} / " \
                              f"{v['worst_target_db']:g} dB)"
    return "per-tensor", f"{miss}; per-tensor is {pt['size_ratio_to_fp32']:.4f} x and reaches " \
                         f"{v['validation_psnr_db']:.2f} / {v['validation_worst_db']:.2f} dB on validation " \
                         f"(targets {v['target_db']:g} / {v['worst_target_db']:g} dB)"


def build_int8_file(staging: Path, generator: torch.nn.Module, shape: tuple, sets, options: ExportOptions,
                    plain_saved_model: Path, sample_data: np.ndarray, fp32_size: int) -> tuple[Path, float, dict]:
    """Make the int8 file in ``staging`` (module docstring).

    Args:
        staging: the export's staging folder (work files go to ``staging/int8_work``).
        generator: the PyTorch generator (eval mode), not modified.
        shape: its ONNX input shape (1, C, H, W).
        sets: :class:`export.inputs.InputSets` (calibration = representative dataset, heldout for the ONNX check).
        options: the export options (int8 mode, I/O dtype, float ops, target, equalisation).
        plain_saved_model: onnx2tf SavedModel of the plain generator (used when equalisation is off).
        sample_data: onnx2tf's sample-data array (:func:`export.tflite_convert.sample_data_from_inputs`).
        fp32_size: bytes of the fp32 file as installed (:mod:`export.finish`), for the weight-scale choice.
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

    def quantize(scales: str):
        return quantize_saved_model(saved_model, sets.calibration, mode=options.int8_mode, io_dtype=options.int8_io,
                                    per_channel=scales == "per-channel",
                                    float_ops=float_ops, target_db=options.int8_target_db,
                                    input_range=NOISE_RANGE if noise else IMAGE_RANGE, output_range=IMAGE_RANGE,
                                    correction_nchw=source)

    scales, choice = options.int8_weights, None
    result = quantize("per-channel" if scales == "auto" else scales)
    if scales == "auto":
        from compress.macs import count_params

        params = int(count_params(generator))

        def figures(content: bytes, selection: dict) -> dict:
            size = finished_size(content, staging / "int8_size_probe.tflite", options.keep_tensor_names)
            return {"size_ratio_to_fp32": size / fp32_size, "validation": validation_figures(selection)}

        candidates = {"per-channel": figures(result.content, result.selection)}
        if params > SIZE_GATE_MIN_PARAMS and candidates["per-channel"]["size_ratio_to_fp32"] > INT8_SIZE_RATIO:
            LOGGER.info("int8: the per-channel file is %.4f x fp32 (size gate %.2f x): making the per-tensor one",
                        candidates["per-channel"]["size_ratio_to_fp32"], INT8_SIZE_RATIO)
            per_tensor = quantize("per-tensor")
            candidates["per-tensor"] = figures(per_tensor.content, per_tensor.selection)
        scales, why = choose_weight_scales(candidates, params)
        if scales == "per-tensor":
            result = per_tensor
        LOGGER.info("int8: %s weight scales (%s)", scales, why)
        choice = {"chosen": scales, "why": why, "candidates": candidates}
    path = staging / "int8.tflite"
    path.write_bytes(result.content)
    detail.update({
        "precision": "int8", "int8_mode": options.int8_mode, "int8_io": options.int8_io,
        "weight_quantization": f"{scales} int8 (convolutions in int8), int32 biases",
        "weight_scales_choice": choice,
        "float_denylist": list(float_ops) if options.int8_mode == "robust" else [],
        "fixed_ranges": {"input": list(NOISE_RANGE if noise else IMAGE_RANGE), "output": list(IMAGE_RANGE)}
        if options.int8_mode == "robust" else None,
        "float_nodes": result.float_nodes, "float_selection": result.selection,
        "bias_correction": result.bias_correction, "norm_input_ranges": result.norm_ranges,
        "calibration_count": int(len(sets.calibration)),
        "calibration_scaling": "NHWC float32 in the generator's input range ([-1, 1] images, x / 127.5 - 1; "
                               "N(0,1) noise for dcgan), no mean/std"})
    return path, time.perf_counter() - t0, detail
