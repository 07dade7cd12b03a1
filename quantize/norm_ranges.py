"""Clipping ranges for the int8 tensors that feed an InstanceNorm: MSE calibration under the norm.

Why. The TFLite calibrator records each activation tensor's min/max over the representative dataset, and the int8
step is ``(max - min) / 255``. For a tensor that an InstanceNorm normalises, the error that matters is the one left
*after* the norm, where channel ``c`` is divided by its own spatial spread ``sigma_c``: rounding noise of variance
``step**2 / 12`` becomes ``step**2 / (12 sigma_c**2)``. Equalisation (:mod:`quantize.equalize`) gives every channel
the same largest ``|value|``, but a channel with rare large peaks and a small spread still has range / spread of
order 100 (the main job's CycleGAN at 256 px: its last transposed convolution spans +-22 with a channel of spread
0.31), and its noise after the norm costs dB that would otherwise keep that convolution in float (docs/export.md).
A narrower range trades that noise for clipping the rare peaks.

What. For every convolution whose output feeds an InstanceNorm (:func:`quantize.sensitivity.norm_inputs`), the
calibration inputs are run through the float (calibrated) model and the value histogram of each output channel is
recorded over the calibrated ``[min, max]``. For each factor ``f`` of :data:`FACTORS` the range ``[f min, f max]``
is scored by the expected squared error after the norm, summed over channels (each channel has unit spread after
the norm, so they weigh alike):

    E(f) = sum_c  sum_v  n_c(v) e_f(v) / (N_c sigma_c**2),
    e_f(v) = (step_f**2 / 12 inside [f min, f max], else the squared distance to the range),

``sigma_c**2`` the per-input spatial variance of channel ``c`` averaged over the inputs. The factor with the
smallest ``E`` is written as the tensor's min/max (and that of the crops/pads between it and the norm, which share
its quantization), the way :func:`quantize.int8.fix_io_ranges` writes the I/O ranges. This is the MSE criterion of
range setting (Nagel et al. 2021, "A White Paper on Neural Network Quantization", section 3.4.2, "MSE-based range
setting"), measured where the norm sees the error. The quantizer's caller measures the result against the float
model and keeps the unclipped ranges when they do better (:func:`quantize.int8.quantize_saved_model`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from quantize.litert import inspecting_interpreter
from quantize.sensitivity import FloatCandidate, norm_inputs

#: Range factors tried (1 = the calibrated min/max).
FACTORS = tuple(np.round(np.arange(1.0, 0.0999, -0.025), 3))
#: Histogram bins per channel over the calibrated range.
BINS = 2048


def _histograms(calibrated: bytes, candidates: Sequence[FloatCandidate], inputs_nhwc: np.ndarray,
                ranges: dict[int, tuple[float, float]]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per-channel value histograms (C, BINS) and mean per-input spatial variances (C,) of each candidate's
    convolution output, over ``ranges[tensor]``."""
    it = inspecting_interpreter(calibrated)
    inp = it.get_input_details()[0]
    out: dict[int, list] = {}
    for x in inputs_nhwc:
        it.set_tensor(inp["index"], x[None].astype(np.float32))
        it.invoke()
        for c in candidates:
            t = c._conv_tensor
            v = it.get_tensor(t)[0]
            v = v.reshape(-1, v.shape[-1]).astype(np.float64)  # (H*W, C)
            lo, hi = ranges[t]
            channels = v.shape[1]
            idx = np.clip(((v - lo) / (hi - lo) * BINS).astype(np.int64), 0, BINS - 1)
            counts = np.bincount((idx + np.arange(channels) * BINS).ravel(),
                                 minlength=channels * BINS).reshape(channels, BINS)
            if t not in out:
                out[t] = [np.zeros((channels, BINS)), np.zeros(channels)]
            out[t][0] += counts
            out[t][1] += v.var(axis=0)
    return {t: (h, var / len(inputs_nhwc)) for t, (h, var) in out.items()}


def range_error(hist: np.ndarray, var: np.ndarray, lo: float, hi: float, factor: float) -> float:
    """Expected squared error after the InstanceNorm (module docstring) of the range ``[factor lo, factor hi]``.

    Args:
        hist: (C, B) value counts per channel over ``[lo, hi]`` in B equal bins.
        var: (C,) mean per-input spatial variance of each channel (units of the activation, squared).
        lo, hi: the calibrated range (lo <= 0 <= hi, lo < hi).
        factor: in (0, 1].
    Returns:
        sum over channels of the mean squared error divided by the channel's variance (dimensionless).
    """
    bins = hist.shape[1]
    centres = lo + (np.arange(bins) + 0.5) * (hi - lo) / bins
    flo, fhi = factor * lo, factor * hi
    step = (fhi - flo) / 255.0
    err = np.where(centres > fhi, (centres - fhi) ** 2, np.where(centres < flo, (flo - centres) ** 2, step ** 2 / 12))
    live = var > 0
    per_channel = (hist[live] @ err) / (hist[live].sum(axis=1) * var[live])
    return float(per_channel.sum())


def clip_norm_input_ranges(calibrated: bytes, inputs_nchw: np.ndarray) -> tuple[bytes, list[dict]]:
    """Set the min/max of every InstanceNorm-feeding convolution output to the MSE-best range (module docstring).

    Args:
        calibrated: the calibrate-only .tflite (bytes), its I/O ranges already fixed.
        inputs_nchw: (N, C, H, W) float32 calibration inputs in the generator's scaling.
    Returns:
        (the calibrated model with the new ranges (bytes), one report per candidate: {"conv": tensor name,
        "calibrated_range": [min, max], "factor": chosen factor, "range": [min, max] written, "error_ratio":
        E(chosen) / E(1)}). A model without such tensors comes back unchanged with an empty report.
    """
    from tensorflow.lite.python.util import (_convert_model_from_bytearray_to_object,
                                             _convert_model_from_object_to_bytearray)

    candidates = norm_inputs(calibrated)
    if not candidates:
        return calibrated, []
    model = _convert_model_from_bytearray_to_object(bytearray(calibrated))
    tensors = model.subgraphs[0].tensors
    by_name = {t.name.decode(): t for t in tensors}
    ranges = {}
    for c in candidates:
        q = tensors[c._conv_tensor].quantization
        lo, hi = float(min(q.min[0], 0.0)), float(max(q.max[0], 0.0))  # the quantizer widens to include 0
        ranges[c._conv_tensor] = (lo, hi)
    nhwc = np.ascontiguousarray(inputs_nchw.transpose(0, 2, 3, 1)).astype(np.float32)
    stats = _histograms(calibrated, candidates, nhwc, ranges)
    report = []
    for c in candidates:
        lo, hi = ranges[c._conv_tensor]
        if hi - lo <= 0:
            continue
        hist, var = stats[c._conv_tensor]
        errors = {f: range_error(hist, var, lo, hi, f) for f in FACTORS}
        best = min(errors, key=lambda f: (errors[f], -f))
        for name in c.nodes:  # the convolution's output and the crops/pads that share its quantization
            q = by_name[name].quantization
            q.min, q.max = [best * lo], [best * hi]
        report.append({"conv": c.nodes[0], "calibrated_range": [lo, hi], "factor": float(best),
                       "range": [best * lo, best * hi],
                       "error_ratio": errors[best] / errors[1.0] if errors[1.0] > 0 else 1.0})
    return bytes(_convert_model_from_object_to_bytearray(model)), report
