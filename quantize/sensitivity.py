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

Every other convolution is a candidate as well, after the InstanceNorm-feeding ones (graph order; no
sensitivity): in a generator without InstanceNorm (the BatchNorm U-Net and DCGAN, whose norms the converter folds
into the convolutions) the loss can sit in an activation that a float convolution takes off the int8 grid. In a
U-Net, the first down convolution's output is rounded on the scale of the outermost skip concatenation (TFLite's
CONCATENATION shares one scale across its inputs), and in float it reaches its float LEAKY_RELU unrounded
(docs/export.md, "Session 16": the 95%-pruned pix2pix from 26.6 / 21.5 dB to above the gates with that one 4-channel
convolution in float). A ``reject`` callable (the export's size gate) drops a candidate whose trial file cannot
be kept.
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
#: Ops whose output tensor is a candidate for float (every one of them: :func:`float_candidates`).
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
class FloatCandidate:
    """A convolution the float selection can keep in float.

    ``op``: the convolution's TFLite op name; ``nodes``: output tensor names of the convolution and, for one that
    feeds an InstanceNorm, of the crop/pad ops between it and the norm (the names
    ``mlir_quantize(denylisted_nodes=...)`` takes); ``shape``: its output tensor (1, H, W, C), for an
    InstanceNorm-feeding one the normalised tensor; ``feeds_instance_norm``: whether an InstanceNorm follows.
    Only for those (:func:`measure_sensitivity`; None in JSON otherwise): ``step``, the int8 quantization step of
    the convolution output over the calibration set (units of the activation); ``min_channel_std``, the smallest
    per-channel spatial standard deviation (mean over calibration inputs); ``sensitivity``: step / min_channel_std.
    """

    op: str
    nodes: list[str]
    shape: list[int]
    feeds_instance_norm: bool = True
    step: float = math.nan
    min_channel_std: float = math.nan
    sensitivity: float = math.nan
    _tensor: int = field(default=-1, repr=False)
    _conv_tensor: int = field(default=-1, repr=False)

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items() if not k.startswith("_")}


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


def norm_inputs(model_content: bytes) -> list[FloatCandidate]:
    """Every convolution whose (cropped/padded) output is the input of an InstanceNorm ``MEAN`` over axes (1, 2).

    ``model_content``: a float or calibrated .tflite (bytes), NHWC. Returns them in graph order, without
    sensitivity (see :func:`measure_sensitivity`).
    """
    from ai_edge_litert.interpreter import Interpreter

    ops, names, shapes = _graph(model_content)
    producer = {out: k for k, (_, _, outs) in enumerate(ops) for out in outs}
    it = Interpreter(model_content=model_content)
    found: dict[int, FloatCandidate] = {}
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
        found[tensor] = FloatCandidate(op=ops[k][0], nodes=[names[conv_out]] + [names[t] for t in reversed(chain)],
                                       shape=shapes[tensor], _tensor=tensor, _conv_tensor=conv_out)
    return list(found.values())


def measure_sensitivity(model_content: bytes, candidates: Sequence[FloatCandidate],
                        inputs_nhwc: np.ndarray) -> list[FloatCandidate]:
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


def float_candidates(model_content: bytes, inputs_nhwc: np.ndarray) -> list[FloatCandidate]:
    """Every convolution of the model as a candidate for float (module docstring): the InstanceNorm-feeding ones
    first, by decreasing sensitivity (:func:`measure_sensitivity` on ``inputs_nhwc``, (N, H, W, C) float32), then
    the others in graph order. ``model_content``: the calibrated .tflite (bytes), NHWC."""
    norms = measure_sensitivity(model_content, norm_inputs(model_content), inputs_nhwc)
    taken = {c._conv_tensor for c in norms}
    ops, names, shapes = _graph(model_content)
    others = [FloatCandidate(op=code, nodes=[names[outs[0]]], shape=shapes[outs[0]], feeds_instance_norm=False,
                             _tensor=outs[0], _conv_tensor=outs[0])
              for code, _, outs in ops if code in CONV_OPS and outs[0] not in taken]
    return norms + others


def _validation_scores(reference: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """(pooled PSNR, worst single-input PSNR) in dB of ``out`` against ``reference``, both (N, C, H, W)."""
    worst = min(psnr_db(r[None], o[None]) for r, o in zip(reference, out))
    return psnr_db(reference, out), worst


def _shortfall(scores: tuple[float, float], target_db: float, worst_target_db: float) -> float:
    """dB by which ``scores`` (pooled, worst) miss the targets; 0 when both are reached."""
    return max(target_db - scores[0], worst_target_db - scores[1], 0.0)


def _db(value: float):
    return value if math.isfinite(value) else "inf"


def forward_select(candidates: Sequence, measure: Callable[[Sequence], tuple[float, float] | None], *,
                   target_db: float, worst_target_db: float,
                   measured_rounds: int = MEASURED_ROUNDS) -> tuple[list, int, list, int]:
    """Greedy forward selection by measured gain: the search of :func:`select_float_nodes`, on any candidates.

    Round ``k`` calls ``measure`` once per remaining candidate (that candidate added to the ``k - 1`` chosen) and
    keeps the one with the smallest shortfall ``max(target_db - pooled, worst_target_db - worst, 0)`` (ties: higher
    pooled dB, then the earlier candidate in ``candidates``). It stops when the shortfall is 0 or the candidates
    run out; after ``measured_rounds`` rounds the remaining candidates are added in the order the last round
    measured them, one ``measure`` each, so at most ``measured_rounds * M + M`` calls for ``M`` candidates.
    A candidate whose ``measure`` returns None (a file that cannot be kept: the export's size gate) is dropped for
    good: adding more candidates to it would not make it admissible again.

    Args:
        candidates: what can be added, in tie-break order.
        measure: ``chosen -> (pooled dB, worst dB)`` of the model with ``chosen`` kept in float, or None when that
            model cannot be kept; never called with a candidate already dropped. The empty choice must be scored.
        target_db, worst_target_db: the targets (dB).
        measured_rounds: rounds that measure every remaining candidate (>= 1).
    Returns:
        (candidates in the order added, k chosen: the step with the smallest shortfall, then the highest pooled dB,
        then the fewest added; scores (pooled, worst) of steps 0..len(order), number of ``measure`` calls).
    """
    calls = 0

    def run(chosen: list) -> tuple[float, float] | None:
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
            remaining = [c for c, scores in trials if scores is not None]
            trials = [t for t in trials if t[1] is not None]
            if not trials:
                break
            trials.sort(key=lambda t: (short(t[1]), -t[1][0]))  # stable: ties keep the candidates' order
            (pick, scores), order = trials[0], [c for c, _ in trials[1:]]
        else:
            pick = order.pop(0)
            scores = run(chosen + [pick])
            if scores is None:
                remaining.remove(pick)
                continue
        chosen.append(pick)
        remaining.remove(pick)
        steps.append(scores)
    k = min(range(len(steps)), key=lambda i: (short(steps[i]), -steps[i][0], i))
    return chosen, k, steps, calls


def select_float_nodes(calibrated: bytes, inputs_nchw: np.ndarray, quantize: Callable[[list[str]], bytes], *,
                       target_db: float = DEFAULT_TARGET_DB,
                       validation_count: int = DEFAULT_VALIDATION_COUNT,
                       validation_nchw: np.ndarray | None = None,
                       reject: Callable[[bytes], str | None] | None = None,
                       measured_rounds: int = MEASURED_ROUNDS) -> tuple[list[str], dict]:
    """Which convolutions to keep in float (module docstring): :func:`forward_select` over the candidates of
    :func:`float_candidates` (InstanceNorm-feeding ones first, by decreasing sensitivity: the tie-break), each
    measured by quantizing the model with them in float and comparing its output with the float model's on the
    validation inputs. Targets: ``target_db`` pooled and ``target_db - WORST_IMAGE_ALLOWANCE_DB`` on the worst
    validation input (the export's gates are 30 dB pooled and 27 dB worst).

    Args:
        calibrated: the calibrated float .tflite (``_experimental_calibrate_only``), bytes.
        inputs_nchw: (N, C, H, W) float32 calibration inputs in the generator's scaling, for the sensitivity.
        quantize: ``nodes -> .tflite bytes`` with those node names kept in float (any I/O dtype).
        target_db: pooled validation PSNR (dB, peak-to-peak 2, against the float model) to reach; <= 0 disables
            the selection (no node kept in float).
        validation_count: without ``validation_nchw``, the first this many of ``inputs_nchw`` validate.
        validation_nchw: (V, C, H, W) float32 validation inputs (the export's: both kinds of input of a pix2pix
            representative set, :func:`export.int8_file.validation_inputs`).
        reject: ``.tflite bytes -> why it cannot be kept, or None``, asked of every trial file with at least one
            convolution in float (the export's int8 size gate); a rejected candidate is dropped.
        measured_rounds: rounds of measured selection before the walk in measured order (>= 1).
    Returns:
        (node names to keep in float, report) where report = {"target_db", "worst_target_db", "validation_count",
        "candidates": [FloatCandidate.to_json() ...] (in tie-break order), "trajectory": [{"float_convolutions":
        k, "added": first node name of the convolution added at step k (None at k = 0), "validation_psnr_db":
        pooled dB, "validation_worst_db": worst-input dB}], "rejected": [{"added": first node name, "why"}],
        "quantizations": files made and measured, "float_convolutions": k chosen}. When the targets are never
        reached, the k with the smallest shortfall (then the highest pooled PSNR) is chosen.
    Raises:
        ValueError: ``measured_rounds`` < 1, or an empty validation set.
    """
    if measured_rounds < 1:
        raise ValueError(f"measured_rounds {measured_rounds}; expected >= 1")
    nhwc = np.ascontiguousarray(inputs_nchw.transpose(0, 2, 3, 1)).astype(np.float32)
    candidates = float_candidates(calibrated, nhwc)
    worst_target = target_db - WORST_IMAGE_ALLOWANCE_DB
    report = {"target_db": target_db, "worst_target_db": worst_target, "validation_count": 0,
              "candidates": [c.to_json() for c in candidates], "trajectory": [], "rejected": [],
              "quantizations": 0, "float_convolutions": 0}
    if target_db <= 0 or not candidates:
        return [], report
    val = inputs_nchw[:validation_count] if validation_nchw is None else validation_nchw
    if len(val) == 0:
        raise ValueError("empty validation set")
    report["validation_count"] = int(len(val))
    reference = run_tflite(calibrated, val)

    trials = [0]

    def measure(chosen: Sequence[FloatCandidate]) -> tuple[float, float] | None:
        trials[0] += 1
        content = quantize([n for c in chosen for n in c.nodes])
        why = reject(content) if chosen and reject is not None else None
        if why:
            LOGGER.info("int8 float selection, trial file %d: %s in float rejected: %s", trials[0],
                        chosen[-1].nodes[0], why)
            report["rejected"].append({"added": chosen[-1].nodes[0], "why": why})
            return None
        scores = _validation_scores(reference, run_tflite(content, val))
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
