"""Export of a compress run: ONNX, TFLite fp32/fp16/int8, parity gates, GPU check, manifest (docs/export.md).

Public API: :func:`export_run` (returns the manifest dict) and its settings :class:`ExportOptions`; the CLI is
``python -m export``. Both names load on first use, so importing a submodule (``export.options``) does not
import torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from export.options import ExportOptions
    from export.pipeline import export_run

__all__ = ["ExportOptions", "export_run"]


def __getattr__(name: str) -> Any:
    if name == "ExportOptions":
        from export.options import ExportOptions

        return ExportOptions
    if name == "export_run":
        from export.pipeline import export_run

        return export_run
    raise AttributeError(f"module 'export' has no attribute {name!r}")
