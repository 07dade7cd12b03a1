"""The last resort of robust int8: which convolutions to keep in float (InstanceNorm sensitivity, measured selection).

Since the export equalises the inputs of every InstanceNorm before quantization (:mod:`quantize.equalize`), the
selection normally finds the int8 model on target and keeps nothing in float; it acts only when equalisation is
off (``--no-equalise``) or not enough, and the file is then labelled ``int8 (mixed: N of M convolutions float)``.

Why. An int8 activation tensor has one scale for all its channels (per-tensor activations, the TFLite
full-integer scheme), with step ``s = (max - min) / 255`` over the calibration set (range widened to include
0). Uniform rounding adds noise of standard deviation ``s / sqrt(12)`` to every channel. An InstanceNorm that
follows divides channel ``c`` by its own spatial standard deviation ``sigma_c``, so in the normalised tensor
that channel carries noise ``s / (sqrt(12) * sigma_c)``: a channel much quieter than the tensor's range
comes out of the norm as noise. We call ``s / min_c sigma_c`` the **InstanceNorm sensitivity** of the tensor
(our definition; the measurement behind it is in docs/export.md, Benchmarks). In CoroNetGAN-pruned ResNet
generators the surviving channels of a layer can differ a lot in scale (their latent entries were shrunk by
different amounts by the proximal step), and the upsampling convolutions reach sensitivities above 2
(quantization step larger than a channel's whole spread).

What. :func:`norm_inputs` finds every tensor that feeds an InstanceNorm in the calibrated model (a ``MEAN``
over the spatial axes 1, 2 of an NHWC tensor, the first op of onnx2tf's InstanceNorm decomposition) and walks
back through quantization-preserving crops/pads (``STRIDED_SLICE``, ``PAD``, ``MIRROR_PAD``) to the
convolution that produced it. :func:`measure_sensitivity` runs the calibration inputs through the float
(calibrated) model and scores each. :func:`select_float_nodes` then keeps the most sensitive ones in float,
one at a time in order of sensitivity, until the int8 model matches the float model to ``target_db`` PSNR on a
validation subset of the calibration inputs (never the held-out images the export gates use), or the
candidates run out. Generators without InstanceNorm (the BatchNorm U-Net and DCGAN, whose norms the converter
folds into the convolutions) have no candidates and are unchanged.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from quantize.litert import operator_codes, run_tflite
from quantize.metrics import psnr_db

LOGGER = logging.getLogger("coronetgan.quantize")

#: Ops that produce their output with the quantization parameters of their input (crop/pad): the walk from an
#: InstanceNorm input back to its convolution passes through them, and they go to float with it.
PASS_THROUGH_OPS = ("STRIDED_SLICE", "PAD", "MIRROR_PAD")
#: Ops whose output tensor is a candidate for float.
CONV_OPS = ("CONV_2D", "TRANSPOSE_CONV", "DEPTHWISE_CONV_2D")
#: Default validation PSNR the selection aims for: the int8 gate (30 dB, issue 4) plus a 5 dB margin for the
#: difference between calibration (train) and held-out (test) images.
DEFAULT_TARGET_DB = 35.0
#: Calibration inputs used as the validation subset of the selection.
DEFAULT_VALIDATION_COUNT = 16


@dataclass
class NormInput:
    """A convolution whose output feeds an InstanceNorm.

    ``op``: the convolution's TFLite op name; ``nodes``: output tensor names of the convolution and of the
    crop/pad ops between it and the norm (the names ``mlir_quantize(denylisted_nodes=...)`` takes);
    ``shape``: the normalised tensor (1, H, W, C); ``step``: int8 quantization step of the convolution output
    over the calibration set (units of the activation); ``min_channel_std``: smallest per-channel spatial
    standard deviation (mean over calibration inputs); ``sensitivity``: step / min_channel_std.
    """

    op: str
    nodes: list[str]
    shape: list[int]
    step: float = math.nan
    min_channel_std: float = math.nan
    sensitivity: float = math.nan
    _tensor: int = field(default=-1, repr=False)
    _conv_tensor: int = field(default=-1, repr=False)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def _graph(model_content: bytes):
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(model_content, 0)
    codes = [name for name, _ in operator_codes(model)]
    sg = model.Subgraphs(0)
    ops = []
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        ops.append((codes[op.OpcodeIndex()], [int(i) for i in op.InputsAsNumpy()],
                    [int(i) for i in op.OutputsAsNumpy()]))
    tensor_names = [sg.Tensors(t).Name().decode() for t in range(sg.TensorsLength())]
    shapes = [[int(s) for s in sg.Tensors(t).ShapeAsNumpy()] if sg.Tensors(t).ShapeLength() else []
              for t in range(sg.TensorsLength())]
    return ops, tensor_names, shapes


def norm_inputs(model_content: bytes) -> list[NormInput]:
    """Every convolution whose (cropped/padded) output is the input of an InstanceNorm ``MEAN`` over axes (1, 2).

    ``model_content``: a float or calibrated .tflite (bytes), NHWC. Returns them in graph order, without
    sensitivity (see :func:`measure_sensitivity`).
    """
    from ai_edge_litert.interpreter import Interpreter

    ops, names, shapes = _graph(model_content)
    producer = {out: k for k, (_, _, outs) in enumerate(ops) for out in outs}
    it = Interpreter(model_content=model_content)
    found: dict[int, NormInput] = {}
    for code, ins, _ in ops:
        if code != "MEAN" or len(ins) < 2 or len(shapes[ins[0]]) != 4:
            continue
        try:
            axes = sorted(int(a) % 4 for a in np.atleast_1d(it.get_tensor(ins[1])))
        except ValueError:  # axis tensor is not a constant
            continue
        if axes != [1, 2]:
            continue
        tensor, chain = ins[0], []
        k = producer.get(tensor)
        while k is not None and ops[k][0] in PASS_THROUGH_OPS:
            chain.append(ops[k][2][0])
            k = producer.get(ops[k][1][0])
        if k is None or ops[k][0] not in CONV_OPS or tensor in found:
            continue
        conv_out = ops[k][2][0]
        found[tensor] = NormInput(op=ops[k][0], nodes=[names[conv_out]] + [names[t] for t in reversed(chain)],
                                  shape=shapes[tensor], _tensor=tensor, _conv_tensor=conv_out)
    return list(found.values())


def measure_sensitivity(model_content: bytes, candidates: Sequence[NormInput],
                        inputs_nhwc: np.ndarray) -> list[NormInput]:
    """Fill in step, min_channel_std and sensitivity of each candidate by running the float model.

    ``inputs_nhwc``: (N, H, W, C) float32 calibration inputs in the generator's scaling. The step uses the
    min/max of the convolution output over all N inputs (range widened to include 0, as the TFLite
    quantizer does), the channel spread the per-input spatial std of the normalised tensor averaged over N.
    Returns the candidates sorted by decreasing sensitivity.
    """
    if not candidates:
        return []
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "intended for debugging": reading intermediate tensors is the point here
        warnings.simplefilter("ignore", UserWarning)
        it = Interpreter(model_content=model_content, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    lo = {c._conv_tensor: 0.0 for c in candidates}
    hi = dict(lo)
    std_sum = {c._tensor: 0.0 for c in candidates}
    for x in inputs_nhwc:
        it.set_tensor(inp["index"], x[None].astype(np.float32))
        it.invoke()
        for c in candidates:
            conv = it.get_tensor(c._conv_tensor)
            lo[c._conv_tensor] = min(lo[c._conv_tensor], float(conv.min()))
            hi[c._conv_tensor] = max(hi[c._conv_tensor], float(conv.max()))
            std_sum[c._tensor] = std_sum[c._tensor] + it.get_tensor(c._tensor)[0].std(axis=(0, 1), dtype=np.float64)
    for c in candidates:
        c.step = (hi[c._conv_tensor] - lo[c._conv_tensor]) / 255.0
        c.min_channel_std = float(np.min(std_sum[c._tensor] / len(inputs_nhwc)))
        c.sensitivity = c.step / c.min_channel_std if c.min_channel_std > 0 else math.inf
    return sorted(candidates, key=lambda c: -c.sensitivity)


def select_float_nodes(calibrated: bytes, inputs_nchw: np.ndarray, quantize: Callable[[list[str]], bytes], *,
                       target_db: float = DEFAULT_TARGET_DB,
                       validation_count: int = DEFAULT_VALIDATION_COUNT) -> tuple[list[str], dict]:
    """Greedy float selection (module docstring).

    Args:
        calibrated: the calibrated float .tflite (``_experimental_calibrate_only``), bytes.
        inputs_nchw: (N, C, H, W) float32 calibration inputs in the generator's scaling; sensitivity uses all N,
            the validation PSNR the first ``validation_count``.
        quantize: ``nodes -> .tflite bytes`` with those node names kept in float (any I/O dtype).
        target_db: validation PSNR (dB, peak-to-peak 2, against the float model) to reach; <= 0 disables the
            selection (no node kept in float).
    Returns:
        (node names to keep in float, report) where report = {"target_db", "validation_count", "candidates":
        [NormInput.to_json() ...] (decreasing sensitivity), "trajectory": [{"float_convolutions": k,
        "validation_psnr_db": dB}], "float_convolutions": k chosen}. When the target is never reached the k
        with the best validation PSNR is chosen.
    """
    nhwc = np.ascontiguousarray(inputs_nchw.transpose(0, 2, 3, 1)).astype(np.float32)
    candidates = measure_sensitivity(calibrated, norm_inputs(calibrated), nhwc)
    report = {"target_db": target_db, "validation_count": 0,
              "candidates": [c.to_json() for c in candidates], "trajectory": [], "float_convolutions": 0}
    if target_db <= 0 or not candidates:
        return [], report
    val = inputs_nchw[:validation_count]
    report["validation_count"] = int(len(val))
    reference = run_tflite(calibrated, val)
    best = (-math.inf, 0)
    for k in range(len(candidates) + 1):
        nodes = [n for c in candidates[:k] for n in c.nodes]
        db = psnr_db(reference, run_tflite(quantize(nodes), val))
        report["trajectory"].append({"float_convolutions": k, "validation_psnr_db": db if math.isfinite(db) else "inf"})
        LOGGER.info("int8 float selection: %d convolution(s) in float -> validation PSNR %.2f dB", k, db)
        if db > best[0]:
            best = (db, k)
        if db >= target_db:  # first k to reach the target (the best so far: no earlier k reached it)
            break
    k = best[1]
    report["float_convolutions"] = k
    return [n for c in candidates[:k] for n in c.nodes], report
