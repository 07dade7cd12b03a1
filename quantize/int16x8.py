"""16x8 TFLite (int8 weights, int16 activations) from the onnx2tf SavedModel: the int8 export's tool for a
generator whose int8 activations cannot reach the gates.

Why. An int8 activation tensor has 256 steps over one range per tensor. A pix2pix generator must cover the photos
of its representative dataset as well as edge maps (:mod:`export.representative`), and in a narrow U-Net the photos
reach activations about ten times the edge maps' (docs/export.md, "Session 20": the second down convolution's
output spans [-32.7, 12.2] on the representative inputs and [-3.9, 2.7] on the unseen edge maps). Simulated in
PyTorch, rounding every activation tensor of the 600-step U-Net-6 stand-in to 8 bits gave 27.3 / 19.7 dB (pooled /
worst unseen input), 10 bits 39.5 / 31.3 dB, 16 bits 61.3 / 50.2 dB; no single tensor kept in float lifted the worst
input by more than 1.7 dB, so keeping convolutions in float (:mod:`quantize.sensitivity`) cannot reach the gates,
and int16 activations do.

What. TensorFlow's own 16x8 recipe (TensorFlow Lite guide "Post-training integer quantization with int16
activations": ``supported_ops = [EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]``): per-channel int8
weights, int64 biases, int16 activations with symmetric ranges (zero point 0) calibrated on the representative
dataset, every op integer. int16 I/O by default (``io_dtype="float32"`` gives float32 I/O).

Fixed I/O ranges. The 16x8 quantizer calibrates inside the converter, so the recorded ranges cannot be rewritten
as :func:`quantize.int8.fix_io_ranges` does for int8; it takes ``max |x|`` of the representative inputs as the
symmetric input range. :func:`quantize_16x8` checks the file: the input scale must be ``max(|lo|, |hi|) / 32767``
of the fixed range (images: the representative images reach -1 and 1) and the TANH output keeps its fixed
1/32768; anything else raises ValueError rather than install a file whose input clips.

Costs (same guide, "Disadvantages"): no optimised kernels (XNNPACK takes no int16 ops, so the host and phone CPUs
run the reference kernels) and no hardware delegate runs it, the GPU delegate included
(:func:`export.gpu_check.gpu_delegate_check` says so); hence the export makes it only when asked
(``--int8-activations int16``) or, under ``auto``, when the int8 file misses the gates on the validation inputs and
this one meets them (:func:`export.int8_file.choose_activations`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from quantize.int8 import representative_dataset
from quantize.litert import inspecting_interpreter

LOGGER = logging.getLogger("coronetgan.quantize")

#: Input/output tensor types a 16x8 file can have.
IO_DTYPES_16X8 = ("int16", "float32")
#: Largest int16 magnitude of a symmetric range (TFLite 16x8: zero point 0, [-32767, 32767] used for activations).
INT16_MAX = 32767


def input_scale_ok(scale: float, fixed_range: tuple[float, float], rel_tol: float = 1e-4) -> bool:
    """Whether a symmetric int16 input ``scale`` (real units per step) represents the fixed range: the range's
    largest magnitude ``m`` must lie within ``[scale * 32767 * (1 - rel_tol), scale * 32767 * (1 + rel_tol)]`` (a
    smaller one clips inputs the generator accepts; a larger one wastes steps)."""
    m = max(abs(float(fixed_range[0])), abs(float(fixed_range[1])))
    return abs(scale * INT16_MAX - m) <= rel_tol * m


def quantize_16x8(saved_model_dir: str | Path, calibration_nchw: np.ndarray, *,
                  input_range: tuple[float, float], io_dtype: str = "int16") -> bytes:
    """The 16x8 .tflite of an onnx2tf SavedModel (module docstring).

    Args:
        saved_model_dir: the SavedModel (signature input ``input``, NHWC).
        calibration_nchw: representative inputs (N, C, H, W) float32 in the generator's input scaling.
        input_range: the generator's fixed input range (images (-1, 1)); the file's input must represent it.
        io_dtype: "int16" (default) or "float32" input/output tensors.
    Returns:
        the .tflite bytes.
    Raises:
        ValueError: an ``io_dtype`` outside :data:`IO_DTYPES_16X8`, an empty calibration set, or a file whose
            input scale does not represent ``input_range`` (the representative inputs did not reach its ends).
        Exception: the TFLite converter's own error for an op without a 16x8 kernel.
    """
    if io_dtype not in IO_DTYPES_16X8:
        raise ValueError(f"16x8 I/O dtype {io_dtype!r}; expected one of {IO_DTYPES_16X8}")
    if len(calibration_nchw) == 0:
        raise ValueError("16x8 quantization needs representative inputs; got none")
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset(calibration_nchw)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    io = tf.int16 if io_dtype == "int16" else tf.float32
    conv.inference_input_type, conv.inference_output_type = io, io
    LOGGER.info("16x8: calibrating and quantizing on %d representative inputs (TFLite converter)",
                len(calibration_nchw))
    content = conv.convert()
    it = inspecting_interpreter(content)
    detail = it.get_input_details()[0]
    if io_dtype == "float32":  # the QUANTIZE op that reads the float input holds the int16 range
        tensors = it.get_tensor_details()
        readers = [op for op in it._get_ops_details() if detail["index"] in op["inputs"]]
        detail = tensors[readers[0]["outputs"][0]] if readers and readers[0]["op_name"] == "QUANTIZE" else detail
    scale = float(detail["quantization"][0])
    if detail["dtype"] != np.int16 or not input_scale_ok(scale, input_range):
        raise ValueError(f"16x8 file: input {np.dtype(detail['dtype']).name} with scale {scale:.6g} does not "
                         f"represent the fixed input range {list(input_range)} (expected int16, scale "
                         f"{max(map(abs, input_range)) / INT16_MAX:.6g}): the representative inputs do not "
                         "reach its ends")
    return content
