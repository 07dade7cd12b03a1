"""Resume: rerunning the command of a run that stopped early measures only the rows it did not measure.

A row of the earlier ``latency.json`` in the output folder is reused when that run did not complete
(aborted or interrupted), used the same protocol settings, the same device (serial number, build
fingerprint, profile, kind of figures) and the same runner (sha256), and the row was measured cleanly
(``status`` ok) from a file with the same sha256 under the same label and dtype.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.models import ModelSpec


def device_identity(facts: dict[str, Any], figures: str) -> dict[str, Any]:
    """What must be equal for two runs to be on the same device with the same kind of figures."""
    return {"kind": facts.get("kind"), "figures": figures, "profile": facts.get("profile"),
            "id": facts.get("serialno") or facts.get("serial"), "fingerprint": facts.get("fingerprint"),
            "model": facts.get("model"), "soc": facts.get("soc")}


def load_previous(out_dir: Path) -> dict[str, Any] | None:
    """The earlier ``latency.json`` in ``out_dir``, or ``None`` when there is none or it is unreadable."""
    try:
        data = json.loads((Path(out_dir) / "latency.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def reusable(previous: dict[str, Any] | None, config: dict[str, Any], identity: dict[str, Any],
             runner_sha256: str | None, specs: list[ModelSpec]) -> dict[str, tuple[dict, dict]]:
    """``{spec key: (row, result)}`` of the earlier run's rows that this run can keep (module docstring)."""
    if not previous or previous.get("complete") or previous.get("config") != config:
        return {}
    if previous.get("identity") != identity or (previous.get("runner") or {}).get("sha256") != runner_sha256:
        return {}
    results = {(r["model"]["label"], r["model"]["dtype"]): r for r in previous.get("results", [])
               if isinstance(r, dict) and isinstance(r.get("model"), dict)}
    out: dict[str, tuple[dict, dict]] = {}
    for spec in specs:
        for row in previous.get("rows", []):
            key = (row.get("model"), row.get("dtype"))
            if (key == (spec.label, spec.dtype) and row.get("sha256") == spec.sha256 and row.get("status") == "ok"
                    and key in results):
                # what the row says of the model comes from this run's input (e.g. --macs), not the earlier one
                out[spec.key] = (dict(row, macs=spec.macs, file=str(spec.path)),
                                 dict(results[key], model=spec.to_dict()))
    return out
