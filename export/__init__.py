"""Export of a compress run: ONNX, TFLite fp32/fp16/int8, parity gates, GPU check, manifest (docs/export.md).

Public API: :func:`export_run` (returns the manifest dict) and its settings :class:`ExportOptions`; the CLI is
``python -m export``.
"""
from export.options import ExportOptions
from export.pipeline import export_run

__all__ = ["ExportOptions", "export_run"]
