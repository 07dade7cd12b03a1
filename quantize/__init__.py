"""int8 quantization of an onnx2tf SavedModel with a representative dataset (:mod:`quantize.int8`).

The entry point export uses is :func:`quantize_saved_model`; the option values it accepts are :data:`MODES`
(:data:`Int8Mode`), :data:`IO_DTYPES` (:data:`Int8Io`), :data:`FLOAT_OPS` and :data:`DEFAULT_TARGET_DB`.
LiteRT helpers (interpreter, runs on NCHW inputs, operator codes) live in :mod:`quantize.litert`, PSNR in
:mod:`quantize.metrics`. This package imports nothing from ``export`` or ``bench``.
"""
from quantize.int8 import FLOAT_OPS, IO_DTYPES, MODES, Int8Io, Int8Mode, QuantizedModel, quantize_saved_model
from quantize.sensitivity import DEFAULT_TARGET_DB

__all__ = ["DEFAULT_TARGET_DB", "FLOAT_OPS", "IO_DTYPES", "MODES", "Int8Io", "Int8Mode", "QuantizedModel",
           "quantize_saved_model"]
