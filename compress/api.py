"""The Python entry point of the compress stage: one call runs the search and the converging stage.

``python -m compress`` (compress/cli.py) and :func:`compress_model` share :func:`run_compression`.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from compress.config import RunConfig, preset

LOGGER = logging.getLogger("coronetgan")


def setup_logging(run_dir: Path) -> None:
    """Log to ``run_dir/log.txt`` (appending, so resumed runs keep their history) and to stderr. Under torchrun
    only rank 0 writes the file; the other ranks log warnings and errors to stderr (compress/distributed.py).

    Raises:
        OSError: the folder cannot be created or written (named).
    """
    from compress.distributed import environment_rank
    from compress.io import ensure_dir

    rank = environment_rank()
    root = logging.getLogger("coronetgan")
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s" if rank == 0 else
                            f"%(asctime)s %(levelname)s rank {rank} %(name)s: %(message)s")
    if rank == 0:
        ensure_dir(run_dir)
        fh = logging.FileHandler(run_dir / "log.txt")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    root.addHandler(sh)


def _check_dataset(cfg: RunConfig) -> None:
    """Raise :class:`compress.errors.InputError` when ``cfg.dataset`` names no local folder or file
    (:func:`compress.data.resolve_dataset`, which every family's dataset goes through); its messages (a subset in
    use) are left to the run's own log."""
    from compress.data import resolve_dataset

    data_logger = logging.getLogger("coronetgan.data")
    was_disabled, data_logger.disabled = data_logger.disabled, True
    try:
        resolve_dataset(cfg.dataset)
    finally:
        data_logger.disabled = was_disabled


def run_compression(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) both CoroNetGAN stages for ``cfg`` in ``run_dir``, logging to ``run_dir/log.txt``.

    The run folder is locked for the run (:mod:`compress.runlock`): a second process on it is refused (under
    torchrun the lock is rank 0's, for the group).

    Returns:
        The compression report (``run_dir/compression_report.json``): MACs and params before/after, the
        achieved MACs reduction (fraction), the search status, wall times (s).
    Raises:
        compress.errors.InputError: invalid configuration, data or run folder, or a folder in use by another
            process.
        compress.errors.TrainingError: a non-finite loss or weights (the last good checkpoint is kept).
        OSError: the run folder cannot be written (named).
    """
    from compress.runlock import run_lock
    from compress.trainer import Trainer, pick_device

    run_dir = Path(run_dir)
    pick_device(cfg.device)  # a device this machine lacks is refused before the run folder is created
    if not resume and not run_dir.exists():
        _check_dataset(cfg)  # and a dataset that is not there: no new folder is left holding only a log
        if cfg.reference_run:   # nor for a reference run whose report a baseline cannot use
            from compress.baselines import load_reference

            load_reference(cfg.reference_run)
    if not resume and (run_dir / "config.json").is_file():
        Trainer._check_own_config(run_dir / "config.json")   # a refused folder gets no log.txt line either
    setup_logging(run_dir)
    from compress.distributed import environment_rank

    if environment_rank() != 0:     # torchrun: rank 0 holds the lock for the whole group (it alone writes)
        return Trainer(cfg, run_dir, resume=resume).run()
    with run_lock(run_dir, f"python -m compress{' --resume' if resume else ''} --run-dir {run_dir}"):
        return Trainer(cfg, run_dir, resume=resume).run()


def compress_model(model: str, target: float, run_dir: str | Path, *, dataset: str | None = None,
                   preset_name: str = "small", resume: bool = False, **overrides: Any) -> dict[str, Any]:
    """Compress the generator of a GAN family to ``target`` (fraction of MACs removed) and train it.

    Args:
        model: the family, ``pix2pix``, ``cyclegan`` or ``dcgan``.
        target: fraction of the generator's MACs to remove, e.g. 0.75 (paper 4.1).
        run_dir: run folder (``generator.pt``, ``architecture.json``, reports, checkpoints).
        dataset: dataset name or folder (default: the family's preset dataset).
        preset_name: ``small`` (minutes on a CPU) or ``paper`` (the paper's settings).
        resume: continue an interrupted run in ``run_dir``.
        **overrides: any :class:`~compress.config.RunConfig` field, e.g. ``search_steps=100``,
            ``generator={"ngf": 8}``.
    Returns:
        The compression report (see :func:`run_compression`).
    Raises:
        compress.errors.InputError: unknown family/preset/field or an out-of-range value.
        compress.errors.TrainingError: a non-finite loss or weights (the last good checkpoint is kept).
        OSError: the run folder cannot be written (named).
    """
    values: dict[str, Any] = {"model": model, "preset": preset_name, **preset(model, preset_name),
                              "target": target, **overrides}
    if dataset is not None:
        values["dataset"] = dataset
    return run_compression(RunConfig.from_dict(values).validate(), run_dir, resume=resume)
