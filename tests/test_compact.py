"""export.compact: the compacted .tflite computes bit for bit what the converter's file computed, in LiteRT and in
tflite-runtime 2.14, with its signature, input/output names and metadata; only the bytes differ (issue 15's size
gate measures the installed files)."""
from __future__ import annotations

import numpy as np
import pytest

from export.compact import compact_file, compact_tflite
from quantize.litert import RUNTIMES, make_interpreter, run_tflite


@pytest.fixture(scope="module")
def converter_files(tmp_path_factory):
    """An fp32 and a full-integer int8 file straight from the TFLite converter: a conv -> InstanceNorm-like block ->
    two convolutions with identical zero biases (what the equalisation leaves), named tensors throughout."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("compact")
    rng = np.random.default_rng(0)

    class Block(tf.Module):
        def __init__(self):
            super().__init__()
            self.w1 = tf.constant(rng.normal(size=(3, 3, 3, 8)).astype(np.float32))
            self.w2 = tf.constant(rng.normal(size=(3, 3, 8, 8)).astype(np.float32))
            self.w3 = tf.constant(rng.normal(size=(3, 3, 8, 8)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="input")])
        def __call__(self, x):
            y = tf.nn.conv2d(x, self.w1, 1, "SAME")
            mean = tf.reduce_mean(y, axis=[1, 2], keepdims=True)
            y = (y - mean) * tf.math.rsqrt(tf.reduce_mean(tf.square(y - mean), axis=[1, 2], keepdims=True) + 1e-5)
            y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(y, self.w2, 1, "SAME"), tf.zeros(8)))
            y = tf.nn.bias_add(tf.nn.conv2d(y, self.w3, 1, "SAME"), tf.zeros(8))
            return {"output": tf.tanh(y)}

    module = Block()
    concrete = module.__call__.get_concrete_function()
    files = {}
    for dtype in ("fp32", "int8"):
        conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
        if dtype == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)]
                                                   for _ in range(8))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int8
        files[dtype] = root / f"{dtype}.tflite"
        files[dtype].write_bytes(conv.convert())
    return files


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_compacted_file_computes_the_same_bits(converter_files, tmp_path, dtype):
    src = converter_files[dtype]
    original = src.read_bytes()
    dest = tmp_path / src.name
    dest.write_bytes(original)
    report = compact_file(dest)
    compacted = dest.read_bytes()
    assert report["bytes_before"] == len(original) > report["bytes_after"] == len(compacted)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    for runtime in RUNTIMES:
        assert np.array_equal(run_tflite(src, x, 1, runtime), run_tflite(dest, x, 1, runtime)), runtime
    before, after = make_interpreter(src, 1), make_interpreter(dest, 1)
    # the names are gone from the file but kept by index in the report; the graph's inputs/outputs keep theirs
    names = [t["name"] for t in sorted(before.get_tensor_details(), key=lambda t: t["index"])]
    assert report["tensor_names"] == names and all(names)
    io = {d["index"] for d in after.get_input_details() + after.get_output_details()}
    for t in after.get_tensor_details():
        assert bool(t["name"]) == (t["index"] in io), t
        ref = before.get_tensor_details()[t["index"]]
        assert (t["dtype"], list(t["shape"]), t["quantization"]) == (ref["dtype"], list(ref["shape"]),
                                                                     ref["quantization"])
    assert after.get_signature_list() == before.get_signature_list() and after.get_signature_list()
    runner = after.get_signature_runner()
    assert runner.get_input_details().keys() == before.get_signature_runner().get_input_details().keys()
    # the converter's metadata (min_runtime_version) is kept
    assert b"min_runtime_version" in compacted
    # a second pass changes nothing
    assert compact_tflite(compacted)[0] == compacted


def test_identical_constants_share_one_buffer(converter_files, tmp_path):
    """Identical constants in separate buffers (what the export's bias correction leaves: it writes every
    convolution's bias into a buffer of its own, and the biases of InstanceNorm-feeding convolutions stay zero)
    point at one buffer after compaction; every other constant keeps its own data."""
    import copy

    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(converter_files["int8"].read_bytes()))
    tensors = model.subgraphs[0].tensors

    def zero_biases(m):
        return [t.buffer for t in m.subgraphs[0].tensors if t.type == 2 and len(t.shape) == 1
                and m.buffers[t.buffer].data is not None and not np.any(m.buffers[t.buffer].data)]

    assert len(zero_biases(model)) == 3 and len(set(zero_biases(model))) == 1   # the converter shares them
    shared = zero_biases(model)[0]
    for t in [t for t in tensors if t.buffer == shared][1:]:   # a buffer of its own each, as bias correction does
        model.buffers.append(copy.deepcopy(model.buffers[shared]))
        t.buffer = len(model.buffers) - 1
    assert len(set(zero_biases(model))) == 3
    unshared = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    compacted, _ = compact_tflite(unshared)
    assert len(compacted) < len(unshared)
    after = flatbuffer_utils.convert_bytearray_to_object(bytearray(compacted))
    assert len(set(zero_biases(after))) == 1
    with_data = [t.buffer for t in after.subgraphs[0].tensors if after.buffers[t.buffer].data is not None]
    assert len(set(with_data)) == len(with_data) - 2   # only the three zero biases share
    assert all(t.quantization is None or t.quantization.scale is not None for t in after.subgraphs[0].tensors)
    # and the shared file computes what the unshared one did, bit for bit, in both runtimes
    (tmp_path / "unshared.tflite").write_bytes(unshared)
    (tmp_path / "shared.tflite").write_bytes(compacted)
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    for runtime in RUNTIMES:
        assert np.array_equal(run_tflite(tmp_path / "unshared.tflite", x, 1, runtime),
                              run_tflite(tmp_path / "shared.tflite", x, 1, runtime)), runtime


def test_names_can_be_kept_and_bad_content_is_refused(converter_files):
    content = converter_files["fp32"].read_bytes()
    kept, names = compact_tflite(content, keep_tensor_names=True)
    assert len(kept) < len(content) and all(n.encode() in kept for n in names if n)
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        compact_tflite(b"\0" * 64)


def test_files_it_cannot_rewrite_are_refused_and_left_alone(converter_files, tmp_path):
    """Constants stored outside the flatbuffer (the converter's layout for models over 2 GB) would be lost by the
    object API: compact_tflite refuses such a file, and the export's finishing step leaves it as it is."""
    from tensorflow.lite.tools import flatbuffer_utils

    from export.finish import finish_tflite

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(converter_files["int8"].read_bytes()))
    big = max(range(len(model.buffers)), key=lambda i: 0 if model.buffers[i].data is None
              else len(model.buffers[i].data))
    model.buffers[big].data, model.buffers[big].offset, model.buffers[big].size = None, 1024, 100
    content = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    with pytest.raises(ValueError, match="outside the flatbuffer"):
        compact_tflite(content)
    path = tmp_path / "offset.tflite"
    path.write_bytes(content)
    report = finish_tflite(path)
    assert "outside the flatbuffer" in report["compaction"]["skipped"] and report["tensor_names"] is None
    assert path.read_bytes() == content
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(converter_files["int8"].read_bytes()))
    model.buffers[0].data = np.ones(4, np.uint8)
    with pytest.raises(ValueError, match="buffer 0"):
        compact_tflite(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_identical_vectors_are_written_once(converter_files, dtype):
    """Tensors with the same shape point at one shape vector, int8 tensors with the same zero points at one zero
    point vector; composition.file_bytes counts a shared quantization vector once."""
    from quantize.composition import _vector_start, file_bytes
    from quantize.litert import flatbuffer_schema

    content = converter_files[dtype].read_bytes()
    names_kept, _ = compact_tflite(content, keep_tensor_names=True)
    compacted, _ = compact_tflite(content)
    sg = flatbuffer_schema().Model.GetRootAsModel(compacted, 0).Subgraphs(0)
    tensors = [sg.Tensors(i) for i in range(sg.TensorsLength())]
    shapes: dict[tuple, set] = {}
    for t in tensors:   # Tensor.shape is vtable slot 4
        shapes.setdefault(tuple(t.ShapeAsNumpy().tolist()), set()).add(_vector_start(t, 4))
    assert len(shapes) < len(tensors) and all(len(starts) == 1 for starts in shapes.values()), shapes
    quantized = [t.Quantization() for t in tensors if t.Quantization() is not None and t.Quantization().ScaleLength()]
    if dtype == "int8":
        zero_points = {tuple(q.ZeroPointAsNumpy().tolist()): _vector_start(q, 10) for q in quantized}
        assert len({_vector_start(q, 10) for q in quantized}) == len(zero_points) < len(quantized)
        distinct = {(slot, _vector_start(q, slot)): width * length for q in quantized
                    for slot, width, length in ((8, 4, q.ScaleLength()), (10, 8, q.ZeroPointLength()))}
        assert file_bytes(compacted)["quantization_parameters"] == sum(distinct.values())
    # the sharing alone saves bytes: the same model written by TFLite's object API, a vector per use, is larger
    for shared in (compacted, names_kept):
        assert len(flatbuffer_utils_pack(shared)) > len(shared)


def flatbuffer_utils_pack(content: bytes) -> bytes:
    """``content`` rewritten by TFLite's own object API (every vector written where it is used)."""
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer_utils.convert_bytearray_to_object(
        bytearray(content))))


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_equal_option_and_quantization_tables_are_written_once(converter_files, dtype):
    """Operators with equal options (the first and last convolutions: stride 1, SAME, no activation) point at one
    option table, the middle one (fused ReLU) at its own; equal quantization tables are shared the same way."""
    from tensorflow.lite.tools import flatbuffer_utils

    from export.compact import _value_key
    from quantize.litert import flatbuffer_schema

    compacted, _ = compact_tflite(converter_files[dtype].read_bytes())
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(compacted))
    sg = flatbuffer_schema().Model.GetRootAsModel(compacted, 0).Subgraphs(0)
    tables: dict = {}
    for i, op in enumerate(model.subgraphs[0].operators):
        if op.builtinOptions is not None:
            tables.setdefault(_value_key(op.builtinOptions), set()).add(sg.Operators(i).BuiltinOptions().Pos)
    assert all(len(positions) == 1 for positions in tables.values()), tables
    assert sum(len(p) for p in tables.values()) < sum(op.builtinOptions is not None
                                                     for op in model.subgraphs[0].operators)
    if dtype == "int8":
        quant: dict = {}
        for i, t in enumerate(model.subgraphs[0].tensors):
            if t.quantization is not None:
                quant.setdefault(_value_key(t.quantization), set()).add(sg.Tensors(i).Quantization()._tab.Pos)
        assert all(len(positions) == 1 for positions in quant.values()), quant
