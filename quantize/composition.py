"""What a .tflite file is made of: which convolutions run in int8, which ops compute in float, its I/O.

Read from the flatbuffer alone (the LiteRT wheel's schema, :func:`quantize.litert.flatbuffer_schema`), so the
figures describe the file that ships, not the converter's intent:

* **Convolutions** (CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, FULLY_CONNECTED), each classified by the type of
  its activation input and of its stored weights: ``int8`` (integer activations, int8 weights), ``float`` (float
  activations and float weights; fp16 weights behind a DEQUANTIZE count as float) or ``hybrid`` (float
  activations against int8 weights: "dynamic range" kernels, which tflite-runtime 2.14 refuses for
  TRANSPOSE_CONV and which a file labelled int8 must not contain); ``int16x8`` (int16 activations, int8 weights:
  the 16x8 files of :mod:`quantize.int16x8`).
* **Weight bytes**: the constant filter and bias bytes of every convolution; the int8 share is the part that
  belongs to convolutions with int8 filters and integer arithmetic (int32 biases; int64 in a 16x8 file).
* **MACs** per convolution from the tensor shapes (CONV_2D: output elements x kh x kw x C_in / groups;
  TRANSPOSE_CONV: input elements x kh x kw x C_out; DEPTHWISE: output elements x kh x kw; FULLY_CONNECTED:
  C_in x C_out per row); the int8 share is the part computed by int8 convolutions. These are the multiplies the
  file does: :mod:`compress.macs` (the manifest's and the tables' MACs) counts a transposed convolution at its
  output resolution, the published convention, i.e. stride**2 times more for those layers; a share is a ratio
  within this module's count. ``macs_int16_activations`` is the part of those computed with int16 activations
  (16x8), counted in the int8 share too (int8 weights).
* **Float ops**: every op that computes in float (a float or hybrid convolution, any other op with a float output),
  by op name with counts (QUANTIZE/DEQUANTIZE are counted apart as conversions).
* **I/O**: dtype, scale/zero point and the value range an integer tensor can represent,
  ``[(q_min - zero_point) * scale, (q_max - zero_point) * scale]``.
* **File bytes** (:func:`file_bytes`): where the bytes of the file go: constant data by dtype, quantization
  parameters, tensor names, and the graph (everything else: operator and tensor tables, shapes, buffer tables,
  signatures, alignment). At about 0.1 M parameters the graph, not the weights, decides the int8 / fp32 size ratio.

:func:`int8_label` turns it into the label shown everywhere a file is listed: ``int8`` when every convolution is
int8, else ``int8 (mixed: N of M convolutions float)``; ``int8 (16x8: int16 activations)`` for a 16x8 file.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from quantize.litert import flatbuffer_schema, operator_codes

#: Ops whose second input is a weight tensor; the activation input index differs for TRANSPOSE_CONV.
CONV_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 0, "TRANSPOSE_CONV": 2, "FULLY_CONNECTED": 0}
#: Ops that only convert between float and integer representations.
CONVERSION_OPS = ("QUANTIZE", "DEQUANTIZE")
_FLOAT_TYPES = ("float32", "float16", "float64")
#: Convolution kinds with int8 weights and integer arithmetic (int8 or int16 activations).
INTEGER_KINDS = ("int8", "int16x8")


def _type_names() -> dict[int, str]:
    schema = flatbuffer_schema()

    return {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def _conv_macs(op: str, weight: list[int], act_in: list[int], out: list[int]) -> int:
    if op == "CONV_2D":  # filter (C_out, kh, kw, C_in / groups)
        return int(np.prod(out)) * weight[1] * weight[2] * weight[3]
    if op == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, C_out)
        return int(np.prod(out)) * weight[1] * weight[2]
    if op == "TRANSPOSE_CONV":  # filter (C_out, kh, kw, C_in): every input element meets kh x kw x C_out weights
        return int(np.prod(act_in)) * weight[0] * weight[1] * weight[2]
    return int(np.prod(act_in[:-1])) * weight[0] * weight[1] if len(weight) == 2 else 0  # FULLY_CONNECTED


def describe(model: str | Path | bytes, tensor_names: Sequence[str] | None = None) -> dict:
    """The composition of a .tflite (module docstring), JSON-ready.

    Args:
        model: the file (path or content).
        tensor_names: names of the first subgraph's tensors by index, for a file whose names were dropped
            (``export.compact``); None: the names in the file.

    Returns:
        {"convolutions": [{"op", "name" (output tensor), "kind": "int8"|"int16x8"|"float"|"hybrid", "weight_scales" (count of
        the weight tensor's quantization scales: 0 float, 1 per-tensor, C per-channel), "activation_dtype",
        "weight_dtype", "weight_bytes", "macs"}], "convolution_count", "float_convolutions", "hybrid_ops",
        "int8_share": {"weight_bytes", "macs", "macs_int16_activations"} (fractions in [0, 1]; None for a file
        without convolutions),
        "weight_scales": "per-channel" | "per-tensor" | "mixed" | None (the int8 convolutions' weight
        scales, read from the file; None without int8 convolutions),
        "weight_bytes": {dtype: bytes}, "float_ops": {op name: count}, "float_op_names": ["OP output tensor"]
        (every op computing in float, in graph order, convolutions included), "conversions":
        {"QUANTIZE": n, "DEQUANTIZE": n}, "op_count", "input", "output"} with
        "input"/"output" = {"name", "dtype", "shape", "quantization": {"scale", "zero_point"} or None,
        "value_range": [lo, hi] or None}.
    Raises:
        OSError: the path cannot be read; struct.error / IndexError: not a TFLite flatbuffer.
    """
    schema = flatbuffer_schema()

    content = model if isinstance(model, bytes) else Path(model).read_bytes()
    root = schema.Model.GetRootAsModel(content, 0)
    codes = [name for name, _ in operator_codes(root)]
    types = _type_names()
    sg = root.Subgraphs(0)

    def tensor(t: int):
        return sg.Tensors(t)

    def tensor_name(t: int) -> str:
        return tensor_names[t] if tensor_names is not None else (tensor(t).Name() or b"").decode()

    def dtype(t: int) -> str:
        return types.get(tensor(t).Type(), str(tensor(t).Type()))

    def shape(t: int) -> list[int]:
        ten = tensor(t)
        return [int(s) for s in ten.ShapeAsNumpy()] if ten.ShapeLength() else []

    def const_bytes(t: int) -> int:
        buf = root.Buffers(tensor(t).Buffer())
        return int(buf.DataLength() or buf.Size()) if buf is not None else 0

    producer = {}
    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        ins = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []
        ops.append((codes[op.OpcodeIndex()], ins, outs))
        for t in outs:
            producer[t] = i

    counted_buffers: set[int] = set()

    def once(t: int, nbytes: int) -> int:
        """``nbytes`` the first time the buffer of ``t`` is met, 0 after: the converter shares identical constants
        (e.g. the zero biases of the equalised convolutions) between tensors, and the file holds them once."""
        buf = tensor(t).Buffer()
        if buf in counted_buffers:
            return 0
        counted_buffers.add(buf)
        return nbytes

    def stored(t: int) -> tuple[str, int]:
        """(dtype as stored, constant bytes) of a weight, looking through a DEQUANTIZE of a constant (fp16)."""
        k = producer.get(t)
        if k is not None and ops[k][0] == "DEQUANTIZE" and const_bytes(ops[k][1][0]):
            return dtype(ops[k][1][0]), once(ops[k][1][0], const_bytes(ops[k][1][0]))
        return dtype(t), once(t, const_bytes(t))

    convs, conversions, float_op_names = [], {}, []
    weight_by_dtype: dict[str, int] = {}
    for name, ins, outs in ops:
        out_name = tensor_name(outs[0]) if outs else ""
        if name in CONV_OPS and len(ins) > 1:
            act, w = ins[CONV_OPS[name]], ins[1]
            act_dtype, (w_dtype, w_bytes) = dtype(act), stored(w)
            bias_bytes = 0
            bias_index = 3 if name == "TRANSPOSE_CONV" else 2
            if len(ins) > bias_index and ins[bias_index] >= 0:
                b_dtype, bias_bytes = stored(ins[bias_index])
                weight_by_dtype[b_dtype] = weight_by_dtype.get(b_dtype, 0) + bias_bytes
            weight_by_dtype[w_dtype] = weight_by_dtype.get(w_dtype, 0) + w_bytes
            if act_dtype in _FLOAT_TYPES:
                kind = "hybrid" if w_dtype in ("int8", "int4", "uint8") else "float"
            else:
                kind = "int16x8" if act_dtype == "int16" else "int8"
            if kind in ("float", "hybrid"):
                float_op_names.append(f"{name} {out_name}")
            q = tensor(w).Quantization()
            scales = q.ScaleLength() if q is not None else 0
            convs.append({"op": name, "name": out_name, "kind": kind, "weight_scales": scales,
                          "activation_dtype": act_dtype, "weight_dtype": w_dtype,
                          "weight_bytes": w_bytes + bias_bytes,
                          "macs": _conv_macs(name, shape(w), shape(act), shape(outs[0]))})
        elif name in CONVERSION_OPS:
            conversions[name] = conversions.get(name, 0) + 1
        elif outs and dtype(outs[0]) in _FLOAT_TYPES:
            float_op_names.append(f"{name} {out_name}")
    float_ops = Counter(n.split(" ", 1)[0] for n in float_op_names)
    total_bytes = sum(c["weight_bytes"] for c in convs)
    total_macs = sum(c["macs"] for c in convs)
    int8_convs = [c for c in convs if c["kind"] in INTEGER_KINDS]   # int8 weights, integer arithmetic
    int16x8 = [c for c in convs if c["kind"] == "int16x8"]
    share = {"weight_bytes": sum(c["weight_bytes"] for c in int8_convs) / total_bytes if total_bytes else None,
             "macs": sum(c["macs"] for c in int8_convs) / total_macs if total_macs else None,
             "macs_int16_activations": sum(c["macs"] for c in int16x8) / total_macs if total_macs else None}
    kinds = {"per-channel" if c["weight_scales"] > 1 else "per-tensor" for c in int8_convs}
    weight_scales = (kinds.pop() if len(kinds) == 1 else "mixed") if kinds else None
    return {"convolutions": convs, "convolution_count": len(convs), "weight_scales": weight_scales,
            "float_convolutions": [c["name"] for c in convs if c["kind"] == "float"],
            "hybrid_ops": [f"{c['op']} {c['name']}" for c in convs if c["kind"] == "hybrid"],
            "int8_share": share, "weight_bytes": dict(sorted(weight_by_dtype.items())),
            "float_ops": dict(sorted(float_ops.items())), "float_op_names": float_op_names,
            "conversions": dict(sorted(conversions.items())), "op_count": len(ops),
            "input": _io(sg, sg.Inputs(0), dtype, shape), "output": _io(sg, sg.Outputs(0), dtype, shape)}


def _vector_start(table, slot: int) -> int | None:
    """Byte position of the vector in vtable slot ``slot`` of a generated flatbuffer table (None if absent): two
    tables that share one vector (:mod:`export.compact`) give the same position. QuantizationParameters' slots:
    min 4, max 6, scale 8, zero_point 10 (the schema's field order)."""
    offset = table._tab.Offset(slot)
    return table._tab.Vector(offset) if offset else None


def file_bytes(model: str | Path | bytes) -> dict:
    """Where the bytes of a .tflite go, read from the flatbuffer (:func:`quantize.litert.flatbuffer_schema`).

    Returns:
        {"total": file size, "constant_data": {dtype: bytes} (each buffer counted once, under the dtype of the
        first tensor that uses it), "quantization_parameters": bytes of the scale (float32), zero point (int64),
        min and max (float32) vectors of every tensor (a vector shared by several tensors counted once),
        "tensor_names": bytes of the tensor names, "graph": the rest (operator and tensor tables, shapes, buffer
        and opcode tables, signatures, metadata, alignment),
        "tensors", "operators", "buffers": counts}. All sizes in bytes.
    Raises:
        OSError: the path cannot be read; struct.error / IndexError: not a TFLite flatbuffer (empty, truncated).
    """
    schema = flatbuffer_schema()

    content = model if isinstance(model, bytes) else Path(model).read_bytes()
    root = schema.Model.GetRootAsModel(content, 0)
    types = _type_names()
    data: dict[str, int] = {}
    seen: set[int] = set()
    seen_vectors: set[int | None] = set()
    quant = names = tensors = operators = 0
    for g in range(root.SubgraphsLength()):
        sg = root.Subgraphs(g)
        tensors += sg.TensorsLength()
        operators += sg.OperatorsLength()
        for t in range(sg.TensorsLength()):
            ten = sg.Tensors(t)
            names += len(ten.Name() or b"")
            q = ten.Quantization()
            if q is not None:
                for slot, length, width in ((4, q.MinLength(), 4), (6, q.MaxLength(), 4), (8, q.ScaleLength(), 4),
                                            (10, q.ZeroPointLength(), 8)):
                    start = _vector_start(q, slot)
                    if length and start not in seen_vectors:   # a vector shared by several tensors counts once
                        seen_vectors.add(start)
                        quant += width * length
            b = ten.Buffer()
            buf = root.Buffers(b)
            size = int(buf.DataLength() or buf.Size()) if buf is not None else 0
            if size and b not in seen:
                seen.add(b)
                key = types.get(ten.Type(), str(ten.Type()))
                data[key] = data.get(key, 0) + size
    total = len(content)
    return {"total": total, "constant_data": dict(sorted(data.items())), "quantization_parameters": quant,
            "tensor_names": names, "graph": total - sum(data.values()) - quant - names, "tensors": tensors,
            "operators": operators, "buffers": root.BuffersLength()}


def _io(sg, t: int, dtype, shape) -> dict:
    ten = sg.Tensors(t)
    q = ten.Quantization()
    out = {"name": (ten.Name() or b"").decode(), "dtype": dtype(t), "shape": shape(t), "quantization": None,
           "value_range": None}
    if q is not None and q.ScaleLength() == 1 and dtype(t) not in _FLOAT_TYPES:
        scale, zero = float(q.Scale(0)), int(q.ZeroPoint(0))
        info = np.iinfo(np.dtype(dtype(t)))
        out["quantization"] = {"scale": scale, "zero_point": zero}
        out["value_range"] = [(int(info.min) - zero) * scale, (int(info.max) - zero) * scale]
    return out


def int8_label(composition: dict) -> str:
    """``int8`` when every convolution of the file is int8, else ``int8 (mixed: N of M convolutions float)`` (hybrid
    convolutions count as float: their arithmetic is float); a file with int16 activations (16x8,
    :mod:`quantize.int16x8`) is ``int8 (16x8: int16 activations)``, with the mixed part after it if any."""
    total = composition["convolution_count"]
    kinds = [c["kind"] for c in composition["convolutions"]]
    not_integer = sum(1 for k in kinds if k not in INTEGER_KINDS)
    parts = (["16x8: int16 activations"] if "int16x8" in kinds else []) + \
        ([f"mixed: {not_integer} of {total} convolutions float"] if not_integer else [])
    return f"int8 ({', '.join(parts)})" if parts else "int8"
