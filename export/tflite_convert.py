"""ONNX -> TF SavedModel + TFLite fp32/fp16 with onnx2tf, offline, in a private working folder.

onnx2tf runs as a subprocess (``python -m onnx2tf``) so that its TensorFlow/Keras global state and working
directory stay out of ours. The traps of DEVELOPERS.md / the project brief are handled here:

* onnx2tf loads ``calibration_image_sample_data_20x128x128x3_float32.npy`` from its **working directory** and
  downloads it from GitHub when absent (``onnx2tf.utils.common_functions.download_test_image_data``; it is used
  for its accuracy-correction dummy inference whenever the model has 4-D 3-channel inputs). We write that
  file ourselves, from the run's real held-out/calibration images (NHWC, [0, 1], 20 x 128 x 128 x 3), into a
  fresh temporary working folder, so nothing is ever downloaded.
* onnx2tf runs ``onnxsim`` through ``PATH``: the subprocess gets the interpreter's bin folder (the venv's
  ``bin``) first on ``PATH``.
* onnx2tf's own int8 calibration (ImageNet mean/std unless ``-cind``) is not used: int8 is made from the
  SavedModel by :mod:`quantize` with an explicit [-1, 1] representative dataset.

Output: ``<out>/generator_float32.tflite``, ``<out>/generator_float16.tflite`` and the SavedModel
(``saved_model.pb`` + ``variables/``) with signature ``serving_default``: input ``input`` (1, H, W, C),
output ``output`` (1, H, W, C).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from compress.children import child_options
from compress.data.codec import float_to_uint8
from export.onnx_export import ExportError

LOGGER = logging.getLogger("coronetgan.export")

#: File name onnx2tf looks for in its working directory (onnx2tf 1.29.24, ``download_test_image_data``).
ONNX2TF_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
#: onnx2tf's time limit (s): a paper-size U-Net converts in minutes on 2 cores; half an hour means it hangs.
DEFAULT_TIMEOUT_S = 1800


def sample_data_from_inputs(inputs_nchw: np.ndarray) -> np.ndarray:
    """(20, 128, 128, 3) float32 in [0, 1] from images (N, 3, H, W) in [-1, 1] (cycled when N < 20).

    For non-image inputs (DCGAN noise, or N == 0) a seeded uniform [0, 1] array of the same shape is returned.
    """
    if inputs_nchw.ndim != 4 or inputs_nchw.shape[1] != 3 or inputs_nchw.shape[2] < 2 or len(inputs_nchw) == 0:
        return np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    out = []
    for i in range(20):
        img = inputs_nchw[i % len(inputs_nchw)]
        u8 = float_to_uint8(img)
        out.append(np.asarray(Image.fromarray(u8).resize((128, 128), Image.BICUBIC), np.float32) / 255.0)
    return np.stack(out).astype(np.float32)


def run_onnx2tf(onnx_path: str | Path, out_dir: str | Path, work_dir: str | Path, sample_data: np.ndarray,
                timeout_s: int = DEFAULT_TIMEOUT_S) -> dict[str, Path]:
    """Convert ``onnx_path`` with onnx2tf into ``out_dir`` (created), working in ``work_dir``.

    Returns {"fp32": path, "fp16": path, "saved_model": out_dir}. Raises ExportError with the tail of
    onnx2tf's log when it fails or does not write both files.
    """
    onnx_path, out_dir, work_dir = Path(onnx_path).resolve(), Path(out_dir).resolve(), Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    np.save(work_dir / ONNX2TF_SAMPLE_FILE, sample_data.astype(np.float32))
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, "-m", "onnx2tf", "-i", str(onnx_path), "-o", str(out_dir),
           "-osd",    # SavedModel with signature (quantize reads it)
           "-coion",  # keep the ONNX input/output names in the .tflite signature
           "-n"]      # non-verbose
    LOGGER.info("onnx2tf: %s (cwd %s)", " ".join(cmd), work_dir)
    try:
        proc = subprocess.run(cmd, cwd=work_dir, env=env, capture_output=True, text=True, timeout=timeout_s,
                              **child_options())  # onnx2tf dies with us, even on kill -9
    except subprocess.TimeoutExpired as exc:
        raise ExportError(f"onnx2tf did not finish within {timeout_s} s") from exc
    stem = onnx_path.stem
    files = {"fp32": out_dir / f"{stem}_float32.tflite", "fp16": out_dir / f"{stem}_float16.tflite"}
    if proc.returncode != 0 or not all(p.is_file() for p in files.values()):
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise ExportError(f"onnx2tf failed (exit {proc.returncode}) converting {onnx_path}:\n{tail}")
    if "download" in (proc.stdout + proc.stderr).lower() and "calibration_image_sample" in proc.stdout + proc.stderr:
        LOGGER.warning("onnx2tf mentioned a download of its sample data; check %s", work_dir)
    files["saved_model"] = out_dir
    return files
