"""The original beside the compressed one: the unpruned generator of a run's family and width, as a run folder.

A release answers "how much faster than the original is the compressed generator, on this phone, in this
dtype" (paper Table 3: "Ours" beside the original at 256 x 256). The original is the generator the run
compressed, at full width: the run's family and constructor arguments (``architecture.json`` ``"generator"``
without the pruned ``"channels"``). :func:`prepare_original` writes it as a run folder ``RUN/original/``
(``generator.pt``, ``architecture.json`` with the run's dataset entry, and ``original.json`` saying where its
weights came from), so that ``python -m export RUN --original`` exports it like any run, into
``RUN/original/export/``. Its weights (``--original-weights``):

* a baseline run folder (``python -m compress --baseline unpruned``, same family and width): its trained
  ``generator.pt`` (and its ``evaluation.json``, when it has one, for the original's FID);
* a state-dict file (``.pt``/``.pth``) of the full-width generator: trained weights from elsewhere;
* ``init`` (the default): the family's initialisation, seed 0 -- **latency only**. fp32 and fp16 latency do not
  depend on the weight values (same graph, same shapes, same kernels). In int8 the weights decide the
  quantization ranges (scales and zero points from the activations of the calibration images): the int8
  graph's latency is that of any weights, but its output quality (PSNR, FID) is meaningless. Robust int8's
  sensitivity selection (``--int8-target-db``) also decides from the outputs which convolutions stay in float;
  the manifests list them (``float_nodes``) for both generators.

``latest_run`` (``python -m export --latest``) never takes an original folder for a run: ``original.json``
marks it.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from compress.artifacts import (ARCHITECTURE_FILE, GENERATOR_FILE, build_generator, load_architecture,
                                load_state, save_generator)
from compress.errors import InputError
from compress.io import atomic_write_bytes, atomic_write_json, sha256_file

LOGGER = logging.getLogger("coronetgan.export")

#: The original's run folder inside a run folder.
ORIGINAL_DIR = "original"
#: Marks an original folder and says where its weights came from.
ORIGINAL_RECORD = "original.json"
#: ``--original-weights`` value for initialised weights (latency only).
INIT = "init"
#: Seed of the initialised weights (deterministic, so an unchanged run keeps the same original).
INIT_SEED = 0


def original_dir(run_dir: str | os.PathLike) -> Path:
    """``RUN/original``: the original's run folder of ``run_dir``."""
    return Path(run_dir) / ORIGINAL_DIR


def is_original(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an original's folder written by :func:`prepare_original`."""
    return (Path(folder) / ORIGINAL_RECORD).is_file()


def read_original(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``RUN/original/original.json`` (the record of :func:`prepare_original`), or None when absent or not JSON."""
    try:
        return json.loads((original_dir(run_dir) / ORIGINAL_RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _full_config(arch: dict) -> dict:
    """Constructor arguments of the unpruned generator of ``arch`` (its ``channels`` at full width)."""
    kwargs = {k: v for k, v in dict(arch.get("generator") or {}).items() if k != "channels"}
    return build_generator({"family": arch.get("family", ""), "generator": kwargs}).config()


def _weights_source(weights: str | os.PathLike | None, arch: dict, full: dict) -> dict[str, Any]:
    """What ``--original-weights`` names, checked: ``{"kind", "text", "latency_only", ...}``.

    Raises:
        InputError: a path that does not exist; a baseline run of another family or width (named).
    """
    if weights is None or str(weights) == INIT:
        return {"kind": "initialised", "seed": INIT_SEED, "latency_only": True,
                "text": f"initialised weights (seed {INIT_SEED}): latency only"}
    path = Path(weights).expanduser()
    if path.is_dir():
        other = load_architecture(path)
        mine = {k: v for k, v in full.items() if k != "channels"}
        theirs = {k: v for k, v in dict(other.get("generator") or {}).items() if k != "channels"}
        if other.get("family") != arch.get("family") or theirs != mine:
            raise InputError(f"--original-weights {path}: a {other.get('family')} run with generator {theirs}; "
                             f"expected an unpruned {arch.get('family')} run with generator {mine} (python -m "
                             "compress --baseline unpruned with the compressed run's --model and width)")
        if (other.get("generator") or {}).get("channels") != full["channels"]:
            raise InputError(f"--original-weights {path}: its generator is pruned "
                             f"({(other.get('generator') or {}).get('channels')}); expected the unpruned one "
                             f"({full['channels']}), e.g. a run of python -m compress --baseline unpruned")
        file = path / GENERATOR_FILE
        return {"kind": "baseline run", "run_dir": str(path.resolve()), "file": str(file.resolve()),
                "sha256": sha256_file(file) if file.is_file() else None, "latency_only": False,
                "text": f"trained weights of the baseline run {path}"}
    if path.is_file():
        return {"kind": "checkpoint", "file": str(path.resolve()), "sha256": sha256_file(path),
                "latency_only": False, "text": f"trained weights from {path}"}
    raise InputError(f"--original-weights {weights}: no such file or folder; expected {INIT} (initialised "
                     "weights, latency only), a baseline run folder (python -m compress --baseline unpruned) or a "
                     "state-dict file (.pt) of the unpruned generator")


def prepare_original(run_dir: str | os.PathLike, weights: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Write ``RUN/original/`` (module docstring) for the finished compress run ``run_dir``.

    Args:
        run_dir: a finished compress run (``architecture.json``; its family, width, input shape and dataset).
        weights: :data:`INIT` or None (initialised, seed 0: latency only), a baseline run folder, or a
            state-dict file of the unpruned generator.
    Returns:
        (the original's folder, whether anything was written): an original already there from the same run
        and the same weights is left as it is, so that export skips it when nothing changed.
    Raises:
        InputError: a missing or unreadable run; weights of another family or width, or a file that is not a
            state dict of the unpruned generator (each mismatching tensor named, :func:`compress.artifacts.load_state`).
    """
    run = Path(run_dir)
    arch = load_architecture(run)
    if is_original(run):
        raise InputError(f"{run} is already an original's folder ({ORIGINAL_RECORD}); give the compressed run")
    full = _full_config(arch)
    source = _weights_source(weights, arch, full)
    dest = original_dir(run)
    record = {"original_of": str(run.resolve()), "family": arch["family"], "generator": full,
              "input_shape": arch.get("input_shape"), "weights": source}
    old = read_original(run)
    weights_file = dest / GENERATOR_FILE
    if (old is not None and {k: old.get(k) for k in record} == record and (dest / ARCHITECTURE_FILE).is_file()
            and weights_file.is_file() and sha256_file(weights_file) == old.get("generator_pt_sha256")):
        return dest, False
    full_arch = {**arch, "generator": full}
    # the weights are read and checked before the folder is touched: refused weights leave an earlier original
    if source["kind"] == "initialised":
        with torch.random.fork_rng():
            torch.manual_seed(INIT_SEED)
            generator = build_generator(full_arch)
    else:  # InputError names every mismatch against the unpruned architecture of the run
        generator = load_state(build_generator(full_arch), source["file"],
                               f"the unpruned {arch['family']} generator of {run / ARCHITECTURE_FILE}").eval()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / ORIGINAL_RECORD).unlink(missing_ok=True)  # from here on the folder is not a complete original
    atomic_write_json(dest / ARCHITECTURE_FILE, full_arch)
    image_size = int(arch["input_shape"][-1]) if arch.get("input_shape") else 256
    save_generator(dest, generator, image_size, arch.get("dataset"))
    evaluation = Path(source.get("run_dir", "")) / "evaluation.json" if source.get("run_dir") else None
    if evaluation is not None and evaluation.is_file():
        atomic_write_bytes(dest / "evaluation.json", evaluation.read_bytes())
    else:
        (dest / "evaluation.json").unlink(missing_ok=True)
    atomic_write_json(dest / ORIGINAL_RECORD, {**record, "generator_pt_sha256": sha256_file(dest / GENERATOR_FILE)})
    LOGGER.info("original of %s: %s -> %s", run, source["text"], dest)
    return dest, True
