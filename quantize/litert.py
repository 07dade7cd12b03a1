"""TFLite interpreters for a .tflite, a run on NCHW inputs, and the flatbuffer's operator-code table.

Two runtimes (:data:`RUNTIMES`): LiteRT (``ai_edge_litert`` 2.1, the default) and the older stand-alone
``tflite_runtime`` 2.14 that many deployments still ship; an exported file must load and run in both (an int8
file with a hybrid op, float activations against int8 weights, fails to prepare in tflite-runtime 2.14).

Every exported .tflite is NHWC (onnx2tf's layout); the generator's tensors are NCHW. :func:`run_tflite` does the
transposes and, for integer I/O, the (de)quantization with the tensor's own scale/zero point, so callers compare
float NCHW arrays whatever the model's I/O dtype.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


#: Runtime name -> (Python module of its ``Interpreter``, distribution name for its version).
RUNTIMES = {"litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
            "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime")}
DEFAULT_RUNTIME = "litert"


def runtime_version(runtime: str) -> str | None:
    """Installed version of a runtime of :data:`RUNTIMES` (None when it is not installed)."""
    from importlib import metadata

    try:
        return metadata.version(RUNTIMES[runtime][1])
    except metadata.PackageNotFoundError:
        return None


def make_interpreter(path: str | Path | bytes, num_threads: int = 2, runtime: str = DEFAULT_RUNTIME):
    """An interpreter of ``runtime`` (a key of :data:`RUNTIMES`) with tensors allocated, from a .tflite path or
    its bytes. Raises ValueError for an unknown runtime, ImportError when it is not installed, and the
    runtime's own error (RuntimeError/ValueError) when the model fails to load or prepare."""
    import importlib

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    Interpreter = importlib.import_module(RUNTIMES[runtime][0]).Interpreter
    if isinstance(path, bytes):
        it = Interpreter(model_content=path, num_threads=num_threads)
    else:
        it = Interpreter(model_path=str(path), num_threads=num_threads)
    it.allocate_tensors()
    return it


def inspecting_interpreter(model_content: bytes):
    """A LiteRT interpreter of ``model_content`` (.tflite bytes) that keeps every intermediate tensor readable after
    ``invoke()`` (``experimental_preserve_all_tensors``), tensors allocated: what the calibration-time measurements
    of :mod:`quantize` read (per-channel statistics of convolution outputs). LiteRT's "intended for debugging"
    warning is silenced, reading intermediate tensors being the point. Raises the runtime's error when the model
    fails to load or prepare."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        it = Interpreter(model_content=model_content, experimental_preserve_all_tensors=True)
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


def run_tflite(path: str | Path | bytes, inputs_nchw: np.ndarray, num_threads: int = 2,
               runtime: str = DEFAULT_RUNTIME) -> np.ndarray:
    """Run the model (path or .tflite bytes) on each input (N, C, H, W) float32 and return (N, C, H, W) float32 outputs.

    Inputs are transposed to NHWC (the layout of every exported .tflite) and quantized with the input
    tensor's scale/zero point when the model has integer I/O; outputs are dequantized likewise.
    A DCGAN input (N, nz, 1, 1) becomes (1, 1, 1, nz). ``runtime``: see :func:`make_interpreter`.
    """
    it = make_interpreter(path, num_threads, runtime)
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for x in inputs_nchw:
        it.set_tensor(inp["index"], _quantize(x.transpose(1, 2, 0)[None], inp))
        it.invoke()
        y = _dequantize(it.get_tensor(outp["index"]), outp)
        outs.append(y[0].transpose(2, 0, 1))
    return np.stack(outs)


def flatbuffer_schema():
    """The TFLite flatbuffer schema's Python classes (``Model``, ``TensorType``, ``BuiltinOperator``...), from the
    LiteRT wheel: reading a file's structure does not import TensorFlow (about 0.1 s instead of several). Raises
    ImportError without the ai-edge-litert wheel (a dependency of the project)."""
    from ai_edge_litert import schema_py_generated as schema

    return schema


def operator_codes(model) -> list[tuple[str, int]]:
    """(op name, version) of each entry of a flatbuffer model's operator-code table (``schema.Model``), in table
    order: builtin names as in ``BuiltinOperator`` (the larger of the current and deprecated code fields),
    custom ops as ``CUSTOM:<name>``."""
    schema = flatbuffer_schema()

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            name = f"CUSTOM:{oc.CustomCode().decode() if oc.CustomCode() else '?'}"
        codes.append((name, int(oc.Version())))
    return codes
