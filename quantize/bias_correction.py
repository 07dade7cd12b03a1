"""Empirical bias correction of an int8 .tflite (Nagel et al. 2019, "Data-Free Quantization through Weight
Equalization and Bias Correction", section 4.2, the empirical variant with data).

Why. Rounding errors of int8 are not always zero-mean. A generator's input often has large flat regions (the white
background of an edge map or of a product photo): every pixel of such a region rounds the same way, so a
convolution's output carries a constant per-channel error there, which the next layers add to and amplify like a
wrong bias. Measured on a briefly trained pix2pix U-Net (docs/export.md): the per-channel mean of the error was
larger than the rest of it at every layer of the down path, and the file reached only 26.7 dB against PyTorch.

What. For every int8 convolution, in graph order, the per-output-channel mean of its output over representative
inputs is measured in the int8 model (dequantized) and in the float (calibrated) model, and the difference is
taken off the int32 bias: ``b_c -= round(mean_err_c / (s_in * s_w,c))``, the bias scale of TFLite's int8
convolution. Going in graph order means each layer is corrected for what the corrected layers before it deliver,
as in the paper. Convolutions with a fused activation are left alone (their pre-activation output is not
observable and a clipped mean is not linear in the bias).
"""
from __future__ import annotations

import numpy as np

from quantize.litert import inspecting_interpreter

#: Representative inputs the means are measured on (at most; the first ones of the set given).
DEFAULT_CORRECTION_COUNT = 100


def _channel_means(content: bytes, names: list[str], inputs_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel mean (last axis) of the named tensors over the inputs, dequantized, float64."""
    it = inspecting_interpreter(content)
    inp = it.get_input_details()[0]
    details = {d["name"]: d for d in it.get_tensor_details()}
    sums = {n: 0.0 for n in names}
    for x in inputs_nhwc:
        x = x[None].astype(np.float32)
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], x)
        it.invoke()
        for n in names:
            d = details[n]
            v = it.get_tensor(d["index"]).astype(np.float64)
            scale, zero = d["quantization"]
            if scale:
                v = (v - zero) * scale
            sums[n] = sums[n] + v.reshape(-1, v.shape[-1]).mean(axis=0)
    return {n: s / len(inputs_nhwc) for n, s in sums.items()}


def correct_biases(quantized: bytes, calibrated: bytes, inputs_nchw: np.ndarray,
                   count: int = DEFAULT_CORRECTION_COUNT) -> tuple[bytes, dict]:
    """Empirical bias correction (module docstring).

    Args:
        quantized: the int8 .tflite (bytes) from the calibrated model.
        calibrated: the calibrated float model it was made from (bytes); its tensors carry the same names.
        inputs_nchw: representative inputs (N, C, H, W) float32 in the generator's scaling; the first ``count``
            are used.
        count: inputs to measure on.
    Returns:
        (corrected .tflite bytes, report {"inputs", "corrected": [{"conv", "channels", "mean_abs_error_before"
        (units of the activation), "largest_step_change" (int32 bias steps)}], "skipped": [{"conv", "why"}]}).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python.util import (_convert_model_from_bytearray_to_object,
                                             _convert_model_from_object_to_bytearray)

    builtin = schema.BuiltinOperator
    model = _convert_model_from_bytearray_to_object(bytearray(quantized))
    sg = model.subgraphs[0]
    tensors = sg.tensors
    codes = [max(oc.builtinCode, oc.deprecatedBuiltinCode) for oc in model.operatorCodes]
    buffer_uses: dict[int, int] = {}
    for t in tensors:
        buffer_uses[t.buffer] = buffer_uses.get(t.buffer, 0) + 1
    targets, skipped = [], []
    for op in sg.operators:
        code = codes[op.opcodeIndex]
        if code not in (builtin.CONV_2D, builtin.TRANSPOSE_CONV, builtin.DEPTHWISE_CONV_2D):
            continue
        act_i, bias_i = (2, 3) if code == builtin.TRANSPOSE_CONV else (0, 2)
        name = tensors[op.outputs[0]].name.decode()
        if len(op.inputs) <= bias_i or op.inputs[bias_i] < 0:
            skipped.append({"conv": name, "why": "no bias"})
            continue
        act, weight, bias = tensors[op.inputs[act_i]], tensors[op.inputs[1]], tensors[op.inputs[bias_i]]
        if bias.type != schema.TensorType.INT32 or act.quantization is None or not act.quantization.scale:
            skipped.append({"conv": name, "why": "not an int8 convolution"})
            continue
        if getattr(op.builtinOptions, "fusedActivationFunction", 0) != schema.ActivationFunctionType.NONE:
            skipped.append({"conv": name, "why": "fused activation"})
            continue
        if buffer_uses.get(bias.buffer, 0) != 1:
            skipped.append({"conv": name, "why": "bias buffer shared"})
            continue
        targets.append((name, act, weight, bias))
    inputs = np.ascontiguousarray(inputs_nchw[:count].transpose(0, 2, 3, 1)).astype(np.float32)
    report = {"inputs": int(len(inputs)), "corrected": [], "skipped": skipped}
    if not targets or len(inputs) == 0:
        return quantized, report
    reference = _channel_means(calibrated, [t[0] for t in targets], inputs)
    for name, act, weight, bias in targets:
        current = bytes(_convert_model_from_object_to_bytearray(model))
        error = _channel_means(current, [name], inputs)[name] - reference[name]
        step = float(act.quantization.scale[0]) * np.asarray(weight.quantization.scale, np.float64)
        buf = model.buffers[bias.buffer]
        values = np.frombuffer(bytes(bytearray(buf.data)), np.int32).astype(np.int64)
        change = np.round(error / step).astype(np.int64)
        info = np.iinfo(np.int32)
        buf.data = np.clip(values - change, info.min, info.max).astype(np.int32).view(np.uint8)
        report["corrected"].append({"conv": name, "channels": int(len(values)),
                                    "mean_abs_error_before": float(np.abs(error).mean()),
                                    "largest_step_change": int(np.abs(change).max())})
    return bytes(_convert_model_from_object_to_bytearray(model)), report
