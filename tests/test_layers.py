"""The import graph follows the pipeline: import-linter contracts of pyproject.toml (issue 12, item 1).

The contracts run on the repository as it is, and once more on a copy with a deliberate back-import
(quantize -> export), which they must reject: a contract that cannot fail would prove nothing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("compress", "quantize", "export", "bench")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(exe), "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_a_back_import_breaks_the_layers_contract(tmp_path):
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "quantize" / "back_import.py").write_text("import export  # deliberately against the layers\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "quantize is not allowed to import export" in proc.stdout
    assert "quantize.back_import -> export" in proc.stdout
