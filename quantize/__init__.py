"""int8 quantization of an onnx2tf SavedModel with a representative dataset (:mod:`quantize.int8`).

The entry point export uses is :func:`quantize_saved_model`; the option values it accepts are :data:`MODES`
(:data:`Int8Mode`), :data:`IO_DTYPES` (:data:`Int8Io`), :data:`FLOAT_OPS` and :data:`DEFAULT_TARGET_DB`.
Before ONNX export the generator is made int8-friendly without changing its function by :mod:`quantize.equalize`
(BatchNorm folding, InstanceNorm-input and cross-layer equalisation); after quantization
:mod:`quantize.bias_correction` removes the mean error per channel, and :mod:`quantize.composition` says what a
file really is (int8 share of weights and MACs, ops left in float, its label). The last-resort float selection is
:mod:`quantize.sensitivity`; where int8 activations cannot reach the gates, :mod:`quantize.int16x8` makes the 16x8
file (int8 weights, int16 activations). LiteRT/tflite-runtime helpers live in :mod:`quantize.litert`, PSNR in
:mod:`quantize.metrics`. This package imports nothing from ``export`` or ``bench``.
"""
from quantize.int8 import FLOAT_OPS, IO_DTYPES, MODES, Int8Io, Int8Mode, QuantizedModel, quantize_saved_model
from quantize.sensitivity import DEFAULT_TARGET_DB

__all__ = ["DEFAULT_TARGET_DB", "FLOAT_OPS", "IO_DTYPES", "MODES", "Int8Io", "Int8Mode", "QuantizedModel",
           "quantize_saved_model"]
