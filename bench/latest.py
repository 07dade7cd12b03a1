"""``python bench/run_adb.py --device sm8450`` with no ``--models``: bench the newest finished run's export.

The run is the newest finished compress run under ``runs/`` (:func:`export.__main__.latest_run`, as ``python -m
export --latest runs/`` and ``python -m bench.pipeline --latest runs/`` choose it); its models are the
``.tflite`` files of ``RUN/export/manifest.json``, and the tables go to ``RUN/bench/<device>`` (``<device>`` is
the profile key, ``host``, or ``<profile>-virtual`` with ``--virtual``: the folders the pipeline's bench stage
writes).
"""
from __future__ import annotations

from pathlib import Path

from compress.errors import InputError

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
