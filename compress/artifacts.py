"""The final artifacts of a compress run that later stages read: ``generator.pt`` and ``architecture.json``.

See DEVELOPERS.md ("The run directory") for the format. Export, evaluate and bench rebuild the pruned
generator from these two files alone, without the hypernetwork (:func:`load_generator`).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from compress.errors import InputError, first_line
from compress.families import generator_input_shape, get_family
from compress.io import atomic_torch_save, atomic_write_json, read_json
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


def build_generator(arch: Mapping[str, Any]) -> PrunableNetwork:
    """Build the plain generator described by ``arch`` = {"family": ..., "generator": {kwargs}}.

    Raises:
        InputError: unknown family, constructor arguments that the family does not take, or values of the
            wrong type or range (e.g. ``channels`` not an object of positive integers).
    """
    family = get_family(arch.get("family", ""))
    kwargs = dict(arch.get("generator", {}))
    try:
        return family.generator(**kwargs)
    except InputError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # JSON of the right form, wrong types
        raise InputError(f"architecture for {family.name}: bad generator arguments {sorted(kwargs)}: "
                         f"{type(exc).__name__}: {exc}") from None


def load_architecture(run_dir: str | Path) -> dict:
    """Read ``architecture.json`` of a run folder and check its form (DEVELOPERS.md, "The run directory").

    Raises:
        InputError: missing folder/file, invalid JSON, or JSON of another form (not an object, no known
            ``family``, ``generator`` not an object, ``input_shape`` not a list of positive integers).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} " + ("is a file" if run_dir.exists() else "does not exist")
                         + "; expected a folder written by `python -m compress`")
    path = run_dir / ARCHITECTURE_FILE
    if not path.is_file():
        raise InputError(f"{path} is missing; expected the architecture file that `python -m compress` writes "
                         "at the end of a run (is the run finished?)")
    arch = read_json(path)
    _check_architecture(arch, path)
    return arch


def _check_architecture(arch: Any, path: Path) -> None:
    expected = ('expected {"family": ..., "generator": {...}, "input_shape": [1, C, H, W], ...} as written by '
                "python -m compress")
    if not isinstance(arch, dict):
        raise InputError(f"{path} holds a {type(arch).__name__}; {expected}")
    get_family(arch.get("family", ""), f"{path}: family")
    if not isinstance(arch.get("generator"), dict):
        raise InputError(f"{path}: generator is {arch.get('generator')!r}; {expected}")
    shape = arch.get("input_shape")
    if not (isinstance(shape, list) and len(shape) == 4
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)):
        raise InputError(f"{path}: input_shape is {shape!r}; {expected}")


def torch_load_tensors(path: str | Path, what: str, device: torch.device | str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, so a crafted file cannot run code.

    ``what`` names the expected content in messages (e.g. "a checkpoint of python -m compress").
    Raises:
        InputError: the file cannot be read (the OS's reason), is not a torch file or is corrupt (truncated), or
            holds Python objects other than tensors and plain data (refused: nothing in it is executed); each
            message names the file and what was expected, never torch's advice to load it unsafely.
    """
    import pickle

    path = Path(path)
    try:
        with warnings.catch_warnings():   # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._weights_only_unpickler")
            return torch.load(path, map_location=device, weights_only=True)
    except OSError as exc:
        try:    # a file that can be read, which torch's zip reader then fails on (EINVAL), is corrupt
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError:
            raise InputError(f"{path} could not be read ({exc.strerror or exc}); expected {what}") from None
        raise InputError(f"{path} could not be read ({type(exc).__name__}: {exc.strerror or exc}); expected {what}: "
                         "the file is corrupt (truncated or not a torch file)") from None
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        refused = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported global" in ln), None)
        if refused is not None:
            raise InputError(f"{path}: refused to load: it holds Python objects other than tensors and plain data "
                             f"({refused}); {what} holds none, so this file was modified, made elsewhere or written "
                             "by an older version; it was not loaded and nothing in it was executed") from None
        operand = next((ln for ln in lines if ln.startswith("Unsupported operand")), None)
        if operand is not None:
            raise InputError(f"{path} could not be read (not a torch file: {operand}); expected {what}: the file is "
                             "corrupt or of another kind") from None
        # torch's own lines around the reason are advice about loading unsafely: never passed on
        boilerplate = ("Weights only load failed", "In PyTorch 2.6", "Re-running", "Please file an issue",
                       "Check the documentation", "WeightsUnpickler error:")
        detail = next((ln.split("WeightsUnpickler error:", 1)[1].strip() for ln in lines
                       if "WeightsUnpickler error:" in ln and ln.split("WeightsUnpickler error:", 1)[1].strip()),
                      None) or next((ln for ln in lines if not ln.startswith(boilerplate)
                                     and "weights_only" not in ln), type(exc).__name__)
        raise InputError(f"{path} could not be read by the tensors-only loader ({detail}); expected {what}: the "
                         "file is corrupt or holds other data; it was not loaded") from None
    except Exception as exc:  # torch raises several types for corrupt or truncated archives
        first = first_line(exc).split(". ")[0]
        raise InputError(f"{path} could not be read ({type(exc).__name__}: {first}); expected {what}: the file is "
                         "corrupt (truncated or not a torch file)") from None


def load_state(generator: PrunableNetwork, path: str | Path, architecture: str | Path) -> PrunableNetwork:
    """Load the state dict file ``path`` into ``generator`` (built from the file ``architecture``, named in
    messages) with :func:`torch_load_tensors`. Returns ``generator``.

    Raises:
        InputError: an unreadable or refused file (:func:`torch_load_tensors`), or weights whose names/shapes
            do not match the architecture (each mismatch is named).
    """
    path = Path(path)
    state = torch_load_tensors(path, "a generator state_dict of python -m compress")
    if not isinstance(state, dict):
        raise InputError(f"{path} holds a {type(state).__name__}; expected a state_dict")
    own = generator.state_dict()
    problems = [f"{k}: a {type(v).__name__}, not a tensor" for k, v in state.items() if not torch.is_tensor(v)]
    state = {k: v for k, v in state.items() if torch.is_tensor(v)}
    problems += [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [f"{k}: weights {tuple(state[k].shape)} vs architecture {tuple(v.shape)}"
                 for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InputError(f"{path} does not match {architecture}: {shown}")
    generator.load_state_dict(state)
    return generator


def load_generator(run_dir: str | Path, weights: str = GENERATOR_FILE) -> tuple[PrunableNetwork, dict]:
    """Rebuild the pruned plain generator of a run and load its weights (``weights_only=True``).

    Returns:
        (generator in eval mode, architecture dict).
    Raises:
        InputError: missing/corrupt ``generator.pt``, or weights whose names/shapes do not match
            ``architecture.json`` (each mismatch is named).
    """
    run_dir = Path(run_dir)
    arch = load_architecture(run_dir)
    try:
        generator = build_generator(arch)
    except InputError as exc:  # the file the bad value came from
        raise InputError(f"{run_dir / ARCHITECTURE_FILE}: {exc}") from None
    path = run_dir / weights
    if not path.is_file():
        raise InputError(f"{path} is missing; expected the generator state_dict written at the end of the run")
    load_state(generator, path, run_dir / ARCHITECTURE_FILE)
    return generator.eval(), arch
