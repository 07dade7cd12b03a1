"""The parity figures of an exported .tflite against PyTorch (PSNR in dB, max abs diff), its I/O, and the gates.

PSNR is taken over the generator's value range [-1, 1] (peak-to-peak 2, :func:`quantize.metrics.psnr_db`):
``PSNR = 10 log10(2**2 / MSE)`` with the MSE pooled over every pixel of every held-out input.
``max_abs_diff`` is the largest |TFLite - PyTorch| over the same pixels (units of the [-1, 1] range).
Identical outputs give ``PSNR = inf`` (written as the string "inf" in JSON). The TFLite outputs come from
:func:`quantize.litert.run_tflite`.

Quality gates (issue 4, item 3): fp32 >= 60 dB, fp16 >= 45 dB, int8 >= 30 dB.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from quantize.litert import make_interpreter
from quantize.metrics import psnr_db

GATES_DB = {"fp32": 60.0, "fp16": 45.0, "int8": 30.0}


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
