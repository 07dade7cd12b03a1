"""Tiny .tflite test models for the bench tests (made with TensorFlow directly, cached in pytest's cache).

``make_models(folder)`` writes ``{label}_{dtype}.tflite`` for labels ``unpruned`` (16 channels) and ``pruned``
(4 channels) of a small conv-deconv generator on 32×32×3 inputs, dtypes fp32, fp16 and int8 (full-integer
weights and activations with float I/O, calibrated on random data), plus ``manifest.json`` per label.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

LABELS = {"unpruned": 16, "pruned": 4}
DTYPES = ("fp32", "fp16", "int8")
VERSION = "1"


def _build(width: int):
    import tensorflow as tf

    inp = tf.keras.Input((32, 32, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inp)
    x = tf.keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu")(x)
    out = tf.keras.layers.Conv2D(3, 3, padding="same", activation="tanh")(x)
    return tf.keras.Model(inp, out)


def _convert(model, dtype: str) -> bytes:
    import numpy as np
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if dtype == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif dtype == "int8":
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(4):
                yield [rng.uniform(-1, 1, (1, 32, 32, 3)).astype("float32")]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected" (float I/O)
        return conv.convert()


def macs_of(width: int) -> int:
    """MACs of the test generator at 32×32 (conv: k·k·cin·cout·H·W)."""
    return (9 * 3 * width * 32 * 32 + 9 * width * width * 16 * 16 + 9 * width * width * 32 * 32
            + 9 * width * 3 * 32 * 32)


def make_models(folder: str | os.PathLike) -> dict[str, dict[str, Path]]:
    """Write the models (if missing) into ``folder``; returns ``{label: {dtype: path}}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, Path]] = {}
    stamp = folder / f".complete-v{VERSION}"
    need = not stamp.exists()
    if need:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        tf.keras.utils.set_random_seed(0)
    for label, width in LABELS.items():
        out[label] = {}
        model = _build(width) if need else None
        files = []
        for dtype in DTYPES:
            p = folder / label / f"{label}_{dtype}.tflite"
            if need:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(_convert(model, dtype))
            out[label][dtype] = p
            files.append({"path": p.name, "dtype": dtype, "size_bytes": p.stat().st_size})
        (folder / label / "manifest.json").write_text(json.dumps(
            {"model": label, "macs": macs_of(width), "files": files}, indent=1))
    if need:
        stamp.write_text("ok\n")
    return out


if __name__ == "__main__":  # python tests/bench_models.py DIR  -> writes the tiny models there
    import sys

    for label, files in make_models(sys.argv[1] if len(sys.argv) > 1 else "build/bench_models").items():
        for dtype, path in files.items():
            print(label, dtype, path)
