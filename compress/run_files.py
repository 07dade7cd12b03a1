"""Files of a run folder that the pipeline and the release read, without importing the trainer (no torch): where
the checkpoint is, and ``metrics.jsonl``, one JSON record per logged step written by
:class:`compress.trainer.Trainer` (``stage``, ``step``, the losses, ``seconds`` since the stage started, resumes
included)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

#: The run's checkpoint, relative to the run folder (written atomically by the trainer).
CHECKPOINT = "checkpoints/last.pt"
#: The run's per-step records, relative to the run folder.
METRICS = "metrics.jsonl"
#: Consecutive record pairs :func:`longest_step_seconds` looks back over (an old stall, a Ctrl-Z, does not count).
RECENT_PAIRS = 10


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
    """The longest mean step time in ``path``, in seconds, over the last :data:`RECENT_PAIRS` pairs of consecutive
    records of one stage: (difference of ``seconds``) / (difference of ``step``), so the samples and checkpoints
    written in between count. A pair whose step or time goes back (a resume) is left out, so are records without
    a str ``stage``, an integer ``step`` and a finite ``seconds``. ``None`` when no pair is left."""
    means = []
    previous: dict[str, tuple[int, float]] = {}
    for rec in read_records(path):
        stage, step, seconds = rec.get("stage"), rec.get("step"), rec.get("seconds")
        if (not isinstance(stage, str) or not isinstance(step, int) or isinstance(step, bool)
                or not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds)):
            continue
        if stage in previous:
            step0, seconds0 = previous[stage]
            if step > step0 and seconds >= seconds0:
                means.append((seconds - seconds0) / (step - step0))
        previous[stage] = (step, seconds)
    recent = means[-RECENT_PAIRS:]
    return max(recent) if recent else None
