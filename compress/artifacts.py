"""The final artifacts of a compress run that later stages read: ``generator.pt`` and ``architecture.json``.

See DEVELOPERS.md ("The run directory") for the format. Export, evaluate and bench rebuild the pruned
generator from these two files alone, without the hypernetwork (:func:`compress.models.load_generator`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from compress.io import atomic_torch_save, atomic_write_json
from compress.models import generator_input_shape
from compress.models.base import PrunableNetwork

ARCHITECTURE_FILE = "architecture.json"
GENERATOR_FILE = "generator.pt"


def architecture_of(generator: PrunableNetwork, image_size: int = 256,
                    dataset: Mapping[str, Any] | None = None) -> dict:
    """The architecture description of a plain generator (family, constructor args with channels, I/O)."""
    return {
        "family": generator.family,
        "generator": generator.config(),
        "input_shape": list(generator_input_shape(generator, image_size)),
        "value_range": [-1, 1],
        "dataset": dict(dataset or {}),
    }


def save_generator(run_dir: str | Path, generator: PrunableNetwork, image_size: int = 256,
                   dataset: Mapping[str, Any] | None = None) -> dict:
    """Write ``generator.pt`` (state_dict, loadable with ``weights_only=True``) and ``architecture.json``
    atomically into ``run_dir``. ``dataset`` = {"name", "root", "source_dir"} tells export where the
    representative (source-domain) images are. Returns the architecture dict."""
    run_dir = Path(run_dir)
    arch = architecture_of(generator, image_size, dataset)
    state = {k: v.detach().cpu().clone() for k, v in generator.state_dict().items()}
    atomic_torch_save(state, run_dir / GENERATOR_FILE)
    atomic_write_json(run_dir / ARCHITECTURE_FILE, arch)
    return arch
