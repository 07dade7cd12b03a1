"""int8 TFLite from the onnx2tf SavedModel and a representative dataset of real source-domain inputs.

The representative dataset is given **explicitly in the generator's own scaling**: images as NHWC float32 in
[-1, 1] (``x / 127.5 - 1``, the compress data loaders' scaling), DCGAN noise as N(0, 1). No mean/std
normalisation is applied on top (onnx2tf's own calibration would assume ImageNet mean/std: not used).

Modes (``--int8-mode``):

* ``naive``: the textbook full-integer recipe: ``TFLiteConverter`` with ``Optimize.DEFAULT``, the
  representative dataset, ``supported_ops = [TFLITE_BUILTINS_INT8]``, every op int8, per-channel weights
  (the converter's default). Measured here: GAN generators lose a lot (see docs/export.md).
* ``robust`` (default): calibrate once, fix the input/output ranges (:func:`fix_io_ranges`: images [-1, 1],
  not what the representative images happen to reach), then quantize with
  ``tensorflow.lite.python.convert.mlir_quantize`` keeping in float only the element-wise ops of
  :data:`FLOAT_OPS`: those of an InstanceNorm (onnx2tf's MEAN, SQUARED_DIFFERENCE, MEAN, ADD, RSQRT, SUB, MUL, or
  MEAN, SUB, MUL, MEAN, ADD, SQRT, DIV for the per-channel-epsilon norm of :mod:`quantize.equalize`), the residual
  additions, and LEAKY_RELU (tflite-runtime 2.14 rounds its int8 kernel's negative branch the wrong way).
  Convolutions (CONV_2D, TRANSPOSE_CONV), padding, concatenation and ReLU stay int8 with per-channel weights;
  QUANTIZE/DEQUANTIZE ops sit at the float islands. It is what TensorFlow's QuantizationDebugger does with
  ``denylisted_ops``, without the debugger. Every file made is then bias-corrected
  (:mod:`quantize.bias_correction`; the float selection's trial files on fewer inputs). The accuracy comes first
  from the equalised generator the export feeds in (:mod:`quantize.equalize`), then from MSE-best clipping ranges
  for the convolution outputs that feed an InstanceNorm (:mod:`quantize.norm_ranges`, kept when they measure
  better); only as a **last resort**, when the int8 model still misses ``target_db`` (30 dB: the
  int8 gate) against the float one on calibration inputs, :func:`quantize.sensitivity.select_float_nodes` keeps in
  float, by node name, the convolutions (InstanceNorm-feeding ones first) whose float version measurably helps
  most, one at a time; their weights are made float again (:func:`restore_float_weights`: no hybrid op), and the
  file's label says how many (:func:`quantize.composition.int8_label`).

``io_dtype`` ("int8", "uint8" or "float32") sets the model's input and output tensor type; integer I/O
carries the scale/zero point in the tensor's quantization parameters (the input of [-1, 1] images has scale
about 2/255).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Literal, NamedTuple, get_args

import numpy as np

from quantize.bias_correction import DEFAULT_CORRECTION_COUNT, correct_biases
from quantize.litert import run_tflite
from quantize.metrics import psnr_db
from quantize.norm_ranges import clip_norm_input_ranges
from quantize.sensitivity import DEFAULT_TARGET_DB, DEFAULT_VALIDATION_COUNT, select_float_nodes

LOGGER = logging.getLogger("coronetgan.quantize")

#: int8 recipe (module docstring).
Int8Mode = Literal["robust", "naive"]
MODES: tuple[Int8Mode, ...] = get_args(Int8Mode)
#: Input/output tensor type of the int8 model.
Int8Io = Literal["int8", "uint8", "float32"]
IO_DTYPES: tuple[Int8Io, ...] = get_args(Int8Io)
#: TFLite builtin ops kept in float by the robust mode (InstanceNorm decomposition by onnx2tf 1.29.24:
#: MEAN, SQUARED_DIFFERENCE, MEAN, ADD, RSQRT, SUB, MUL; plus the residual ADD). Source: the
#: measurements in docs/export.md ("int8: what keeps it usable").
#: SQRT and DIV: the InstanceNorm with per-channel epsilon of :mod:`quantize.equalize`
#: (:class:`quantize.equalize.ChannelEpsInstanceNorm`) converts to MEAN, SUB, MUL, MEAN, ADD, SQRT, DIV.
#: LEAKY_RELU (the U-Net's down path): tflite-runtime 2.14's int8 kernel rounds the negative branch down
#: (measured on a pix2pix file: -1 step on 47% of the negative outputs, a bias that adds up over six layers:
#: 26.5 dB against PyTorch where LiteRT 2.1 computes 36.3 dB from the same file; 36.3 dB in both with the op in
#: float).
FLOAT_OPS = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SUB", "MUL", "ADD", "SQRT", "DIV", "LEAKY_RELU")
#: Inputs the bias correction of each trial file of the float selection measures on (the final file: all of
#: :data:`quantize.bias_correction.DEFAULT_CORRECTION_COUNT`). The correction reruns the model once per
#: convolution and input, so on the main job's CycleGAN at 256 px a 100-input correction made each of the
#: selection's 18 trial files cost about 22 s on the 2-core VM (7.8 min in all; docs/export.md).
SELECTION_CORRECTION_COUNT = 16
#: Value range of generator images (inputs of pix2pix/CycleGAN, outputs of every family): fixed, not calibrated.
IMAGE_RANGE = (-1.0, 1.0)


def _tf():
    import tensorflow as tf

    return tf


def _tf_dtype(name: str):
    tf = _tf()
    return {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[name]


def representative_dataset(calibration_nchw: np.ndarray, signature_input: str = "input"):
    """A callable yielding one ``{signature_input: (1, H, W, C) float32}`` sample per calibration input.

    ``calibration_nchw``: (N, C, H, W) float32 in the generator's input scaling ([-1, 1] images or N(0, 1)
    noise), transposed here to NHWC, the layout of the SavedModel.
    """
    data = np.ascontiguousarray(calibration_nchw.transpose(0, 2, 3, 1)).astype(np.float32)

    def gen() -> Iterable[dict]:
        for x in data:
            yield {signature_input: x[None]}

    return gen


def fix_io_ranges(calibrated: bytes, input_range: tuple[float, float] | None,
                  output_range: tuple[float, float] | None) -> bytes:
    """Set the recorded min/max of the calibrated model's input and output tensor (None: keep the calibrated one).

    The quantizer derives a tensor's int8 scale and zero point from the min/max that calibration recorded in the
    tensor's quantization parameters; for the model's input and output the range is known in advance (images in
    [-1, 1]), so it is written instead of measured: an input set whose darkest pixel is -0.72 must not make the
    file clip every darker pixel of a later input. (The int8 TANH kernel has its own fixed output scale, 1/128,
    which the quantizer keeps: [-1, 127/128].)

    Args:
        calibrated: the calibrate-only .tflite (``_experimental_calibrate_only``), bytes.
        input_range, output_range: (lo, hi) with lo < hi, or None.
    Returns:
        the rewritten calibrated model (bytes).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python.util import (_convert_model_from_bytearray_to_object,
                                             _convert_model_from_object_to_bytearray)

    model = _convert_model_from_bytearray_to_object(bytearray(calibrated))
    sg = model.subgraphs[0]
    for index, rng in ((sg.inputs[0], input_range), (sg.outputs[0], output_range)):
        if rng is None:
            continue
        tensor = sg.tensors[index]
        if tensor.quantization is None:
            tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.min, tensor.quantization.max = [float(rng[0])], [float(rng[1])]
    return bytes(_convert_model_from_object_to_bytearray(model))


def restore_float_weights(content: bytes) -> bytes:
    """Give every convolution that computes in float (float activation input) float32 weights again.

    ``mlir_quantize`` keeps a deny-listed convolution's activations in float but still stores its weights as int8
    (a "hybrid" op, dynamic-range kernels); tflite-runtime 2.14 refuses such a TRANSPOSE_CONV (``weights->type !=
    input->type (INT8 != FLOAT32)``) and its arithmetic is not int8 anyway. The int8 weights are dequantized with
    their own (per-channel) scales into float32 constants, so a convolution kept in float is plainly float.
    Returns the rewritten model (the input when there is nothing to rewrite).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python.util import (_convert_model_from_bytearray_to_object,
                                             _convert_model_from_object_to_bytearray)

    builtin, ttype = schema.BuiltinOperator, schema.TensorType
    model = _convert_model_from_bytearray_to_object(bytearray(content))
    sg = model.subgraphs[0]
    activation_input = {builtin.CONV_2D: 0, builtin.DEPTHWISE_CONV_2D: 0, builtin.TRANSPOSE_CONV: 2,
                        builtin.FULLY_CONNECTED: 0}
    rewritten = 0
    for op in sg.operators:
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        if code not in activation_input or len(op.inputs) < 2:
            continue
        act, weight = sg.tensors[op.inputs[activation_input[code]]], sg.tensors[op.inputs[1]]
        if act.type != ttype.FLOAT32 or weight.type != ttype.INT8 or weight.quantization is None:
            continue
        q = weight.quantization
        values = np.frombuffer(bytes(bytearray(model.buffers[weight.buffer].data)), np.int8).astype(np.float32)
        values = values.reshape(weight.shape)
        scale, zero = np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.float32)
        if len(scale) > 1:
            shape = [1] * values.ndim
            shape[q.quantizedDimension] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        model.buffers[weight.buffer].data = ((values - zero) * scale).astype(np.float32).view(np.uint8).ravel()
        weight.type, weight.quantization = ttype.FLOAT32, None
        rewritten += 1
    return bytes(_convert_model_from_object_to_bytearray(model)) if rewritten else content


def set_io_type(content: bytes, io_dtype: Int8Io) -> bytes:
    """Give an int8 model with int8 input and output tensors the ``io_dtype`` interface, as the TFLite converter's
    ``inference_input_type`` / ``inference_output_type`` do (``mlir_quantize`` alone leaves them int8).

    ``uint8``: a QUANTIZE op (uint8 -> int8) takes the input and one (int8 -> uint8) gives the output; a uint8
    tensor has the int8 tensor's scale and zero point + 128, so the same real values are represented exactly.
    ``float32``: QUANTIZE (float -> int8) at the input, DEQUANTIZE (int8 -> float) at the output. The new tensors
    take the old names and signature entries (the int8 ones get ``_int8`` appended). ``int8``: unchanged.

    Raises:
        ValueError: an unknown ``io_dtype``, or a model whose input/output is not a per-tensor int8 tensor.
    """
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"int8 I/O dtype {io_dtype!r}; expected one of {IO_DTYPES}")
    if io_dtype == "int8":
        return content
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python.util import (_convert_model_from_bytearray_to_object,
                                             _convert_model_from_object_to_bytearray)

    builtin, ttype = schema.BuiltinOperator, schema.TensorType
    model = _convert_model_from_bytearray_to_object(bytearray(content))
    sg = model.subgraphs[0]

    def opcode(code: int) -> int:
        for i, oc in enumerate(model.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
                return i
        oc = schema.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        model.operatorCodes.append(oc)
        return len(model.operatorCodes) - 1

    def outer_tensor(inner_index: int) -> int:
        inner = sg.tensors[inner_index]
        q = inner.quantization
        if inner.type != ttype.INT8 or q is None or len(q.scale or []) != 1:
            raise ValueError(f"tensor {inner.name!r} is not a per-tensor int8 tensor; cannot change the I/O type")
        outer = schema.TensorT()
        outer.shape, outer.shapeSignature, outer.name, outer.buffer = inner.shape, inner.shapeSignature, inner.name, 0
        inner.name = (inner.name or b"") + b"_int8"
        if io_dtype == "uint8":
            outer.type = ttype.UINT8
            outer.quantization = schema.QuantizationParametersT()
            outer.quantization.scale, outer.quantization.zeroPoint = list(q.scale), [int(q.zeroPoint[0]) + 128]
        else:
            outer.type = ttype.FLOAT32
        sg.tensors.append(outer)
        return len(sg.tensors) - 1

    def op(code: int, inputs: list[int], outputs: list[int]):
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = opcode(code), inputs, outputs
        return o

    old_in, old_out = sg.inputs[0], sg.outputs[0]
    new_in, new_out = outer_tensor(old_in), outer_tensor(old_out)
    sg.operators.insert(0, op(builtin.QUANTIZE, [new_in], [old_in]))
    sg.operators.append(op(builtin.QUANTIZE if io_dtype == "uint8" else builtin.DEQUANTIZE, [old_out], [new_out]))
    sg.inputs[0], sg.outputs[0] = new_in, new_out
    for sig in model.signatureDefs or []:
        for entry, old, new in [(e, old_in, new_in) for e in sig.inputs] + [(e, old_out, new_out) for e in sig.outputs]:
            if entry.tensorIndex == old:
                entry.tensorIndex = new
    return bytes(_convert_model_from_object_to_bytearray(model))


def _choose_norm_ranges(calibrated: bytes, calibration_nchw: np.ndarray, validation_nchw: np.ndarray,
                        quantize: Callable[[bytes], bytes]) -> tuple[bytes, dict]:
    """The calibrated model with the clipped InstanceNorm-input ranges of :mod:`quantize.norm_ranges`, or without
    them, whichever makes the all-int8 file (``quantize(calibrated model) -> .tflite bytes``) closer to the float
    model on ``validation_nchw`` (pooled PSNR). Returns (model, report {"kept", "validation_psnr_db":
    {"calibrated", "clipped"}, "tensors": per-tensor choices}); a model with nothing to clip comes back as is."""
    clipped, tensors = clip_norm_input_ranges(calibrated, calibration_nchw)
    report = {"kept": False, "validation_psnr_db": None, "tensors": tensors}
    if not any(t["factor"] < 1.0 for t in tensors):
        return calibrated, report
    reference = run_tflite(calibrated, validation_nchw)
    scores = {name: psnr_db(reference, run_tflite(quantize(model), validation_nchw))
              for name, model in (("calibrated", calibrated), ("clipped", clipped))}
    report["validation_psnr_db"] = scores
    report["kept"] = scores["clipped"] > scores["calibrated"]
    LOGGER.info("int8 InstanceNorm-input ranges: all-int8 validation PSNR %.2f dB calibrated, %.2f dB clipped (%s)",
                scores["calibrated"], scores["clipped"], "kept" if report["kept"] else "not kept")
    return (clipped if report["kept"] else calibrated), report


class QuantizedModel(NamedTuple):
    """Result of :func:`quantize_saved_model`: ``content`` (.tflite bytes), ``float_nodes`` (tensor names kept
    in float besides the ``float_ops``), ``selection`` (the report of
    :func:`quantize.sensitivity.select_float_nodes`; empty for naive mode) and ``bias_correction`` (the report
    of :func:`quantize.bias_correction.correct_biases`; None when off), ``norm_ranges`` (what
    :func:`quantize.norm_ranges.clip_norm_input_ranges` chose and whether it was kept; None when off) and
    ``choice_content`` (the same recipe, float nodes and I/O type calibrated on ``choice_calibration_nchw``
    instead: the file a choice between int8 files is measured on; None without ``choice_calibration_nchw``)."""

    content: bytes
    float_nodes: list
    selection: dict
    bias_correction: dict | None = None
    norm_ranges: dict | None = None
    choice_content: bytes | None = None


def quantize_saved_model(saved_model_dir: str | Path, calibration_nchw: np.ndarray, *, mode: Int8Mode = "robust",
                         io_dtype: Int8Io = "int8", float_ops: Iterable[str] = FLOAT_OPS,
                         per_channel: bool = True, target_db: float = DEFAULT_TARGET_DB,
                         validation_count: int = DEFAULT_VALIDATION_COUNT,
                         input_range: tuple[float, float] | None = IMAGE_RANGE,
                         output_range: tuple[float, float] | None = IMAGE_RANGE,
                         bias_correction: bool = True, correction_nchw: np.ndarray | None = None,
                         clip_norm_ranges: bool = True, validation_nchw: np.ndarray | None = None,
                         reject: Callable[[bytes], str | None] | None = None,
                         choice_calibration_nchw: np.ndarray | None = None,
                         choice_correction_nchw: np.ndarray | None = None) -> QuantizedModel:
    """Quantize the SavedModel to int8 (module docstring) and return a :class:`QuantizedModel`.

    Args:
        saved_model_dir: onnx2tf output folder (``saved_model.pb`` with signature ``serving_default``).
        calibration_nchw: representative inputs (N >= 1, C, H, W) float32 in the generator's scaling.
        mode: "robust" or "naive" (module docstring).
        io_dtype: "int8", "uint8" or "float32" input/output tensors.
        float_ops: TFLite op names kept in float in robust mode.
        per_channel: per-channel weight scales (True, the default) or per-tensor.
        target_db: robust mode: validation PSNR (dB) the float selection of convolutions aims for; <= 0 turns
            the selection off (only ``float_ops`` in float).
        validation_count: without ``validation_nchw``, calibration inputs the choices validate on (the first).
        validation_nchw: (V, C, H, W) float32 inputs the InstanceNorm-range choice and the float selection
            validate on (the export: :func:`export.int8_file.validation_inputs`).
        reject: ``.tflite bytes -> why it cannot be kept, or None`` for the float selection's trial files
            (:func:`quantize.sensitivity.select_float_nodes`; the export's size gate).
        input_range, output_range: fixed value range of the model's input/output tensor (robust mode;
            :func:`fix_io_ranges`); None keeps the calibrated range (DCGAN's noise input).
        bias_correction: robust mode: empirical bias correction (:mod:`quantize.bias_correction`) of every
            int8 file made: the final file on the first :data:`DEFAULT_CORRECTION_COUNT` of ``correction_nchw``,
            the trial files of the choices on its last :data:`SELECTION_CORRECTION_COUNT`, so that a correction
            is not scored on the inputs it was fitted to (the validation inputs are the first ones).
        correction_nchw: inputs the bias correction measures on (default: ``calibration_nchw``); the export
            gives the run's source-domain images only.
        clip_norm_ranges: robust mode: MSE-best clipping ranges for the convolution outputs that feed an
            InstanceNorm (:mod:`quantize.norm_ranges`), kept only when the all-int8 file made with them matches the
            float model better on the validation inputs than the one made with the calibrated ranges.
        choice_calibration_nchw: (N', C, H, W) representative inputs without the validation inputs, or None. When
            given, every file a choice is measured on (the InstanceNorm-range choice, the float selection's trial
            files, ``choice_content``) is calibrated on these, so the validation inputs did not set the
            activation ranges they are scored under: calibrated on them, a narrow U-Net measured 2.3 dB better
            on its worst validation input than calibrated without them, and its held-out inputs measured lower
            still (docs/export.md, "Session 17"). The final file is calibrated on ``calibration_nchw`` with what
            was chosen.
        choice_correction_nchw: bias-correction inputs of ``choice_content`` and of the trial files (their last
            :data:`SELECTION_CORRECTION_COUNT`) when ``choice_calibration_nchw`` is given (default:
            ``correction_nchw``); the export gives the source inputs without the validation inputs.
    Raises:
        ValueError: unknown mode/io_dtype or an empty calibration set (the CLI checks these first and
            raises InputError).
    """
    if mode not in MODES:
        raise ValueError(f"int8 mode {mode!r}; expected one of {MODES}")
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"int8 I/O dtype {io_dtype!r}; expected one of {IO_DTYPES}")
    if len(calibration_nchw) == 0:
        raise ValueError("empty calibration set")
    tf = _tf()

    def converter(inputs: np.ndarray):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset(inputs)
        conv._experimental_disable_per_channel = not per_channel
        return conv

    if mode == "naive":
        conv = converter(calibration_nchw)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = _tf_dtype(io_dtype)
        conv.inference_output_type = _tf_dtype(io_dtype)
        return QuantizedModel(conv.convert(), [], {})
    from tensorflow.lite.python import convert as tfl_convert

    def calibrate(inputs: np.ndarray) -> bytes:
        conv = converter(inputs)
        conv._experimental_calibrate_only = True
        LOGGER.info("int8: calibrating activation ranges on %d representative inputs (TFLite converter)",
                    len(inputs))
        return fix_io_ranges(conv.convert(), input_range, output_range)

    calibrated = calibrate(calibration_nchw)
    held_back = choice_calibration_nchw is not None and len(choice_calibration_nchw) > 0
    choice_inputs = choice_calibration_nchw if held_back else calibration_nchw
    choice_calibrated = calibrate(choice_inputs) if held_back else calibrated
    float_ops = list(float_ops)
    correction_nchw = calibration_nchw if correction_nchw is None else correction_nchw
    choice_correction = correction_nchw if choice_correction_nchw is None or not held_back \
        else choice_correction_nchw
    corrections: dict = {}
    validation_nchw = calibration_nchw[:validation_count] if validation_nchw is None else validation_nchw
    trial_correction = choice_correction[-SELECTION_CORRECTION_COUNT:]

    def quantize(model: bytes, nodes: list[str], trial: bool = False,
                 correction: np.ndarray | None = None) -> bytes:
        content = restore_float_weights(tfl_convert.mlir_quantize(
            model, disable_per_channel=not per_channel, fully_quantize=True,
            input_data_type=_tf_dtype("int8"), output_data_type=_tf_dtype("int8"),   # io_dtype: set_io_type
            denylisted_ops=float_ops, denylisted_nodes=list(nodes)))
        if bias_correction:
            inputs, count = (trial_correction, SELECTION_CORRECTION_COUNT) if trial else \
                (correction_nchw if correction is None else correction, DEFAULT_CORRECTION_COUNT)
            content, report = correct_biases(content, calibrated, inputs, count)
            if correction is None:
                corrections["last"] = report
        return content

    ranged, choice_ranged, norm_ranges = calibrated, choice_calibrated, None
    if clip_norm_ranges:
        LOGGER.info("int8: choosing InstanceNorm-input ranges (expected error under the norm; two trial files)")
        choice_ranged, norm_ranges = _choose_norm_ranges(choice_calibrated, choice_inputs, validation_nchw,
                                                         lambda model: quantize(model, [], trial=True))
        if not held_back:
            ranged = choice_ranged
        elif norm_ranges["kept"]:   # the same choice, the ranges of the whole representative dataset
            ranged, norm_ranges["tensors"] = clip_norm_input_ranges(calibrated, calibration_nchw)
    nodes, selection = select_float_nodes(
        choice_ranged, choice_inputs, lambda nodes: quantize(choice_ranged, nodes, trial=True),
        target_db=target_db, validation_nchw=validation_nchw, reject=reject)
    selection["choice_calibration_count"] = int(len(choice_inputs))
    LOGGER.info("int8: the file (%d node(s) kept in float)%s", len(nodes),
                f", bias correction on {min(len(correction_nchw), DEFAULT_CORRECTION_COUNT)} inputs"
                if bias_correction else "")
    # the I/O type last: bias correction and the float selection measure the int8-interface file
    content = set_io_type(quantize(ranged, nodes), io_dtype)
    choice_content = set_io_type(quantize(choice_ranged, nodes, correction=choice_correction), io_dtype) \
        if held_back else None
    return QuantizedModel(content, nodes, selection, corrections.get("last"), norm_ranges, choice_content)
