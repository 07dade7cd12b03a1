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

Nothing else changes: operators, tensor indices, shapes, types, quantization parameters, metadata and signatures
are kept, so the runtimes compute bit-identical outputs (tested in LiteRT and tflite-runtime 2.14). TFLite's own
``flatbuffer_utils.strip_strings`` also drops the signatures and the input/output names, which this keeps.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from compress.io import atomic_write_bytes


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
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), names


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
