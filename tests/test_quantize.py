"""Unit checks of quantize/ (equalisation, labels) and of the export gates (no conversion: fast)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from export.parity import GATES_DB, parity
from quantize.metrics import psnr_db
from quantize.int8 import FLOAT_OPS, quantize_saved_model, representative_dataset


def test_representative_dataset_is_nhwc_in_generator_scaling():
    x = np.linspace(-1, 1, 2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    samples = list(representative_dataset(x)())
    assert len(samples) == 2
    s = samples[1]["input"]
    assert s.shape == (1, 4, 5, 3) and s.dtype == np.float32
    assert np.array_equal(s[0], x[1].transpose(1, 2, 0))  # no mean/std applied: [-1, 1] stays [-1, 1]


def test_psnr_units():
    ref = np.zeros((1, 3, 4, 4), np.float32)
    assert psnr_db(ref, ref) == math.inf
    # an error of 0.02 everywhere on a peak-to-peak range of 2: 20 log10(2 / 0.02) = 40 dB
    assert psnr_db(ref, ref + 0.02) == pytest.approx(40.0)
    fig = parity(ref, ref + 0.02)
    assert fig["max_abs_diff"] == pytest.approx(0.02) and fig["min_image_psnr_db"] == pytest.approx(40.0)


def test_gates_and_float_ops():
    from export.parity import INT8_SIZE_RATIO, MIN_IMAGE_GATES_DB

    # the values the issues set (issue 4 item 3; issue 15 item 2: 30 dB pooled, 27 dB worst image, 0.30x the fp32 file)
    assert GATES_DB == {"fp32": 60.0, "fp16": 45.0, "int8": 30.0}
    assert MIN_IMAGE_GATES_DB == {"int8": 27.0} and INT8_SIZE_RATIO == 0.30
    assert {"MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SQRT", "DIV", "LEAKY_RELU"} <= set(FLOAT_OPS)
    # convolutions, padding, concatenation and ReLU are never on the deny-list
    assert not {"CONV_2D", "TRANSPOSE_CONV", "PAD", "MIRROR_PAD", "CONCATENATION", "RELU"} & set(FLOAT_OPS)


def test_bad_mode_and_empty_calibration(tmp_path):
    x = np.zeros((1, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="mode"):
        quantize_saved_model(tmp_path, x, mode="int4")
    with pytest.raises(ValueError, match="I/O"):
        quantize_saved_model(tmp_path, x, io_dtype="int16")
    with pytest.raises(ValueError, match="empty"):
        quantize_saved_model(tmp_path, x[:0])


# ------------------------------------------------------------------ equalisation (quantize/equalize.py)


def _randomised(family: str, **kwargs):
    """A small generator of ``family`` with random weights and random BatchNorm statistics (so folding is not the
    identity), in eval mode."""
    import torch

    from compress.artifacts import build_generator

    torch.manual_seed(0)
    gen = build_generator({"family": family, "generator": kwargs})
    with torch.no_grad():
        for m in gen.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 3.0)
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.3, 0.3)
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                # channels of very different scale, the case the equalisation is for
                dim = 1 if isinstance(m, torch.nn.ConvTranspose2d) else 0
                shape = [1] * 4
                shape[dim] = -1
                m.weight.mul_(torch.logspace(-1.5, 0.5, m.weight.shape[dim]).reshape(shape))
    return gen.eval()


def _inputs(family: str, gen, n: int = 4, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    if family == "dcgan":
        return rng.standard_normal((n, gen.channels["input"], 1, 1)).astype(np.float32)
    return rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("family,kwargs", [("pix2pix", {"ngf": 8, "num_downs": 5}),
                                           ("cyclegan", {"ngf": 8, "n_blocks": 2}),
                                           ("dcgan", {"ngf": 8, "nz": 16})])
def test_equalisation_keeps_the_float_function(family, kwargs):
    """BatchNorm folding, InstanceNorm-input equalisation, cross-layer equalisation and concatenation range matching
    change the weights, not the function, on inputs the equalisation never saw: done in float64 the output is
    unchanged to 1e-12 (the rewrites are exact), and the float32 equalised generator (what is exported) is within
    1e-5 of that exact output.

    (Not |float32 original - float32 equalised| <= 1e-5: the InstanceNorms of this deliberately uneven generator
    amplify the float32 original's own rounding to about 9e-6 of the exact output on some CPUs, so that
    difference of two rounded results can reach 1.01e-5 while the equalised one is the closer of the two.)"""
    import copy

    import torch

    from quantize.equalize import ChannelEpsInstanceNorm, equalise_for_int8

    gen = _randomised(family, **kwargs)
    eq, report = equalise_for_int8(gen, _inputs(family, gen, 8))
    gen64 = copy.deepcopy(gen).double()
    eq64, _ = equalise_for_int8(gen64, _inputs(family, gen, 8).astype(np.float64))
    x = torch.from_numpy(_inputs(family, gen, 4) * 1.1)
    with torch.no_grad():
        exact = gen64(x.double())
        assert float((eq64(x.double()) - exact).abs().max()) <= 1e-12
        assert float((eq(x).double() - exact).abs().max()) <= 1e-5
    mods = dict(eq.named_modules())
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) for m in eq.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in gen.modules()) == bool(report["folded_batch_norms"])
    if family == "cyclegan":  # every convolution but the head feeds an InstanceNorm; the trunk has no CLE link
        assert len(report["instance_norm_inputs"]) == len(gen.prunable_convs()) - 1 and not report["cross_layer"]
        for rec in report["instance_norm_inputs"]:
            assert isinstance(mods[rec["norm"]], ChannelEpsInstanceNorm)
            assert rec["range_spread_before"] > 2 and rec["range_spread_after"] == pytest.approx(1.0, abs=1e-3)
            assert float(mods[rec["conv"]].bias.detach().abs().max()) == 0.0
    else:  # every latent written by one convolution is equalised with its readers (ReLU/LeakyReLU, concat)
        assert report["cross_layer"] and not report["instance_norm_inputs"]
        for rec in report["cross_layer"]:
            assert rec["weight_range_spread_after"] <= rec["weight_range_spread_before"] + 1e-6
    # every skip concatenation of the U-Net gets parts of one amplitude (TFLite gives them one int8 scale)
    assert bool(report["concatenations"]) == (family == "pix2pix")
    assert len(report["concatenations"]) == kwargs.get("num_downs", 1) - 1
    for rec in report["concatenations"]:
        assert rec["amplitude_spread_before"] > 1.2 and rec["amplitude_spread_after"] == pytest.approx(1.0, abs=1e-4)
        assert all(p["producer"] for p in rec["parts"])
    assert report["max_abs_change"] <= 2e-5   # two float32 results, each within 1e-5 of the exact output


def test_batch_norm_folds_into_transposed_convolution_output_channels():
    """ConvTranspose2d weights are (in, out, k, k): the fold scales dim 1 and adds a bias where there was none."""
    import torch

    from quantize.equalize import fold_batch_norms

    gen = _randomised("dcgan", ngf=8, nz=16)
    folded = _randomised("dcgan", ngf=8, nz=16)
    assert fold_batch_norms(folded) == ["norms.0", "norms.1", "norms.2"]
    assert folded.convs[0].bias is not None and folded.convs[0].bias.shape == (folded.convs[0].weight.shape[1],)
    z = torch.from_numpy(_inputs("dcgan", gen))
    with torch.no_grad():
        assert float((gen(z) - folded(z)).abs().max()) <= 1e-5


def test_channel_eps_instance_norm_matches_instance_norm():
    import torch

    from quantize.equalize import ChannelEpsInstanceNorm

    x = torch.randn(2, 5, 7, 6) * torch.logspace(-3, 1, 5).reshape(1, 5, 1, 1)
    ref = torch.nn.InstanceNorm2d(5, affine=False)(x)
    assert torch.allclose(ChannelEpsInstanceNorm(torch.full((5,), 1e-5))(x), ref, atol=1e-5)
    # the rewrite's identity (float64: float32 rounding of the shifted, scaled input is not the point here):
    # scaling channel c by s_c and adding a constant, with eps_c = eps * s_c**2, gives the same output
    s = torch.logspace(0, 3, 5, dtype=torch.float64)
    scaled = ChannelEpsInstanceNorm(1e-5 * s ** 2).double()(x.double() * s.reshape(1, 5, 1, 1) + 3.0)
    assert torch.allclose(scaled, ref.double(), atol=1e-5)


# ------------------------------------------------------------------ gates and composition


def _entry(**kw) -> dict:
    base = {"path": "generator_int8.tflite", "dtype": "int8", "label": "int8", "psnr_db": 35.0,
            "min_image_psnr_db": 31.0, "max_abs_diff": 0.1, "gate_db": 30.0, "min_image_gate_db": 27.0,
            "unseen": {"psnr_db": 34.0, "min_image_psnr_db": 30.0, "worst_image": "photo:retina",
                       "max_abs_diff": 0.2},
            "runtimes": {"litert": {"ok": True, "psnr_db": 35.0, "version": "2.1.0"},
                         "tflite-runtime": {"ok": True, "psnr_db": 35.0, "version": "2.14.0"}},
            "hybrid_ops": [], "size_ratio_to_fp32": 0.26}
    base.update(kw)
    return base


def test_each_gate_is_drawn_where_its_constant_says():
    """Just under a gate fails, just over passes: the pooled and worst-image PSNR gates, the size ratio (above the
    parameter count the size gate covers) and its exemption below it."""
    from export.parity import INT8_SIZE_RATIO, MIN_IMAGE_GATES_DB, SIZE_GATE_MIN_PARAMS, gate_failures

    def misses(params: int = 500_000, **kw) -> list[str]:
        return gate_failures([_entry(**kw)], params=params, onnx_max_abs_diff=1e-4)

    gate, worst = GATES_DB["int8"], MIN_IMAGE_GATES_DB["int8"]
    assert misses(psnr_db=gate + 0.01) == [] and misses(psnr_db=gate - 0.01)
    assert misses(min_image_psnr_db=worst + 0.01) == [] and misses(min_image_psnr_db=worst - 0.01)
    assert misses(size_ratio_to_fp32=INT8_SIZE_RATIO - 0.001) == []
    assert misses(size_ratio_to_fp32=INT8_SIZE_RATIO + 0.001)
    assert misses(params=SIZE_GATE_MIN_PARAMS - 1, size_ratio_to_fp32=INT8_SIZE_RATIO + 0.001) == []


def test_gate_failures_name_every_miss():
    from export.parity import gate_failures

    assert gate_failures([_entry()], params=500_000, onnx_max_abs_diff=1e-4) == []
    fails = gate_failures([_entry(unseen={"psnr_db": 31.0, "min_image_psnr_db": 20.5, "worst_image": "edges:moon",
                                          "max_abs_diff": 1.0},
                                  runtimes={"litert": {"ok": True, "psnr_db": 35.0, "version": "2.1.0"},
                                            "tflite-runtime": {"ok": False, "version": "2.14.0",
                                                               "error": "RuntimeError: failed to prepare"}},
                                  hybrid_ops=["TRANSPOSE_CONV x"], size_ratio_to_fp32=0.4,
                                  label="int8 (mixed: 1 of 12 convolutions float)",
                                  file_bytes={"total": 163016, "constant_data": {"int8": 110619, "int32": 956,
                                                                                 "float32": 1748},
                                              "quantization_parameters": 10968, "tensor_names": 8773,
                                              "graph": 29952, "tensors": 257, "operators": 196, "buffers": 261})],
                          params=500_000, onnx_max_abs_diff=1e-4)
    text = "\n".join(fails)
    assert "worst unseen photos image (edges:moon) 20.50 dB < gate 27 dB" in text
    assert "does not run in tflite-runtime 2.14.0" in text and "hybrid ops" in text
    assert ("generator_int8.tflite (int8 (mixed: 1 of 12 convolutions float)): 0.4000 x the fp32 file > 0.30 x "
            "(int8 data 110,619 B, other constants 2,704 B, quantization parameters 10,968 B, tensor names 8,773 B, "
            "graph 29,952 B (196 ops, 257 tensors))") in text
    # a mixed file is labelled in every line about it (issue 15: "labelled everywhere it is shown")
    assert fails and all(f.startswith("generator_int8.tflite (int8 (mixed: 1 of 12 convolutions float)): ")
                         for f in fails), fails
    # an entry written before file_bytes existed: the size message without the breakdown
    assert gate_failures([_entry(size_ratio_to_fp32=0.4)], params=500_000, onnx_max_abs_diff=1e-4) == [
        "generator_int8.tflite: 0.4000 x the fp32 file > 0.30 x"]
    # tflite-runtime is held to the same gates on both sets (its own figures, not LiteRT's)
    rt = {"ok": True, "version": "2.14.0", "psnr_db": 35.0, "min_image_psnr_db": 31.0, "max_abs_diff": 0.1,
          "unseen": {"psnr_db": 29.5, "min_image_psnr_db": 25.0, "worst_image": "photo:moon", "max_abs_diff": 1.0}}
    text = "\n".join(gate_failures([_entry(runtimes={"litert": {"ok": True, "psnr_db": 35.0, "version": "2.1.0"},
                                                      "tflite-runtime": rt})], params=500_000, onnx_max_abs_diff=1e-4))
    assert "PSNR 29.50 dB on the unseen photos inputs in tflite-runtime < gate 30 dB" in text
    assert "worst unseen photos image (photo:moon) 25.00 dB in tflite-runtime < gate 27 dB" in text
    assert "held-out" not in text
    # the size gate spares generators of at most 0.1 M parameters (their file is mostly graph)
    assert gate_failures([_entry(size_ratio_to_fp32=0.4)], params=90_000, onnx_max_abs_diff=1e-4) == []


def test_int8_label():
    from quantize.composition import int8_label

    convs = [{"kind": "int8"}, {"kind": "int8"}, {"kind": "float"}, {"kind": "hybrid"}]
    assert int8_label({"convolution_count": 2, "convolutions": convs[:2]}) == "int8"
    assert int8_label({"convolution_count": 4, "convolutions": convs}) == "int8 (mixed: 2 of 4 convolutions float)"
    sixteen = [{"kind": "int16x8"}, {"kind": "int16x8"}]
    assert int8_label({"convolution_count": 2, "convolutions": sixteen}) == "int8 (16x8: int16 activations)"
    assert int8_label({"convolution_count": 3, "convolutions": sixteen + convs[2:3]}) == \
        "int8 (16x8: int16 activations, mixed: 1 of 3 convolutions float)"


def _additive_measure(base: float, gains: dict, worst_gap: float = 2.0):
    """A model whose validation PSNR is ``base`` plus the gain of each candidate kept in float; the worst input
    ``worst_gap`` dB lower. Records every call."""
    calls = []

    def measure(chosen):
        calls.append(list(chosen))
        pooled = base + sum(gains[c] for c in chosen)
        return pooled, pooled - worst_gap
    return measure, calls


def test_forward_select_takes_the_measured_gain_not_the_rank():
    """The main job's CycleGAN at 256 px (docs/export.md): the convolution worth most ranked last by sensitivity.
    The walk in sensitivity order would move every candidate before it; the measured selection moves one."""
    from quantize.sensitivity import forward_select

    ranked = ["c0", "c1", "c2", "c3", "c4"]  # decreasing sensitivity
    measure, calls = _additive_measure(27.8, {"c0": 0.3, "c1": 0.1, "c2": 0.05, "c3": 0.05, "c4": 4.6})
    chosen, k, steps, n = forward_select(ranked, measure, target_db=32.0, worst_target_db=29.0)
    assert k == 1 and chosen[:k] == ["c4"]
    assert steps[0] == pytest.approx((27.8, 25.8)) and steps[1] == pytest.approx((32.4, 30.4))
    assert n == len(calls) == 1 + len(ranked)  # all-int8, then one round over the five


def test_forward_select_needs_the_worst_input_too_and_stops_on_reaching_both():
    from quantize.sensitivity import forward_select

    ranked = ["a", "b", "c"]
    # pooled reaches 32 with "b" alone, but its worst input is 4 dB lower: "a" is needed as well
    measure, _ = _additive_measure(30.0, {"a": 1.5, "b": 2.5, "c": 0.1}, worst_gap=4.0)
    chosen, k, steps, n = forward_select(ranked, measure, target_db=32.0, worst_target_db=29.0)
    assert chosen[:k] == ["b", "a"] and steps[k][1] >= 29.0
    assert n == 1 + 3 + 2
    # already on target: one measurement, nothing in float
    measure, calls = _additive_measure(40.0, {"a": 1.0})
    assert forward_select(["a"], measure, target_db=32.0, worst_target_db=29.0)[:2] == ([], 0)
    assert len(calls) == 1


def test_forward_select_bounded_cost_and_best_step_when_target_never_reached():
    from quantize.sensitivity import forward_select

    ranked = [f"c{i}" for i in range(6)]
    gains = {"c0": 0.5, "c1": -0.2, "c2": 1.0, "c3": 0.2, "c4": -0.4, "c5": 0.1}
    measure, calls = _additive_measure(20.0, gains)
    chosen, k, steps, n = forward_select(ranked, measure, target_db=32.0, worst_target_db=29.0, measured_rounds=2)
    # two measured rounds (6 + 5 trials), then the rest in the second round's order (one each)
    assert chosen[:2] == ["c2", "c0"] and chosen[2:] == ["c3", "c5", "c1", "c4"]
    assert n == len(calls) == 1 + 6 + 5 + 4
    # never on target: the step with the highest PSNR (c2, c0, c3, c5: 21.8 dB), not the last
    assert k == 4 and steps[k][0] == pytest.approx(21.8)
    with pytest.raises(ValueError, match="measured_rounds 0"):
        from quantize.sensitivity import select_float_nodes
        select_float_nodes(b"", np.zeros((1, 3, 4, 4), np.float32), lambda nodes: b"", measured_rounds=0)


def test_forward_select_drops_a_candidate_whose_file_cannot_be_kept():
    """A trial file over the export's size gate (``measure`` -> None) drops its candidate for good: it is measured
    once, never chosen and never walked, even though it would gain most."""
    from quantize.sensitivity import forward_select

    ranked = ["big", "a", "b"]
    measure, calls = _additive_measure(28.0, {"big": 9.0, "a": 1.5, "b": 1.0})

    def sized(chosen):
        return None if "big" in chosen else measure(chosen)

    chosen, k, steps, n = forward_select(ranked, sized, target_db=32.0, worst_target_db=29.0, measured_rounds=1)
    assert "big" not in chosen and chosen[:k] == ["a", "b"][:k] and chosen == ["a", "b"]
    assert n == 1 + 3 + 1  # all-int8, one measured round over three (big rejected), then b walked
    assert steps[1] == pytest.approx((29.5, 27.5)) and steps[2] == pytest.approx((30.5, 28.5))


def _channel_histogram(values: np.ndarray, lo: float, hi: float, bins: int = 2048) -> np.ndarray:
    idx = np.clip(((values - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(idx, minlength=bins).astype(np.float64)


def test_norm_range_error_clips_rare_peaks_and_keeps_a_full_range():
    """MSE under the norm (quantize/norm_ranges.py): a channel whose range comes from rare peaks (spread 0.31 on
    a +-22 range, the main job's last transposed convolution) is best served by a narrower range; a channel that
    fills its range uniformly is not (clipping costs more than the finer step saves)."""
    from quantize.norm_ranges import FACTORS, range_error

    rng = np.random.default_rng(0)
    lo, hi = -22.0, 22.0
    peaky = np.concatenate([rng.normal(0, 0.3, 200_000), [21.9]])  # one input's peak sets the range
    flat = rng.uniform(lo, hi, 200_000)
    for values, expect_clip in ((peaky, True), (flat, False)):
        hist, var = _channel_histogram(values, lo, hi)[None], np.array([values.var()])
        errors = {f: range_error(hist, var, lo, hi, f) for f in FACTORS}
        best = min(errors, key=errors.get)
        if expect_clip:
            assert best <= 0.6 and errors[best] < 0.6 * errors[1.0]
        else:
            assert best == 1.0
    # the rounding-noise term alone: a full range on a unit-variance channel is step^2 / 12
    hist = _channel_histogram(np.zeros(10), lo, hi)[None]
    assert range_error(hist, np.array([1.0]), lo, hi, 1.0) == pytest.approx((44 / 255) ** 2 / 12)


def test_gates_are_this_codes_not_the_ones_stored_with_an_entry():
    """A file exported under lower gates (kept by skip-if-unchanged or by an install of another dtype) is judged by
    this code's gates, as a new export would be."""
    from export.parity import GATES_DB, MIN_IMAGE_GATES_DB, gate_failures

    old = _entry(psnr_db=25.0, gate_db=20.0, min_image_psnr_db=22.0, min_image_gate_db=20.0,
                 runtimes={"litert": {"ok": True, "psnr_db": 25.0, "version": "2.1.0"}}, unseen=None)
    fails = gate_failures([old], params=500_000, onnx_max_abs_diff=1e-4)
    assert fails == [f"generator_int8.tflite: PSNR 25.00 dB on the held-out inputs < gate {GATES_DB['int8']:.0f} dB "
                     "(max abs diff 0.1)",
                     f"generator_int8.tflite: worst held-out image 22.00 dB < gate {MIN_IMAGE_GATES_DB['int8']:.0f} dB"]


def _tiny_saved_model(folder) -> str:
    """A SavedModel like onnx2tf's (signature ``serving_default``, NHWC input ``input``): conv, ReLU, conv, tanh."""
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.w1 = tf.Variable(rng.normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32))
            self.w2 = tf.Variable(rng.normal(0, 0.3, (3, 3, 4, 3)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32, name="input")])
        def __call__(self, input):
            h = tf.nn.relu(tf.nn.conv2d(input, self.w1, 1, "SAME"))
            return {"output": tf.tanh(tf.nn.conv2d(h, self.w2, 1, "SAME"))}

    m = Tiny()
    tf.saved_model.save(m, str(folder), signatures={"serving_default": m.__call__})
    return str(folder)


def test_robust_int8_files_have_the_io_type_asked_for(tmp_path):
    """``--int8-io uint8|float32`` in robust mode: the file's input and output tensors are of that type (mlir_quantize
    alone left them int8 while the manifest said uint8), computing exactly what the int8-interface file computes,
    and both runtimes load them."""
    from ai_edge_litert.interpreter import Interpreter
    from tflite_runtime.interpreter import Interpreter as RuntimeInterpreter

    from quantize.int8 import quantize_saved_model

    saved = _tiny_saved_model(tmp_path / "sm")
    cal = np.random.default_rng(0).uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)
    x = cal[:1].transpose(0, 2, 3, 1)
    outputs = {}
    for io, np_type in (("int8", np.int8), ("uint8", np.uint8), ("float32", np.float32)):
        content = quantize_saved_model(saved, cal, io_dtype=io, target_db=0, bias_correction=False,
                                       clip_norm_ranges=False).content
        for cls in (Interpreter, RuntimeInterpreter):
            it = cls(model_content=content)
            it.allocate_tensors()
            i, o = it.get_input_details()[0], it.get_output_details()[0]
            assert i["dtype"] is np_type and o["dtype"] is np_type, (io, cls)
            scale, zero = i["quantization"]
            info = np.iinfo(np_type) if io != "float32" else None
            it.set_tensor(i["index"], x if info is None else
                          np.clip(np.round(x / scale + zero), info.min, info.max).astype(np_type))
            it.invoke()
            y = it.get_tensor(o["index"]).astype(np.float32)
            if info is not None:
                y = (y - o["quantization"][1]) * o["quantization"][0]
            outputs[io, cls] = y
        assert it.get_signature_list() == {"serving_default": {"inputs": ["input"], "outputs": ["output"]}}
    for cls in (Interpreter, RuntimeInterpreter):   # in each runtime the three interfaces compute the same
        assert all(np.array_equal(outputs[io, cls], outputs["int8", cls]) for io in ("uint8", "float32"))


def test_choice_files_are_calibrated_without_the_validation_inputs(tmp_path):
    """``choice_calibration_nchw``: the file a choice is measured on (``choice_content``) takes its activation
    ranges from the representative inputs without the validation inputs, the final file from all of them. Here the
    validation inputs are the only loud ones, so the hidden tensor's range of the choice file is the narrower; the
    two files share everything else (ops, float nodes, I/O)."""
    from ai_edge_litert.interpreter import Interpreter

    from quantize.composition import describe

    saved = _tiny_saved_model(tmp_path / "sm")
    rng = np.random.default_rng(0)
    loud = rng.uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)
    quiet = rng.uniform(-0.2, 0.2, (8, 3, 8, 8)).astype(np.float32)
    result = quantize_saved_model(saved, np.concatenate([loud, quiet]), validation_nchw=loud, target_db=30,
                                  choice_calibration_nchw=quiet, choice_correction_nchw=quiet)
    assert result.choice_content is not None and result.selection["choice_calibration_count"] == len(quiet)

    def hidden_range(content: bytes) -> float:   # the int8 ReLU output between the two convolutions
        it = Interpreter(model_content=content)
        io = {it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]}
        scales = [t["quantization"][0] for t in it.get_tensor_details()
                  if t["dtype"] == np.int8 and len(t["shape"]) == 4 and t["index"] not in io]
        return max(scales) * 255

    assert hidden_range(result.choice_content) < 0.5 * hidden_range(result.content)
    assert describe(result.choice_content)["float_ops"] == describe(result.content)["float_ops"]
    without = quantize_saved_model(saved, np.concatenate([loud, quiet]), validation_nchw=loud, target_db=30)
    assert without.choice_content is None
    assert without.selection["choice_calibration_count"] == len(loud) + len(quiet)


def test_the_input_range_is_fixed_not_calibrated(tmp_path):
    """Issue 15, item 3: representative images that reach only [-0.5, 0.5] still give an int8 input of [-1, 1]
    (scale 2/255: a darker pixel of a later input is not clipped); with ``input_range=None`` the same calibration
    gives the calibrated, narrower range, so the check can tell the two apart."""
    from ai_edge_litert.interpreter import Interpreter

    saved = _tiny_saved_model(tmp_path / "sm")
    cal = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 3, 8, 8)).astype(np.float32)
    ranges = {}
    for name, fixed in (("fixed", (-1.0, 1.0)), ("calibrated", None)):
        content = quantize_saved_model(saved, cal, input_range=fixed, target_db=0, bias_correction=False,
                                       clip_norm_ranges=False).content
        it = Interpreter(model_content=content)
        scale, zero = it.get_input_details()[0]["quantization"]
        ranges[name] = ((-128 - zero) * scale, (127 - zero) * scale)
    lo, hi = ranges["fixed"]
    assert lo == pytest.approx(-1.0, abs=2 / 255) and hi == pytest.approx(1.0, abs=2 / 255), ranges
    lo, hi = ranges["calibrated"]
    assert -0.55 <= lo <= -0.45 and 0.45 <= hi <= 0.55, ranges


def test_leaky_relu_stays_float_because_tflite_runtime_rounds_its_int8_kernel_down(tmp_path):
    """Why LEAKY_RELU is in ``FLOAT_OPS`` (docs/export.md): in int8, tflite-runtime 2.14 puts about a third of the
    negative outputs one step below LiteRT's (never above), while the positive branch agrees. If a later
    tflite-runtime stops doing that, this test fails: LEAKY_RELU could then be int8 again."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from tflite_runtime.interpreter import Interpreter as RuntimeInterpreter

    from quantize.composition import describe

    assert "LEAKY_RELU" in FLOAT_OPS

    class LeakyReLU(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="input")])
        def __call__(self, input):
            return {"output": tf.nn.leaky_relu(input, 0.2)}  # pix2pix's slope

    m = LeakyReLU()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures={"serving_default": m.__call__})
    cal = np.random.default_rng(0).uniform(-1, 1, (8, 3, 16, 16)).astype(np.float32)
    content = quantize_saved_model(tmp_path / "sm", cal, float_ops=[o for o in FLOAT_OPS if o != "LEAKY_RELU"],
                                   target_db=0, bias_correction=False, clip_norm_ranges=False,
                                   output_range=None).content
    assert describe(content)["float_ops"] == {}  # the LEAKY_RELU is int8
    x = np.random.default_rng(1).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    outputs = []
    for cls in (Interpreter, RuntimeInterpreter):
        it = cls(model_content=content)
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        scale, zero = i["quantization"]
        it.set_tensor(i["index"], np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8))
        it.invoke()
        outputs.append(it.get_tensor(o["index"]).astype(np.int32))
        zero_out = o["quantization"][1]
    litert, runtime = outputs
    negative = litert < zero_out
    step = (runtime - litert)[negative]
    assert set(np.unique(step)) <= {-1, 0} and (step == -1).mean() > 0.2, np.unique(step, return_counts=True)
    assert (runtime == litert)[~negative].mean() > 0.98


def test_float_candidates_are_every_convolution(tmp_path):
    """Without an InstanceNorm (the U-Net, DCGAN) every convolution is still a candidate for the float selection,
    in graph order, with no sensitivity (None in the manifest, not NaN: the manifest is JSON)."""
    import json

    import tensorflow as tf

    from quantize.sensitivity import float_candidates

    conv = tf.lite.TFLiteConverter.from_saved_model(_tiny_saved_model(tmp_path / "sm"))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    cal = np.random.default_rng(0).uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)
    conv.representative_dataset = representative_dataset(cal)
    conv._experimental_calibrate_only = True
    found = float_candidates(conv.convert(), cal.transpose(0, 2, 3, 1))
    assert [c.op for c in found] == ["CONV_2D", "CONV_2D"] and not any(c.feeds_instance_norm for c in found)
    assert [c.shape[-1] for c in found] == [4, 3] and all(len(c.nodes) == 1 for c in found)
    as_json = json.loads(json.dumps([c.to_json() for c in found], allow_nan=False))
    assert as_json[0]["sensitivity"] is None and as_json[0]["feeds_instance_norm"] is False


def test_int8_target_hint_asks_for_the_drop_the_gate_inputs_showed():
    """export.parity.int8_target_hint: a file that met the selection's targets on validation and missed a gate gets
    a higher --int8-target-db, enough for the measured drop from validation to the gate inputs (numbers of the
    session-17 95%-pruned pix2pix: validation 30.50 / 29.57 dB, worst unseen edge map 22.85 dB -> 27 + 3 + 6.72 =
    36.72, so 37); none for a file that passed, for a selection that fell short of its own target, or when off."""
    from export.parity import int8_target_hint

    def entry(unseen=(28.58, 22.85), val=(30.50, 29.57), target=30.0, dtype="int8"):
        runtime = {"ok": True, "psnr_db": 31.7, "min_image_psnr_db": 29.98,
                   "unseen": {"psnr_db": unseen[0], "min_image_psnr_db": unseen[1]}}
        return {"dtype": dtype, "path": "generator_int8.tflite", "label": "int8", "psnr_db": 31.7,
                "min_image_psnr_db": 29.98, "unseen": {"psnr_db": unseen[0] + 0.01, "min_image_psnr_db": unseen[1]},
                "runtimes": {"litert": runtime, "tflite-runtime": {**runtime, "psnr_db": 31.75}},
                "float_selection": {"target_db": target, "float_convolutions": 0, "trajectory": [
                    {"float_convolutions": 0, "validation_psnr_db": val[0], "validation_worst_db": val[1]}]}}

    hint = int8_target_hint(entry())
    assert hint is not None and "--int8-target-db 37 " in hint and "28.58 / 22.85 dB" in hint
    # a pooled miss alone: 30 + (34.0 - 29.0) = 35
    assert "--int8-target-db 35 " in int8_target_hint(entry(unseen=(29.0, 28.0), val=(34.0, 31.0)))
    assert int8_target_hint(entry(unseen=(30.2, 27.5))) is None          # every gate met
    assert int8_target_hint(entry(val=(29.0, 28.0))) is None             # short of its own target: stopped early
    assert int8_target_hint(entry(target=0.0)) is None                   # selection off
    assert "--int8-target-db 52 " in int8_target_hint(entry(val=(45.0, 44.0), target=45.0))  # 30 + 45 - 28.58
    assert int8_target_hint(entry(dtype="fp16")) is None
    # int16 activations are the other way, unless the file is 16x8 already
    assert "--int8-activations int16" in hint
    assert "--int8-activations" not in int8_target_hint({**entry(), "label": "int8 (16x8: int16 activations)"})
    # short of its own target: nothing under auto (it measured 16x8 already), int16 when activations were int8 only
    assert int8_target_hint({**entry(val=(29.0, 28.0)), "activations_choice": {"mode": "auto"}}) is None
    only = int8_target_hint({**entry(val=(29.0, 28.0)), "activations_choice": {"mode": "int8"}})
    assert "--int8-activations int16" in only and "--int8-target-db" not in only


def _edge_like(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3, 8, 8) inputs in [-1, 1] that reach both ends, as edge maps and photos do."""
    x = np.random.default_rng(seed).uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32)
    x[:, :, 0, 0], x[:, :, 0, 1] = -1.0, 1.0
    return x


def test_16x8_file_is_int16_activations_int8_weights_in_both_runtimes(tmp_path):
    """quantize.int16x8: every convolution reads int16 activations against int8 weights (composition kind
    ``int16x8``, label ``int8 (16x8: int16 activations)``, nothing in float), the I/O is int16 over exactly [-1, 1],
    both runtimes run it, its error against the float model is far below the int8 file's from the same
    calibration on inputs quieter than the loudest, and the GPU check says the delegate cannot take it."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from export.gpu_check import gpu_delegate_check
    from quantize.composition import describe, int8_label
    from quantize.int16x8 import quantize_16x8
    from quantize.litert import run_tflite

    saved = _tiny_saved_model(tmp_path / "sm")
    # one loud input sets the ranges, the rest are quiet: the case int8 activations lose (docs/export.md, "Session 20")
    cal, test = _edge_like(8), 0.1 * _edge_like(4, seed=1)
    cal[1:] *= 0.1
    content = quantize_16x8(saved, cal, input_range=(-1.0, 1.0))
    comp = describe(content)
    assert {c["kind"] for c in comp["convolutions"]} == {"int16x8"} and comp["float_op_names"] == []
    assert comp["int8_share"] == {"weight_bytes": 1.0, "macs": 1.0, "macs_int16_activations": 1.0}
    assert int8_label(comp) == "int8 (16x8: int16 activations)"
    assert comp["input"]["dtype"] == comp["output"]["dtype"] == "int16"
    assert comp["input"]["value_range"][1] == pytest.approx(1.0, rel=1e-4)
    model = tf.saved_model.load(saved).signatures["serving_default"]
    ref = np.stack([model(input=tf.constant(x.transpose(1, 2, 0)[None]))["output"].numpy()[0].transpose(2, 0, 1)
                    for x in test])
    int8 = quantize_saved_model(saved, cal, target_db=0, bias_correction=False, clip_norm_ranges=False).content
    err16 = {rt: np.abs(run_tflite(content, test, 1, rt) - ref).max() for rt in ("litert", "tflite-runtime")}
    err8 = np.abs(run_tflite(int8, test, 1) - ref).max()
    assert max(err16.values()) < err8 / 4, (err16, err8)
    path = tmp_path / "g.tflite"
    path.write_bytes(content)
    check = gpu_delegate_check(path)
    assert not check["gpu_ready"] and check["int16_activations"] > 0
    assert any("int16" in p for p in check["version_problems"])
    Interpreter(model_content=content).allocate_tensors()


def test_16x8_refuses_an_input_range_its_calibration_did_not_reach(tmp_path):
    """The 16x8 quantizer takes the symmetric input range from calibration; a set that never reaches the fixed
    range's ends would clip later inputs, so the file is refused, naming the range, and the I/O types are checked."""
    from quantize.int16x8 import input_scale_ok, quantize_16x8

    saved = _tiny_saved_model(tmp_path / "sm")
    quiet = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 3, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"fixed input range \[-1.0, 1.0\]"):
        quantize_16x8(saved, quiet, input_range=(-1.0, 1.0))
    with pytest.raises(ValueError, match="I/O dtype"):
        quantize_16x8(saved, quiet, input_range=(-1.0, 1.0), io_dtype="uint8")
    assert input_scale_ok(1 / 32767, (-1.0, 1.0)) and input_scale_ok(4 / 32767, (-4.0, 4.0))
    assert not input_scale_ok(0.5 / 32767, (-1.0, 1.0))


def test_activation_choice_rules():
    """export.int8_file.choose_activations: the 16x8 file only when the int8 file misses the gates on validation and
    the 16x8 one meets them within the size gate; selection_missed reads the float selection's report."""
    from export.int8_file import choose_activations, selection_missed

    def fig(pooled, worst, ratio=0.28):
        return {"validation_psnr_db": pooled, "validation_worst_db": worst, "float_convolutions": 0,
                "size_ratio_to_fp32": ratio}

    assert choose_activations(fig(31, 28), fig(45, 40), 200_000)[0] == "int8"          # int8 meets them
    assert choose_activations(fig(28, 22), None, 200_000)[0] == "int8"                 # no 16x8 file
    assert choose_activations(fig(28, 22), fig(29, 40), 200_000)[0] == "int8"          # 16x8 misses too
    chosen, why = choose_activations(fig(28, 22), fig(45, 40, ratio=0.31), 200_000)
    assert chosen == "int8" and "size gate" in why
    assert choose_activations(fig(28, 22), fig(45, 40, ratio=0.31), 50_000)[0] == "int16x8"  # below the size gate
    chosen, why = choose_activations(fig(28, 22), fig(45, 40), 200_000)
    assert chosen == "int16x8" and "45.00 / 40.00 dB" in why and "28.00 / 22.00 dB" in why

    def report(steps, k, target=30.0):
        return {"target_db": target, "worst_target_db": target - 3, "float_convolutions": k, "trajectory": [
            {"float_convolutions": i, "validation_psnr_db": p, "validation_worst_db": w} for i, (p, w) in
            enumerate(steps)]}

    assert not selection_missed(None) and not selection_missed(report([], 0))
    assert not selection_missed(report([(31, 28)], 0))
    assert selection_missed(report([(26, 20), (28, 22)], 1))
    assert not selection_missed(report([(26, 20), (31, 27.5)], 1))
    assert not selection_missed(report([("inf", "inf")], 0))
