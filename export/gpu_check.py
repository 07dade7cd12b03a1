"""GPU-delegate readiness of a .tflite: TensorFlow's analyzer plus the op codes/versions of the flatbuffer.

Two independent checks, both recorded in the manifest:

1. ``tf.lite.experimental.Analyzer.analyze(model_path, gpu_compatibility=True)`` (TensorFlow 2.19): it prints
   a report to stdout; we capture it and parse every ``GPU COMPATIBILITY WARNING`` line (with the op it
   follows) into ``analyzer_warnings`` and the summary line (``Your model looks compatible with GPU
   delegate``) into ``analyzer_compatible``.
2. The operator table of the flatbuffer (:func:`quantize.litert.operator_codes`): every builtin op
   with its version. The GPU delegate rejects op versions above its maximum:
   :data:`GPU_MAX_OP_VERSION` lists the limits of ``tensorflow/lite/delegates/gpu/common/model_builder.cc``
   (``CheckMaxSupportedOpVersion``), e.g. TRANSPOSE_CONV <= 3 (version 4 = fused activation, added in
   TF 2.12 and written by newer converters, is a known trap), CONV_2D <= 6, DEPTHWISE_CONV_2D <= 6.

``gpu_ready`` is True when the analyzer found no incompatibility and no op exceeds a known version limit.
Quantized (int8) models are checked the same way; on a phone the GPU delegate runs them by dequantizing
weights (and QUANTIZE/DEQUANTIZE ops) in float.
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from quantize.litert import operator_codes

#: Highest op version the TFLite GPU delegate accepts (``CheckMaxSupportedOpVersion`` in
#: tensorflow/lite/delegates/gpu/common/model_builder.cc). Ops not listed: no version limit checked here.
GPU_MAX_OP_VERSION = {
    "TRANSPOSE_CONV": 3,
    "CONV_2D": 6,
    "DEPTHWISE_CONV_2D": 6,
    "FULLY_CONNECTED": 9,
    "CONCATENATION": 2,
    "PAD": 2,
    "MIRROR_PAD": 2,
    "RESHAPE": 1,
    "TANH": 2,
    "RELU": 2,
    "LEAKY_RELU": 2,
    "MEAN": 2,
    "SOFTMAX": 2,
}

_WARN = re.compile(r"GPU COMPATIBILITY WARNING:?\s*(.*)")
_OP = re.compile(r"^\s*Op#(\d+)\s+([A-Z0-9_]+)\(")


def op_table(path: str | Path) -> list[dict]:
    """Builtin operators of the model: [{"op": name, "version": int, "count": uses}], sorted by name."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    codes = operator_codes(model)
    counts: dict[int, int] = {}
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            idx = sg.Operators(o).OpcodeIndex()
            counts[idx] = counts.get(idx, 0) + 1
    return sorted(({"op": n, "version": v, "count": counts.get(i, 0)} for i, (n, v) in enumerate(codes)),
                  key=lambda d: (d["op"], d["version"]))


def analyzer_report(path: str | Path) -> str:
    """The text that ``tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`` prints."""
    import tensorflow as tf

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=True)
    return buf.getvalue()


def parse_analyzer(text: str) -> dict:
    """{"analyzer_compatible": bool, "analyzer_warnings": [{"op_index", "op", "message"}]} from a report."""
    warnings = []
    last_op: tuple[int, str] | None = None
    for line in text.splitlines():
        m = _OP.match(line)
        if m:
            last_op = (int(m.group(1)), m.group(2))
        w = _WARN.search(line)
        if w:
            warnings.append({"op_index": last_op[0] if last_op else None, "op": last_op[1] if last_op else None,
                             "message": w.group(1).strip()})
    compatible = "looks compatible with GPU delegate" in text and not warnings
    return {"analyzer_compatible": compatible, "analyzer_warnings": warnings}


def int16_activation_tensors(path: str | Path) -> int:
    """Number of int16 tensors that an op of the model writes (16x8 activations, :mod:`quantize.int16x8`)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    written = set()
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            written.update((s, int(t)) for t in (op.OutputsAsNumpy() if op.OutputsLength() else []))
    return sum(1 for s, t in written
               if model.Subgraphs(s).Tensors(t).Type() == schema.TensorType.INT16)


def gpu_delegate_check(path: str | Path) -> dict:
    """GPU-delegate readiness of ``path`` (module docstring). Returns a JSON-ready dict:
    {"gpu_ready", "analyzer_compatible", "analyzer_warnings", "ops": [{"op", "version", "count"}],
     "version_problems": [...], "transpose_conv_versions": [...], "int16_activations": count, "checker": "..."}.

    int16 activations (a 16x8 file) make it not ready whatever the analyzer says (TensorFlow 2.19's analyzer passes
    them): the GPU delegate reads int8/uint8 quantized tensors only, and TensorFlow's 16x8 guide ("Post-training
    integer quantization with int16 activations", Disadvantages) states that no hardware delegate runs 16x8."""
    result = parse_analyzer(analyzer_report(path))
    ops = op_table(path)
    problems = [f"{o['op']} version {o['version']} > {GPU_MAX_OP_VERSION[o['op']]} (GPU delegate maximum)"
                for o in ops if o["op"] in GPU_MAX_OP_VERSION and o["version"] > GPU_MAX_OP_VERSION[o["op"]]]
    int16 = int16_activation_tensors(path)
    if int16:
        problems.append(f"{int16} int16 activation tensors (16x8): the GPU delegate has no int16 kernels")
    result.update({
        "ops": ops,
        "version_problems": problems,
        "transpose_conv_versions": sorted({o["version"] for o in ops if o["op"] == "TRANSPOSE_CONV"}),
        "int16_activations": int16,
        "gpu_ready": bool(result["analyzer_compatible"] and not problems),
        "checker": "tf.lite.experimental.Analyzer(gpu_compatibility=True) + flatbuffer op versions "
                   "vs model_builder.cc CheckMaxSupportedOpVersion",
    })
    return result
