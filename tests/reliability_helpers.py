"""Helpers of the reliability tests (issue 14): the table of error cases in docs/errors.md, tiny synthetic data
and run folders, and running a command line in-process.

Test modules import them by name (``from reliability_helpers import ...``).
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "docs" / "errors.md"
TEST_FILES = ("test_errors_table.py", "test_reliability.py", "test_resume_exact.py")


@dataclass(frozen=True)
class Case:
    """One row of docs/errors.md: the command, the last line it prints on stderr and its exit status."""

    id: str
    command: str
    message: str
    exit: int


def _cell(text: str) -> str:
    text = text.strip().replace("\\|", "|")
    return text[1:-1] if text.startswith("`") and text.endswith("`") else text


def load_table() -> dict[str, Case]:
    """The cases of docs/errors.md (rows of its tables whose first cell is a case id in backquotes)."""
    cases = {}
    for line in TABLE.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        assert len(cells) == 4, f"docs/errors.md row with {len(cells)} cells: {line}"
        case = Case(_cell(cells[0]), _cell(cells[1]), _cell(cells[2]), int(_cell(cells[3])))
        assert case.id not in cases, f"case {case.id} twice in docs/errors.md"
        cases[case.id] = case
    return cases


def fill(text: str, values: dict[str, object]) -> str:
    """``text`` with its ``{name}`` placeholders replaced (only the names in ``values``: messages hold braces)."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


def last_line(stderr: str) -> str:
    """The last non-empty line of a command's stderr (progress bars redraw with carriage returns)."""
    lines = [line.split("\r")[-1].strip() for line in stderr.splitlines()]
    return next((line for line in reversed(lines) if line), "")


def check_case(case_id: str, stderr: str, status: int, values: dict[str, object]) -> None:
    """Assert that a command printed the exact message of ``case_id`` last and ended with its exit status; a
    row with exit status 0 is a warning of a command that goes on: one of its stderr lines ends with it."""
    case = load_table()[case_id]
    expected = fill(case.message, values)
    if case.exit == 0:
        assert any(line.rstrip().endswith(expected) for line in stderr.splitlines()), (expected, stderr[-3000:])
    else:
        assert last_line(stderr) == expected, stderr[-3000:]
    assert status == case.exit, (status, stderr[-3000:])


def cli_main(program: str):
    """The ``main`` function of a command line named as in docs/errors.md."""
    if program == "python -m compress":
        from compress.cli import main
    elif program == "python -m compress.evaluate":
        from compress.evaluate.__main__ import main
    elif program == "python -m compress.data":
        from compress.data.fetch import main
    elif program == "python -m export":
        from export.__main__ import main
    elif program == "python -m export.check_photos":
        from export.check_photos import main
    elif program == "python -m bench.pipeline":
        from bench.pipeline.cli import main
    elif program == "python bench/run_adb.py":
        from bench.cli import main
    else:
        raise AssertionError(f"unknown program {program!r}")
    return main


def split_command(command: str) -> tuple[str, list[str]]:
    """("python -m compress", [arguments]) of a command line."""
    words = shlex.split(command)
    n = 3 if words[1] == "-m" else 2
    return " ".join(words[:n]), words[n:]


# -------------------------------------------------------------------------------------------- tiny data
def tiny_cifar(path: Path, n_train: int = 40, n_test: int = 16) -> Path:
    """A CIFAR-10 npz of random images (x_train (N, 32, 32, 3) uint8...)."""
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
             y_train=rng.integers(0, 10, n_train), x_test=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
             y_test=rng.integers(0, 10, n_test))
    return path


def tiny_domains(root: Path, n: int = 6, size: int = 40) -> Path:
    """A CycleGAN dataset folder (trainA/ trainB/ testA/ testB/) of random PNG images."""
    rng = np.random.default_rng(1)
    for sub in ("trainA", "trainB", "testA", "testB"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / sub / f"{i}.png")
    return root


#: A DCGAN run small enough for a few CPU seconds (the dataset flag is added by the callers).
DCGAN_TINY = ["--model", "dcgan", "--preset", "small", "--ngf", "4", "--discriminator", "ndf=4", "--target", "0.3",
              "--batch-size", "8", "--steps", "12", "--search-steps", "8", "--check-interval", "2",
              "--checkpoint-interval", "2", "--sample-interval", "1000", "--device", "cpu"]


def saved_config(run: Path, **overrides) -> dict:
    """Write ``run/config.json`` of a tiny valid DCGAN run; returns its dict."""
    from compress.config import RunConfig, preset

    values = {"model": "dcgan", "preset": "small", **preset("dcgan", "small"), "target": 0.5,
              "generator": {"ngf": 4}, "discriminator": {"ndf": 4}, "device": "cpu", **overrides}
    cfg = RunConfig.from_dict(values).validate().to_dict()
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(cfg))
    return cfg


def finished_run(run: Path, dataset: Path) -> Path:
    """A finished DCGAN run folder (config.json, generator.pt, architecture.json) without training."""
    from compress.artifacts import save_generator
    from compress.models import DCGANGenerator

    saved_config(run, dataset=str(dataset))
    torch.manual_seed(0)
    save_generator(run, DCGANGenerator(ngf=4).eval(), 32, {"name": str(dataset)})
    return run
