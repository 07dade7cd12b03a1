"""What to benchmark: model specs from ``--models`` arguments (manifests or .tflite paths with labels)."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable

from compress.errors import InputError
from compress.io import sha256_file
from quantize.composition import describe, int8_label

DTYPES = ("fp32", "fp16", "int8")
_LABELLED = re.compile(r"^(?P<label>[A-Za-z0-9_.+-]+)(?::(?P<dtype>fp32|fp16|int8))?=(?P<path>.+)$")
_WRONG_DTYPE = re.compile(r"^(?P<label>[A-Za-z0-9_.+-]+):(?P<dtype>[^=/]*)=(?P<path>.+)$")


@dataclasses.dataclass
class ModelSpec:
    """One .tflite file to time: ``label`` (e.g. ``pruned``), ``dtype`` (fp32/fp16/int8), ``path``.

    ``macs`` is the generator's multiply-accumulate count per image (MACs, ``None`` when unknown);
    ``size_bytes`` and ``sha256`` describe the file; ``ops`` maps the graph's op types to node counts and
    ``input_shape`` is its first input's shape (NHWC) once the host load check (:mod:`bench.host_check`) has
    read it. ``dtype_label`` is what the file is, read from it (:func:`quantize.composition.int8_label`): ``int8``
    or ``int8 (mixed: N of M convolutions float)`` for an int8 file, the dtype otherwise.
    """

    label: str
    dtype: str
    path: Path
    macs: int | None = None
    size_bytes: int = 0
    sha256: str = ""
    source: str = ""
    ops: dict[str, int] | None = None
    input_shape: list[int] | None = None
    dtype_label: str = ""

    @property
    def key(self) -> str:
        """``label:dtype``, unique within a run."""
        return f"{self.label}:{self.dtype}"

    @property
    def size_mb(self) -> float:
        """File size in MB (10^6 bytes)."""
        return self.size_bytes / 1e6

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        return d


def guess_dtype(path: Path) -> str:
    """dtype from the file name (``…fp16…``, ``…int8…``/``…_quant…``), else from the model's tensors.

    A model with float16 tensors is fp16, one with int8/uint8 tensors is int8, else fp32. The tensors are read
    by the host load check in a child process (:func:`bench.host_check.check_models`): a corrupt file cannot
    crash bench here.
    """
    name = path.name.lower()
    for d in DTYPES:
        if d in name:
            return d
    if "float16" in name or "f16" in name:
        return "fp16"
    if "quant" in name or "q8" in name or "uint8" in name:
        return "int8"
    from bench.host_check import check_models

    types = set(check_models([str(path)])[str(path)].tensor_types)
    if "float16" in types:
        return "fp16"
    if types & {"int8", "uint8"}:
        return "int8"
    return "fp32"


def _label_from_stem(stem: str) -> str:
    label = re.sub(r"[_.-]?(fp32|fp16|int8|float16|float32|quant)$", "", stem, flags=re.IGNORECASE)
    return label or stem


def _spec(label: str, dtype: str | None, path: Path, macs: int | None, source: str,
          expected_sha256: str | None = None) -> ModelSpec:
    if not path.is_file():
        raise InputError(f"{source}: model file {path} not found")
    if path.suffix.lower() != ".tflite":
        raise InputError(f"{source}: {path} is not a .tflite file")
    dtype = (dtype or guess_dtype(path)).lower()
    if dtype in ("float32", "f32"):
        dtype = "fp32"
    if dtype in ("float16", "f16"):
        dtype = "fp16"
    if dtype in ("uint8", "q8", "quant", "full_int8", "int8_full", "dynamic_int8", "dynamic"):
        dtype = "int8"
    if dtype not in DTYPES:
        raise InputError(f"{source}: dtype {dtype!r} for {path}; expected one of {', '.join(DTYPES)}")
    sha = sha256_file(path)
    if expected_sha256 and sha != str(expected_sha256).lower():
        raise InputError(f"{source}: {path} has sha256 {sha[:12]}… but the manifest records "
                         f"{str(expected_sha256)[:12]}… for {label} {dtype}: the file changed after export; "
                         "re-export the run (or fix the manifest)")
    return ModelSpec(label=label, dtype=dtype, path=path.resolve(), macs=macs, size_bytes=path.stat().st_size,
                     sha256=sha, source=source, dtype_label=_dtype_label(path, dtype))


def _dtype_label(path: Path, dtype: str) -> str:
    """The label the tables show for the file's dtype: for int8, what its flatbuffer says (a file with float
    convolutions is ``int8 (mixed: N of M convolutions float)`` wherever it is listed)."""
    if dtype != "int8":
        return dtype
    try:
        return int8_label(describe(path))
    except Exception:  # not a readable flatbuffer: the host load check reports the file, not this label
        return dtype


def _int_or_none(v: Any) -> int | None:
    """A MAC count read tolerantly: None for what is not a finite, non-negative number."""
    if v is None or isinstance(v, bool):
        return None
    try:
        n = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(n) if math.isfinite(n) and n >= 0 else None


def read_manifest(path: Path) -> list[ModelSpec]:
    """Model specs from an export ``manifest.json`` (tolerant reader).

    Accepted: ``{"model": label, "macs": N, "files": [{"path", "dtype", ...}]}``; ``files`` may also be a
    ``{dtype: path}`` object, entries may carry their own ``model``/``macs``, and a top-level list
    or ``{"models": [...]}`` of such objects is read entry by entry. Relative paths are relative to the
    manifest's folder. A file entry's ``sha256`` (as export writes it) must match the file. Raises
    :class:`InputError` for unreadable manifests, ones that list no file, and files whose sha256 differs.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"--models {path}: cannot read manifest JSON ({e})") from None
    if not isinstance(data, (list, dict)):
        raise InputError(f"--models {path}: the manifest is a JSON {type(data).__name__}; expected an object "
                         "{\"model\", \"macs\", \"files\": [{\"path\", \"dtype\", \"sha256\"}]} or a list of them")
    entries = data if isinstance(data, list) else data.get("models") if isinstance(data.get("models"), list) else [data]
    specs: list[ModelSpec] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        label = str(entry.get("model") or entry.get("label") or entry.get("name") or _label_from_stem(path.parent.name))
        macs = _int_or_none(entry.get("macs") or (entry.get("metrics") or {}).get("macs")
                            if isinstance(entry.get("metrics"), dict) else entry.get("macs"))
        files = entry.get("files") or entry.get("variants") or entry.get("tflite") or []
        if isinstance(files, dict):
            files = [{"dtype": k, "path": v} if isinstance(v, str) else {"dtype": k, **v} if isinstance(v, dict)
                     else {} for k, v in files.items()]
        if not isinstance(files, list):
            raise InputError(f"--models {path}: 'files' is a {type(files).__name__}; expected a list of "
                             "{\"path\", \"dtype\"} objects or a {dtype: path} object")
        for f in files:
            if isinstance(f, str):
                f = {"path": f}
            if not isinstance(f, dict) or not f.get("path"):
                continue
            for key in ("path", "dtype", "model", "sha256"):
                if f.get(key) is not None and not isinstance(f[key], str):
                    raise InputError(f"--models {path}: a file entry's {key!r} is {f[key]!r}; expected a string")
            p = Path(f["path"])
            if not p.is_absolute():
                p = path.parent / p
            if p.suffix.lower() != ".tflite":
                continue  # manifests may also list .onnx files
            # a file entry's "label" is its dtype label in export manifests ("int8 (mixed: ...)"), not a model name
            specs.append(_spec(str(f.get("model") or label), f.get("dtype"), p,
                               _int_or_none(f.get("macs")) or macs, f"manifest {path}", f.get("sha256")))
    if not specs:
        raise InputError(f"--models {path}: the manifest lists no .tflite file (expected 'files': "
                         "[{'path': ..., 'dtype': 'fp32|fp16|int8'}])")
    return specs


def parse_model_args(args: Iterable[str], macs: dict[str, int] | None = None) -> list[ModelSpec]:
    """Turn ``--models`` arguments into specs.

    Each argument is a manifest (``manifest.json`` or a folder holding one), ``label:dtype=path``,
    ``label=path`` or a plain ``path.tflite`` (label from the file stem, dtype from the name or tensors).
    ``macs`` maps labels to MACs and overrides manifest values. Raises :class:`InputError` for missing
    files, unknown dtypes or duplicate ``label:dtype`` pairs.
    """
    specs: list[ModelSpec] = []
    for arg in args:
        m = _LABELLED.match(arg)
        if m and not Path(arg).exists():
            specs.append(_spec(m["label"], m["dtype"], Path(m["path"]), None, f"--models {arg}"))
            continue
        wrong = _WRONG_DTYPE.match(arg)
        if wrong and not Path(arg).exists():
            raise InputError(f"--models {arg}: dtype {wrong['dtype']!r}; expected label:dtype=path.tflite with dtype "
                             f"one of {', '.join(DTYPES)} (or label=path.tflite)")
        p = Path(arg)
        if p.is_dir():
            if not (p / "manifest.json").is_file():
                raise InputError(f"--models {arg}: folder has no manifest.json")
            specs.extend(read_manifest(p / "manifest.json"))
        elif p.suffix.lower() == ".json":
            if not p.is_file():
                raise InputError(f"--models {arg}: manifest not found")
            specs.extend(read_manifest(p))
        else:
            specs.append(_spec(_label_from_stem(p.stem), None, p, None, f"--models {arg}"))
    if not specs:
        raise InputError("--models: no model given")
    seen: dict[str, ModelSpec] = {}
    for s in specs:
        if s.key in seen:
            raise InputError(f"--models: two files for {s.key} ({seen[s.key].path} and {s.path}); "
                             "give them different labels with label:dtype=path")
        seen[s.key] = s
        if macs and s.label in macs:
            s.macs = macs[s.label]
    unknown = sorted(set(macs or {}) - {s.label for s in specs})
    if unknown:
        raise InputError(f"--macs {unknown[0]}=...: no model has the label {unknown[0]!r}; expected one of "
                         f"{', '.join(sorted({s.label for s in specs}))}")
    return specs
