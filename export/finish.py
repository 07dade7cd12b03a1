"""The last rewrites of every exported .tflite, in this order, before the gates measure it.

1. :func:`export.gpu_compat.unfuse_transpose_conv_activations` (the GPU delegate's TRANSPOSE_CONV version);
2. :func:`export.compact.compact_file` (tensor names, empty quantization tables, duplicate buffers).

The size gate compares the int8 file with the fp32 file as installed, so both go through the same rewrites; the
int8 weight-scale choice (:mod:`export.int8_file`) measures its candidates the same way (:func:`finished_size`).
"""
from __future__ import annotations

import logging
from pathlib import Path

from export.compact import compact_file
from export.gpu_compat import unfuse_transpose_conv_activations

LOGGER = logging.getLogger("coronetgan.export")


def finish_tflite(path: str | Path, keep_tensor_names: bool = False) -> dict:
    """Apply the rewrites (module docstring) to ``path`` in place.

    Returns:
        {"unfused_transpose_conv_activations": ops rewritten (count), "compaction": {"bytes_before",
        "bytes_after", "tensor_names_kept"} or {"skipped": why} for a file the compaction cannot rewrite without
        loss (:func:`export.compact.compact_tflite`), "tensor_names": the names the compaction took out of the
        file, by tensor index, or None when the file keeps them}.
    Raises:
        OSError: the file cannot be read or replaced; ValueError: not a TFLite flatbuffer (GPU rewrite).
    """
    unfused = unfuse_transpose_conv_activations(path)
    try:
        compaction = compact_file(path, keep_tensor_names)
    except ValueError as exc:
        LOGGER.warning("%s: not compacted: %s", path, exc)
        return {"unfused_transpose_conv_activations": unfused, "compaction": {"skipped": str(exc)},
                "tensor_names": None}
    names = compaction.pop("tensor_names")
    return {"unfused_transpose_conv_activations": unfused, "compaction": compaction,
            "tensor_names": None if keep_tensor_names else names}


def finished_size(content: bytes, work_path: str | Path, keep_tensor_names: bool = False) -> int:
    """Bytes the .tflite ``content`` would have once installed: written to ``work_path`` (removed after),
    finished (:func:`finish_tflite`) and measured.

    Raises:
        OSError: ``work_path`` cannot be written; ValueError: not a TFLite flatbuffer.
    """
    work_path = Path(work_path)
    work_path.write_bytes(content)
    try:
        finish_tflite(work_path, keep_tensor_names)
        return work_path.stat().st_size
    finally:
        work_path.unlink(missing_ok=True)
