"""The pipeline's record of its stages (``RUN/pipeline.json``) and the checks that let a stage be skipped.

``RUN/pipeline.json`` holds ``stages`` (the last run of each stage: status ran/skipped/failed/unavailable,
``wall_s`` seconds, ``detail``, ``load_before``/``load_after`` 1/5/15-minute load averages, ``finished``),
``last_ran`` (the last run of each stage that did the work, so that its figures survive later skipped reruns),
``history`` (every run, in order), ``machine`` (:func:`compress.machine.describe_machine`), ``pipeline`` (the
run's settings) and ``updated``.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from compress.errors import InputError
from compress.io import atomic_write_json
from compress.machine import describe_machine, machine_text

STAGES = ("data", "compress", "evaluate", "export", "bench", "release")
RECORD = "pipeline.json"
#: beside a bench target's tables: what they were measured from (manifest, models, settings, device)
STAMP = "pipeline_stamp.json"


def _read_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the JSON object in ``path``, None) or (None, why it is none); (None, None) when the file does not exist."""
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    except ValueError as exc:  # JSON and UTF-8 errors
        return None, f"not JSON: {exc}"
    return (data, None) if isinstance(data, dict) else (None, f"a JSON {type(data).__name__}, not an object")


def load_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` when it is missing, unreadable, not UTF-8 JSON or not an object
    (every file the pipeline reads is an object; :func:`json_problem` says which of these it was)."""
    return _read_object(Path(path))[0]


def json_problem(path: str | os.PathLike) -> str | None:
    """Why the existing file ``path`` is no JSON object (``None`` when it is one, or does not exist)."""
    return _read_object(Path(path))[1]


def mtime(path: Path) -> int | None:
    """Modification time of ``path`` in ns, or ``None`` when it does not exist."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def status_by_mtime(path: Path, before: int | None) -> str:
    """``skipped`` when ``path`` existed before a stage's command (mtime ``before``, ns) and that command left
    it untouched (the command's own skip-if-unchanged), else ``ran``."""
    return "skipped" if before is not None and mtime(path) == before else "ran"


def bench_is_current(out: Path, stamp: dict[str, Any]) -> bool:
    """Whether the bench tables in ``out`` were measured from ``stamp`` (same manifest and model sha256s, same
    settings, same device) and are complete, so the bench stage can skip that target."""
    lat = load_json(out / "latency.json") or {}
    return load_json(out / STAMP) == stamp and bool(lat.get("complete"))


def loadavg() -> list[float] | None:
    """1/5/15-minute load averages (runnable processes), rounded; ``None`` where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def record_stage(run_dir: Path, stage: str, result: dict[str, Any], pipeline: dict[str, Any]) -> None:
    """Add one stage run (``result``: status, detail, wall_s, finished, load_before/after) to
    ``run_dir/pipeline.json`` (module docstring), with this machine and the run's settings ``pipeline`` (merged
    into the recorded ones: a stage records only the settings it used)."""
    path = run_dir / RECORD
    rec, problem = _read_object(path)
    rec = rec or {}
    if problem:  # kept aside, not overwritten: it may still be read by hand
        aside = path.with_name(f"{RECORD}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        logging.getLogger(__name__).warning("%s was unreadable (%s); kept as %s, a new record started", path,
                                            problem, aside)
    rec.setdefault("stages", {})[stage] = result
    if result.get("status") == "ran":  # the figures of the last real run survive later skipped reruns
        rec.setdefault("last_ran", {})[stage] = result
    rec.setdefault("history", []).append({"stage": stage, **{k: result.get(k) for k in
                                          ("status", "wall_s", "finished", "load_before", "load_after")}})
    rec["machine"] = describe_machine()
    rec["pipeline"] = {**(rec.get("pipeline") if isinstance(rec.get("pipeline"), dict) else {}), **pipeline}
    rec["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, rec)


def read_record(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``RUN/pipeline.json`` as its readers use it, or (None, why not) / (None, None) when it is missing:
    ``stages`` and ``last_ran`` hold only stage entries that are objects, and an entry's ``wall_s`` only a
    number (a record edited or written by other code must not crash the release or ``--timings``)."""
    rec, problem = _read_object(Path(run_dir) / RECORD)
    if rec is None:
        return None, problem
    for key in ("stages", "last_ran"):
        entries = rec.get(key) if isinstance(rec.get(key), dict) else {}
        rec[key] = {s: ({**r, "wall_s": r["wall_s"]} if isinstance(r.get("wall_s"), (int, float))
                        and not isinstance(r.get("wall_s"), bool) else {**r, "wall_s": None})
                    for s, r in entries.items() if isinstance(r, dict)}
    return rec, None


def timings_markdown(run_dir: Path) -> str:
    """Markdown table of the last real run of each stage (``last_ran`` of ``RUN/pipeline.json``): wall time (s),
    when it finished, load averages before and after. Raises :class:`InputError` when the run has no record or
    an unreadable one (the reason named)."""
    rec, problem = read_record(Path(run_dir))
    if rec is None:
        raise InputError(f"{Path(run_dir) / RECORD}: {problem}; expected the pipeline's record" if problem else
                         f"{run_dir}: no {RECORD}; run the pipeline on it first")
    ran, last = rec["last_ran"], rec["stages"]
    lines = [f"Run folder `{run_dir}`, machine: {machine_text(rec.get('machine'))}.", "",
             "| stage | wall time | finished | load avg (1/5/15 min) before | after | last run |",
             "|---|---|---|---|---|---|"]
    total = 0.0
    for s in STAGES:
        r = ran.get(s)
        if r is None and s not in last:
            continue
        w = r["wall_s"] if r else None   # a number or None (read_record)
        total += w or 0.0
        fmt = (lambda la: "/".join(f"{x:.1f}" for x in la)
               if isinstance(la, list) and la and all(isinstance(x, (int, float)) for x in la) else "-")
        wall = "-" if w is None else (f"{w:.0f} s" if w < 120 else f"{w:.0f} s ({w / 60:.1f} min)")
        lines.append(f"| {s} | {wall} | {(r or {}).get('finished', '-')} | {fmt((r or {}).get('load_before'))} | "
                     f"{fmt((r or {}).get('load_after'))} | {last.get(s, {}).get('status', '-')} |")
    lines.append(f"| **total** | **{total:.0f} s ({total / 60:.1f} min)** | | | | |")
    return "\n".join(lines) + "\n"
