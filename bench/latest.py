"""``python bench/run_adb.py --device sm8450`` with no ``--models``: bench the newest finished run's export.

The run is the newest finished compress run under ``runs/`` (:func:`export.__main__.latest_run`, as ``python -m
export --latest runs/`` and ``python -m bench.pipeline --latest runs/`` choose it); its models are the
``.tflite`` files of ``RUN/export/manifest.json``, and, when the run's original was exported
(``RUN/original/export/manifest.json``, :mod:`export.original`), the original's files too, first, as the
reference of the speed-up column. The tables go to ``RUN/bench/<device>`` (``<device>`` is the profile key,
``host``, or ``<profile>-virtual`` with ``--virtual``: the folders the pipeline's bench stage writes).
"""
from __future__ import annotations

import json
from pathlib import Path

from compress.errors import InputError
from export.original import original_dir

RUNS = Path("runs")


def latest_export(runs_root: str | Path = RUNS) -> tuple[Path, Path]:
    """``(run folder, its export manifest)`` of the newest finished run under ``runs_root``.

    Raises :class:`InputError` (naming what to pass instead) when ``runs_root`` is missing, holds no finished
    run, or its newest finished run has no export manifest yet.
    """
    root = Path(runs_root)
    instead = "pass --models MANIFEST.json|FILE.tflite --out DIR"
    if not root.is_dir():
        raise InputError(f"--models not given and there is no {root}/ folder in {Path.cwd()}: run from the project "
                         f"folder that holds runs/, or {instead}")
    from export.__main__ import latest_run

    try:
        run = latest_run(root)
    except InputError:
        raise InputError(f"--models not given and {root}/ holds no finished compress run (a folder with "
                         f"generator.pt and architecture.json); {instead}") from None
    manifest = run / "export" / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"--models not given: the newest finished run {run} has no export manifest ({manifest}); "
                         f"export it first (python -m export {run}), or {instead}")
    return run, manifest


def default_out(run: Path, device: str, virtual: bool) -> Path:
    """``RUN/bench/<device>``: where the tables of a run's bench on ``device`` go (``-virtual`` appended for a
    virtual device)."""
    return run / "bench" / (f"{device}-virtual" if virtual else device)


def original_export(run: Path) -> tuple[Path, str] | None:
    """``(manifest, model label)`` of the run's exported original (``RUN/original/export/manifest.json``), or
    None when the original was not exported (or its manifest is unreadable)."""
    manifest = original_dir(run) / "export" / "manifest.json"
    try:
        label = json.loads(manifest.read_text()).get("model")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return (manifest, str(label)) if label else None
