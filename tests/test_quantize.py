"""Unit checks of quantize/ and the parity figures (no conversion: fast)."""
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
    assert GATES_DB == {"fp32": 60.0, "fp16": 45.0, "int8": 30.0}
    assert {"MEAN", "SQUARED_DIFFERENCE", "RSQRT"} <= set(FLOAT_OPS)


def test_bad_mode_and_empty_calibration(tmp_path):
    x = np.zeros((1, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="mode"):
        quantize_saved_model(tmp_path, x, mode="int4")
    with pytest.raises(ValueError, match="I/O"):
        quantize_saved_model(tmp_path, x, io_dtype="int16")
    with pytest.raises(ValueError, match="empty"):
        quantize_saved_model(tmp_path, x[:0])
