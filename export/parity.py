"""Running a .tflite on NCHW inputs with LiteRT, and the parity figures (PSNR in dB, max abs diff).

PSNR is taken over the generator's value range [-1, 1] (peak-to-peak 2):
``PSNR = 10 log10(2**2 / MSE)`` with the MSE pooled over every pixel of every held-out input.
``max_abs_diff`` is the largest |TFLite - PyTorch| over the same pixels (units of the [-1, 1] range).
Identical outputs give ``PSNR = inf`` (written as the string "inf" in JSON).

Quality gates (issue 4, item 3): fp32 >= 60 dB, fp16 >= 45 dB, int8 >= 30 dB.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

GATES_DB = {"fp32": 60.0, "fp16": 45.0, "int8": 30.0}
PEAK_TO_PEAK = 2.0


def psnr_db(ref: np.ndarray, out: np.ndarray, peak_to_peak: float = PEAK_TO_PEAK) -> float:
    """PSNR (dB) of ``out`` against ``ref`` (same shape) for signals of range ``peak_to_peak``."""
    mse = float(np.mean((ref.astype(np.float64) - out.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak_to_peak ** 2 / mse)


def make_interpreter(path: str | Path | bytes, num_threads: int = 2):
    """A LiteRT (``ai_edge_litert``) interpreter with tensors allocated, from a .tflite path or its bytes."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(path, bytes):
        it = Interpreter(model_content=path, num_threads=num_threads)
    else:
        it = Interpreter(model_path=str(path), num_threads=num_threads)
    it.allocate_tensors()
    return it


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype in (np.float32, np.float16):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] in (np.float32, np.float16):
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def run_tflite(path: str | Path | bytes, inputs_nchw: np.ndarray, num_threads: int = 2) -> np.ndarray:
    """Run the model (path or .tflite bytes) on each input (N, C, H, W) float32 and return (N, C, H, W) float32 outputs.

    Inputs are transposed to NHWC (the layout of every exported .tflite) and quantized with the input
    tensor's scale/zero point when the model has integer I/O; outputs are dequantized likewise.
    A DCGAN input (N, nz, 1, 1) becomes (1, 1, 1, nz).
    """
    it = make_interpreter(path, num_threads)
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for x in inputs_nchw:
        it.set_tensor(inp["index"], _quantize(x.transpose(1, 2, 0)[None], inp))
        it.invoke()
        y = _dequantize(it.get_tensor(outp["index"]), outp)
        outs.append(y[0].transpose(2, 0, 1))
    return np.stack(outs)


def io_details(path: str | Path) -> dict:
    """Names, shapes, dtypes and quantization of the model's (single) input and output."""
    it = make_interpreter(path, 1)
    sig = it.get_signature_list().get("serving_default", {})

    def one(d: dict, sig_name: str | None) -> dict:
        scale, zero = d["quantization"]
        return {"name": sig_name or d["name"], "tensor_name": d["name"], "shape": [int(s) for s in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name, "layout": "NHWC",
                "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}

    ins, outs = sig.get("inputs", [None]), sig.get("outputs", [None])
    return {"input": one(it.get_input_details()[0], ins[0] if ins else None),
            "output": one(it.get_output_details()[0], outs[0] if outs else None)}


def parity(ref_nchw: np.ndarray, out_nchw: np.ndarray) -> dict:
    """{"psnr_db", "min_image_psnr_db", "max_abs_diff"} of ``out`` against ``ref`` (both (N, C, H, W))."""
    per_image = [psnr_db(r, o) for r, o in zip(ref_nchw, out_nchw)]
    return {"psnr_db": psnr_db(ref_nchw, out_nchw), "min_image_psnr_db": min(per_image),
            "max_abs_diff": float(np.abs(ref_nchw.astype(np.float64) - out_nchw).max())}
