#!/usr/bin/env python3
"""Script entry: ``python bench/run_adb.py --device sm8450 --models ... --out DIR`` (see :mod:`bench.cli`)."""
from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # bench/ must not shadow modules
_REPO = str(_HERE.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
