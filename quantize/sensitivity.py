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
(calibrated) model and scores each. :func:`select_float_nodes` then chooses, by measurement, which
to keep in float: each round quantizes the model once per remaining candidate (that one added to those already
in float), keeps the candidate that brings the validation PSNR closest to the target, and stops when the target is
reached on a validation subset of the calibration inputs (never the held-out images the export gates use). The
sensitivity is the tie-break and the report's ranking, not the order: it finds the convolution that matters most,
but not the size of the others' gains (main job's CycleGAN at 256 px, docs/export.md: the convolution ranked 15th
of 17 is worth +0.43 dB on its own, the one ranked 3rd +0.02 dB).
Generators without InstanceNorm (the BatchNorm U-Net and DCGAN, whose norms the converter
folds into the convolutions) have no candidates and are unchanged.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from quantize.litert import inspecting_interpreter, operator_codes, run_tflite
from quantize.metrics import psnr_db

LOGGER = logging.getLogger("coronetgan.quantize")

#: Ops that produce their output with the quantization parameters of their input (crop/pad): the walk from an
#: InstanceNorm input back to its convolution passes through them, and they go to float with it.
PASS_THROUGH_OPS = ("STRIDED_SLICE", "PAD", "MIRROR_PAD")
#: Ops whose output tensor is a candidate for float.
CONV_OPS = ("CONV_2D", "TRANSPOSE_CONV", "DEPTHWISE_CONV_2D")
#: Default pooled validation PSNR the selection aims for: the export's int8 gate itself (30 dB, export/parity.py),
#: on the validation inputs (calibration = training images), which the gates then check on held-out and unseen
#: images. No margin on top: on the main job's CycleGAN (docs/export.md) validation ran 0.5-1.4 dB *below* held-out
#: and unseen, and a 2 dB margin (32 dB) kept a convolution in float in a file whose all-int8 version passes every
#: gate. A user who wants a margin passes ``--int8-target-db 32``.
DEFAULT_TARGET_DB = 30.0
#: The worst validation input must reach ``target_db`` minus this (dB): the gates' own spread, 30 dB pooled and
#: 27 dB on the worst image (export/parity.py).
WORST_IMAGE_ALLOWANCE_DB = 3.0
#: Rounds of the selection that measure every remaining candidate (then the order of the last round is walked).
MEASURED_ROUNDS = 3
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
    tensor_names = [(sg.Tensors(t).Name() or b"").decode() for t in range(sg.TensorsLength())]
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
    it = inspecting_interpreter(model_content)
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


def _validation_scores(reference: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """(pooled PSNR, worst single-input PSNR) in dB of ``out`` against ``reference``, both (N, C, H, W)."""
    worst = min(psnr_db(r[None], o[None]) for r, o in zip(reference, out))
    return psnr_db(reference, out), worst


def _shortfall(scores: tuple[float, float], target_db: float, worst_target_db: float) -> float:
    """dB by which ``scores`` (pooled, worst) miss the targets; 0 when both are reached."""
    return max(target_db - scores[0], worst_target_db - scores[1], 0.0)


def _db(value: float):
    return value if math.isfinite(value) else "inf"


def forward_select(candidates: Sequence, measure: Callable[[Sequence], tuple[float, float]], *, target_db: float,
                   worst_target_db: float, measured_rounds: int = MEASURED_ROUNDS) -> tuple[list, int, list, int]:
    """Greedy forward selection by measured gain: the search of :func:`select_float_nodes`, on any candidates.

    Round ``k`` calls ``measure`` once per remaining candidate (that candidate added to the ``k - 1`` chosen) and
    keeps the one with the smallest shortfall ``max(target_db - pooled, worst_target_db - worst, 0)`` (ties: higher
    pooled dB, then the earlier candidate in ``candidates``). It stops when the shortfall is 0 or the candidates
    run out; after ``measured_rounds`` rounds the remaining candidates are added in the order the last round
    measured them, one ``measure`` each, so at most ``measured_rounds * M + M`` calls for ``M`` candidates.

    Args:
        candidates: what can be added, in tie-break order.
        measure: ``chosen -> (pooled dB, worst dB)`` of the model with ``chosen`` kept in float.
        target_db, worst_target_db: the targets (dB).
        measured_rounds: rounds that measure every remaining candidate (>= 1).
    Returns:
        (candidates in the order added, k chosen: the step with the smallest shortfall, then the highest pooled dB,
        then the fewest added; scores (pooled, worst) of steps 0..len(order), number of ``measure`` calls).
    """
    calls = 0

    def run(chosen: list) -> tuple[float, float]:
        nonlocal calls
        calls += 1
        return measure(chosen)

    def short(scores: tuple[float, float]) -> float:
        return _shortfall(scores, target_db, worst_target_db)

    chosen: list = []
    steps = [run(chosen)]
    remaining = list(candidates)
    order: list = []  # the last measured round's candidates, best first
    while remaining and short(steps[-1]) > 0:
        if len(chosen) < measured_rounds:
            trials = [(c, run(chosen + [c])) for c in remaining]
            trials.sort(key=lambda t: (short(t[1]), -t[1][0]))  # stable: ties keep the candidates' order
            (pick, scores), order = trials[0], [c for c, _ in trials[1:]]
        else:
            pick = order.pop(0)
            scores = run(chosen + [pick])
        chosen.append(pick)
        remaining.remove(pick)
        steps.append(scores)
    k = min(range(len(steps)), key=lambda i: (short(steps[i]), -steps[i][0], i))
    return chosen, k, steps, calls


def select_float_nodes(calibrated: bytes, inputs_nchw: np.ndarray, quantize: Callable[[list[str]], bytes], *,
                       target_db: float = DEFAULT_TARGET_DB,
                       validation_count: int = DEFAULT_VALIDATION_COUNT,
                       measured_rounds: int = MEASURED_ROUNDS) -> tuple[list[str], dict]:
    """Which InstanceNorm-feeding convolutions to keep in float (module docstring): :func:`forward_select` over
    the candidates of :func:`norm_inputs` (decreasing sensitivity: the tie-break), each measured by quantizing
    the model with them in float and comparing its output with the float model's on the validation inputs.
    Targets: ``target_db`` pooled and ``target_db - WORST_IMAGE_ALLOWANCE_DB`` on the worst validation input (the
    export's gates are 30 dB pooled and 27 dB worst).

    Args:
        calibrated: the calibrated float .tflite (``_experimental_calibrate_only``), bytes.
        inputs_nchw: (N, C, H, W) float32 calibration inputs in the generator's scaling; sensitivity uses all N,
            the validation PSNR the first ``validation_count``.
        quantize: ``nodes -> .tflite bytes`` with those node names kept in float (any I/O dtype).
        target_db: pooled validation PSNR (dB, peak-to-peak 2, against the float model) to reach; <= 0 disables
            the selection (no node kept in float).
        validation_count: calibration inputs used for validation (the first ones).
        measured_rounds: rounds of measured selection before the walk in measured order (>= 1).
    Returns:
        (node names to keep in float, report) where report = {"target_db", "worst_target_db", "validation_count",
        "candidates": [NormInput.to_json() ...] (decreasing sensitivity), "trajectory": [{"float_convolutions":
        k, "added": first node name of the convolution added at step k (None at k = 0), "validation_psnr_db":
        pooled dB, "validation_worst_db": worst-input dB}], "quantizations": files made and measured,
        "float_convolutions": k chosen}. When the targets are never reached, the k with the smallest shortfall
        (then the highest pooled PSNR) is chosen.
    Raises:
        ValueError: ``measured_rounds`` < 1.
    """
    if measured_rounds < 1:
        raise ValueError(f"measured_rounds {measured_rounds}; expected >= 1")
    nhwc = np.ascontiguousarray(inputs_nchw.transpose(0, 2, 3, 1)).astype(np.float32)
    candidates = measure_sensitivity(calibrated, norm_inputs(calibrated), nhwc)
    worst_target = target_db - WORST_IMAGE_ALLOWANCE_DB
    report = {"target_db": target_db, "worst_target_db": worst_target, "validation_count": 0,
              "candidates": [c.to_json() for c in candidates], "trajectory": [], "quantizations": 0,
              "float_convolutions": 0}
    if target_db <= 0 or not candidates:
        return [], report
    val = inputs_nchw[:validation_count]
    report["validation_count"] = int(len(val))
    reference = run_tflite(calibrated, val)

    trials = [0]

    def measure(chosen: Sequence[NormInput]) -> tuple[float, float]:
        trials[0] += 1
        scores = _validation_scores(reference, run_tflite(quantize([n for c in chosen for n in c.nodes]), val))
        LOGGER.info("int8 float selection, trial file %d (%d candidates): %d convolution(s) in float%s -> "
                    "validation PSNR %.2f dB, worst input %.2f dB", trials[0], len(candidates), len(chosen),
                    f" (last {chosen[-1].nodes[0]})" if chosen else "", *scores)
        return scores

    chosen, k, steps, count = forward_select(candidates, measure, target_db=target_db, worst_target_db=worst_target,
                                             measured_rounds=measured_rounds)
    report["trajectory"] = [{"float_convolutions": i, "added": chosen[i - 1].nodes[0] if i else None,
                             "validation_psnr_db": _db(sc[0]), "validation_worst_db": _db(sc[1])}
                            for i, sc in enumerate(steps)]
    report["quantizations"] = count
    report["float_convolutions"] = k
    return [n for c in chosen[:k] for n in c.nodes], report
