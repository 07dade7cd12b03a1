"""PyTorch generator -> ONNX with a fixed 1 x C x H x W input, named ``input``/``output``, verified.

Exporter: the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``), opset :data:`OPSET`.
The dynamo exporter cannot run here: onnxscript 0.5.6 lacks the ``torch_2_11`` API module that torch 2.13
asks for (``ModuleNotFoundError: onnxscript._framework_apis.torch_2_11``, measured); the legacy exporter
gives named I/O and a clean graph (Conv, ConvTranspose, Pad(reflect), InstanceNormalization,
BatchNorm folded into Conv, Relu/LeakyRelu, Concat, Add, Tanh). Dropout is exported in eval mode (removed).
The exported graph is simplified with onnxsim (constant folding) before the rewrite below.

Rewrite for onnx2tf (a trap found here, onnx2tf 1.29.24): its ``Add`` converter has a "rescue guard" that
compares the TF (NHWC) shape of the result with the ONNX (NCHW) shape and, when they differ (C != H),
transposes the result: every residual ``x + block(x)`` of the ResNet generator came out in the wrong layout
(14 dB against PyTorch). ONNX ``Sum`` with two inputs is the same arithmetic and its converter has no such
guard, so :func:`rewrite_for_onnx2tf` turns every two-input ``Add`` of two same-shape activations into
``Sum`` (verified again with onnxruntime afterwards).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

LOGGER = logging.getLogger("coronetgan.export")

#: ONNX opset of the export: the one every conversion here was tested with (torch's TorchScript exporter,
#: onnxruntime 1.23, onnx2tf 1.29.24); the generators' ops (Conv, ConvTranspose, Pad reflect, InstanceNormalization,
#: BatchNormalization, Concat) need nothing newer.
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
#: Largest |onnxruntime - PyTorch| accepted on the held-out inputs (issue 4, item 1).
ORT_MAX_ABS_DIFF = 1e-4


class ExportError(RuntimeError):
    """A conversion step failed or produced a model that does not match PyTorch."""


def export_onnx(generator: torch.nn.Module, input_shape: tuple[int, ...], dest: str | Path) -> Path:
    """Export ``generator`` (eval mode) with a fixed ``input_shape`` (1, C, H, W) to ``dest``.

    Returns ``Path(dest)``. Raises ExportError when the exporter fails.
    """
    generator = generator.eval()
    dummy = torch.zeros(*input_shape)
    try:
        with torch.no_grad():
            torch.onnx.export(generator, (dummy,), str(dest), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=OPSET, dynamo=False,
                              do_constant_folding=True)
    except Exception as exc:  # the exporter raises many types
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    import onnx

    model = onnx.load(str(dest))
    model = simplify(model)
    model = rewrite_for_onnx2tf(model)
    onnx.save(model, str(dest))
    return Path(dest)


def simplify(model):
    """Fold constants with onnxsim (the legacy exporter leaves reflection-pad amounts as a small
    ConstantOfShape/Concat/Slice subgraph, which hides the static shapes the rewrite below needs).
    Returns the simplified model, or the input model when onnxsim cannot verify its result."""
    try:
        from onnxsim import simplify as onnxsim_simplify

        simplified, ok = onnxsim_simplify(model)
    except Exception as exc:  # onnxsim is optional for correctness: onnxruntime checks the result anyway
        LOGGER.warning("onnxsim failed (%s: %s); keeping the unsimplified ONNX", type(exc).__name__, exc)
        return model
    return simplified if ok else model


def rewrite_for_onnx2tf(model):
    """Replace two-input ``Add`` nodes whose inputs are both activations of the same static shape by ``Sum``
    (see the module docstring). Returns the (modified) ModelProto."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    initializers = {i.name for i in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    count = 0
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        a, b = node.input
        if a in initializers or b in initializers or a in constants or b in constants:
            continue
        if shapes.get(a) and shapes.get(a) == shapes.get(b) and None not in shapes[a] and len(shapes[a]) == 4:
            node.op_type = "Sum"
            count += 1
    if count:
        LOGGER.info("rewrote %d residual Add node(s) as Sum for onnx2tf", count)
    return model


def check_onnx(path: str | Path, generator: torch.nn.Module, inputs: np.ndarray,
               tolerance: float = ORT_MAX_ABS_DIFF) -> dict:
    """``onnx.checker`` (full check) and onnxruntime (CPU) against PyTorch on ``inputs`` (N, C, H, W).

    Returns {"checker": "ok", "max_abs_diff": float, "inputs": N, "tolerance": tolerance}.
    Raises ExportError when the checker fails or the difference exceeds ``tolerance``.
    """
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected {path}: {exc}") from exc
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            ref = generator(torch.from_numpy(x[None])).numpy()
            got = sess.run([OUTPUT_NAME], {INPUT_NAME: x[None]})[0]
            worst = max(worst, float(np.abs(ref - got).max()))
    if not worst <= tolerance:
        raise ExportError(f"onnxruntime output differs from PyTorch by {worst:.3g} (max abs) on "
                          f"{len(inputs)} held-out inputs; expected <= {tolerance:g}")
    return {"checker": "ok", "max_abs_diff": worst, "inputs": int(len(inputs)), "tolerance": tolerance}
