"""Compaction of an exported .tflite: the same graph and the same arithmetic in fewer bytes.

What the converter (TF 2.19 via onnx2tf) writes beside the weights and the graph, and what this removes:

* **tensor names** of every tensor but the graph's inputs and outputs (8-9 kB for a ResNet-6 generator: the
  converter's op paths such as ``model_68/tf.math.reduce_mean_3/Mean``). The runtime addresses tensors by index;
  the signature (``serving_default``) and the input/output names stay, so the file is run exactly as before.
  The names are returned so the manifest can keep them: a profiler's operator N is named by its output tensor,
  whose index the file still holds, and ``tensor_names[index]`` is the name the converter gave it.
* **empty quantization tables**: the converter gives every float tensor a ``QuantizationParameters`` table with
  no scale (``quantization=None`` reads the same in the runtime, ``InterpreterBuilder::ParseQuantization``).
* **one buffer per identical constant**: tensors whose constant data is byte-for-byte the same (the zero int32
  biases of the convolutions that feed an InstanceNorm, which the equalisation leaves dead) point at one buffer;
  tensors without data point at the empty buffer 0, and buffers no tensor or metadata entry uses are dropped.
* **one copy of each identical vector and small table**: the flatbuffer's int32/int64/float vectors (tensor
  shapes, operator input and output lists, quantization scales and zero points), operators' option tables and
  tensors' quantization tables are written once and referenced from every place that holds the same values;
  FlatBuffers allows a vector or table to be referenced more than once (the runtime only reads them, and its
  verifier checks each reference's bounds). A ResNet-6 generator's tensors have a few dozen distinct shapes among
  257 tensors, most int8 tensors have the zero point vector ``[0]`` or ``[-128]``, and its convolutions, means and
  element-wise ops share a handful of option tables: 4-7 kB per file at about 0.1 M parameters.

Nothing else changes: operators, tensor indices, shapes, types, quantization parameters, metadata and signatures
are kept, so the runtimes compute bit-identical outputs (tested in LiteRT and tflite-runtime 2.14). TFLite's own
``flatbuffer_utils.strip_strings`` also drops the signatures and the input/output names, which this keeps.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import flatbuffers
import numpy as np

from compress.io import atomic_write_bytes

_TFLITE_FILE_IDENTIFIER = b"TFL3"


class _SharedVectorBuilder(flatbuffers.Builder):
    """A FlatBuffers builder that writes each distinct numeric vector once (module docstring).

    The object API packs every vector held as a numpy array through ``CreateNumpyVector``; a vector with the same
    dtype and bytes as one already written gets that one's offset. Byte vectors (``Buffer.data``, custom options,
    metadata) are left alone: identical constants are already shared at the buffer level, and a buffer's data
    keeps a vector of its own."""

    def __init__(self, initial_size: int):
        super().__init__(initial_size)
        self._written: dict[tuple[str, tuple[int, ...], bytes], int] = {}

    def CreateNumpyVector(self, x):  # noqa: N802 - flatbuffers' name
        if not isinstance(x, np.ndarray) or x.dtype == np.uint8 or x.dtype == np.int8:
            return super().CreateNumpyVector(x)
        key = (x.dtype.str, x.shape, x.tobytes())
        if key not in self._written:
            self._written[key] = super().CreateNumpyVector(x)
        return self._written[key]


def _value_key(value):
    """A hashable key equal for equal object-API values (numbers, strings, numpy arrays, lists, tables)."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_value_key(v) for v in value))
    if hasattr(value, "__dict__"):
        return (type(value).__name__, tuple((k, _value_key(v)) for k, v in sorted(vars(value).items())))
    if isinstance(value, float):   # -0.0 == 0.0 in Python; the bits must match
        return ("float", value.hex())
    return value


class _SharedTable:
    """Stands in for an object-API table (an operator's options, a tensor's quantization parameters) so that equal
    tables are written once: ``Pack`` returns the offset of an equal table already written."""

    def __init__(self, table, written: dict):
        self.table, self.written, self.key = table, written, _value_key(table)

    def Pack(self, builder):  # noqa: N802 - the object API's name
        if self.key not in self.written:
            self.written[self.key] = self.table.Pack(builder)
        return self.written[self.key]


def _pack(model) -> bytes:
    """The flatbuffer of a ``ModelT`` (TFLite's object API), identical vectors and identical option and
    quantization tables written once. ``model`` is changed: its tables are wrapped for the packing."""
    builder = _SharedVectorBuilder(1024)
    written: dict = {}
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            if tensor.quantization is not None:
                tensor.quantization = _SharedTable(tensor.quantization, written)
        for op in subgraph.operators or []:
            for field in ("builtinOptions", "builtinOptions2"):
                if getattr(op, field, None) is not None:
                    setattr(op, field, _SharedTable(getattr(op, field), written))
    builder.Finish(model.Pack(builder), file_identifier=_TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def compact_tflite(content: bytes, keep_tensor_names: bool = False) -> tuple[bytes, list[str]]:
    """The compacted flatbuffer of ``content`` (module docstring) and the tensor names it had.

    Args:
        content: a .tflite flatbuffer (one or more subgraphs), at most 2 GB (the flatbuffer object API's limit).
        keep_tensor_names: keep every tensor name (only the quantization tables and buffers are compacted).
    Returns:
        (compacted bytes, names of the first subgraph's tensors by index before compaction, UTF-8 decoded).
    Raises:
        ValueError: ``content`` is not a TFLite flatbuffer, or one this cannot rewrite without loss: 2 GiB or more,
            constants stored outside the flatbuffer (``Buffer.offset``, the converter's large-model layout), or a
            buffer 0 that holds data (the schema reserves it as the empty buffer).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    if len(content) >= 2 ** 31:
        raise ValueError(f"{len(content):,} bytes: the flatbuffer object API writes at most 2 GiB")
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    buffers = model.buffers or []
    if any((b.offset or 0) > 1 or (b.size or 0) > 0 for b in buffers):
        raise ValueError("constants stored outside the flatbuffer (buffer offsets): not compacted")
    if not buffers or (buffers[0].data is not None and len(buffers[0].data)):
        raise ValueError("buffer 0 is missing or holds data; the schema reserves it as the empty buffer")
    names = [(t.name or b"").decode("utf-8", "replace") for t in model.subgraphs[0].tensors] \
        if model.subgraphs else []
    by_digest: dict[str, int] = {}
    for subgraph in model.subgraphs:
        graph_io = set(subgraph.inputs if subgraph.inputs is not None else []) | set(
            subgraph.outputs if subgraph.outputs is not None else [])
        for index, tensor in enumerate(subgraph.tensors):
            if not keep_tensor_names and index not in graph_io:
                tensor.name = None
            q = tensor.quantization
            if q is not None and all(getattr(q, f) is None or len(getattr(q, f)) == 0
                                     for f in ("scale", "zeroPoint", "min", "max")) and q.details is None:
                tensor.quantization = None
            data = model.buffers[tensor.buffer].data
            if data is None or len(data) == 0:
                tensor.buffer = 0
            else:
                tensor.buffer = by_digest.setdefault(hashlib.sha256(data.tobytes()).hexdigest(), tensor.buffer)
    used = sorted({0} | {t.buffer for sg in model.subgraphs for t in sg.tensors}
                  | {m.buffer for m in (model.metadata or [])})
    new_index = {old: new for new, old in enumerate(used)}
    model.buffers = [model.buffers[old] for old in used]
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = new_index[tensor.buffer]
    for entry in model.metadata or []:
        entry.buffer = new_index[entry.buffer]
    return _pack(model), names


def compact_file(path: str | Path, keep_tensor_names: bool = False) -> dict:
    """Compact the .tflite at ``path`` in place (temp file, then rename; :func:`compact_tflite`).

    Returns:
        {"bytes_before", "bytes_after" (bytes), "tensor_names_kept" (bool), "tensor_names" (list, index -> name
        before compaction)}.
    Raises:
        OSError: the file cannot be read or replaced; ValueError: not a TFLite flatbuffer.
    """
    path = Path(path)
    before = path.read_bytes()
    after, names = compact_tflite(before, keep_tensor_names)
    atomic_write_bytes(path, after)
    return {"bytes_before": len(before), "bytes_after": len(after), "tensor_names_kept": keep_tensor_names,
            "tensor_names": names}
