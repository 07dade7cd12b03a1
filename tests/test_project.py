"""Project-level guarantees: every module imports on the CPU stack, and nothing pulls in torchvision."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_no_module_imports_torchvision():
    modules = sorted({".".join(p.relative_to(REPO).with_suffix("").parts)
                      for pkg in ("compress", "export", "quantize", "bench")
                      for p in (REPO / pkg).rglob("*.py") if p.name not in ("__main__.py", "run_adb.py")})
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            "bad = [m for m in sys.modules if m.split('.')[0] == 'torchvision']\n"
            "print(len(sys.modules)); assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]


def test_no_module_branches_on_a_family_name():
    """Family knowledge lives in the registry (compress/families): outside it no code compares a value with a
    family's name (``family == "pix2pix"``, ``in ("cyclegan", ...)``); it asks the family object instead."""
    import ast

    from compress.families import FAMILIES

    names = set(FAMILIES)
    found = []
    for pkg in ("compress", "export", "quantize", "bench"):
        for path in (REPO / pkg).rglob("*.py"):
            if path.is_relative_to(REPO / "compress" / "families"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Compare):
                    continue
                operands = [node.left, *node.comparators]
                literals = [c.value for o in operands for c in ast.walk(o)
                            if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                if names & set(literals):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, f"comparisons with a family name outside compress/families: {found}"
