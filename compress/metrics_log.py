"""Reading a run's ``metrics.jsonl``: one JSON record per logged step, written by :class:`compress.trainer.Trainer`
(``stage``, ``step``, the losses, ``seconds`` since the stage started, resumes included)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of ``path`` in file order; a line that is not a JSON object (the half-written last line of a
    killed run) is left out. A missing or unreadable file gives ``[]``."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def longest_step_seconds(path: Path) -> float | None:
    """The longest mean step time in ``path``, in seconds: over each pair of consecutive records of one stage,
    (difference of ``seconds``) / (difference of ``step``), so the samples and checkpoints written in between count.
    ``None`` when no such pair exists (fewer than two records of a stage, or a file of another shape)."""
    longest = None
    previous: dict[str, tuple[float, float]] = {}
    for rec in read_records(path):
        stage, step, seconds = rec.get("stage"), rec.get("step"), rec.get("seconds")
        if not isinstance(step, (int, float)) or not isinstance(seconds, (int, float)):
            continue
        if stage in previous:
            step0, seconds0 = previous[stage]
            if step > step0 and seconds >= seconds0:
                mean = (seconds - seconds0) / (step - step0)
                longest = mean if longest is None else max(longest, mean)
        previous[stage] = (step, seconds)
    return longest
