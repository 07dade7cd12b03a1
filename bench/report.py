"""The report of one bench run as it is measured: a row per model in the order given, rewritten after each one.

Rows not measured yet (or never, after an interrupt or abort) are ``not-run`` rows that say why, so the tables
written at any moment describe this run only and never hold an earlier run's figures.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import tables
from bench.models import ModelSpec
from bench.results import BenchSettings
from bench.rows import add_speedups, pending_row

IN_PROGRESS = "not measured yet (the run is in progress)"


class RunReport:
    """``data`` is the ``latency.json`` content; ``entries`` maps a model key to its ``(row, result)``.

    ``header`` holds the per-run fields (device, runner, config, ...); ``runner_version`` fills rows whose
    runner printed no version; ``backend`` gives the device timings; ``t_start`` is ``time.perf_counter()`` at
    the start of the run (for the overhead figures).
    """

    def __init__(self, specs: list[ModelSpec], out_dir: Path, cfg: BenchSettings, header: dict[str, Any],
                 reference: str | None, runner_version: str | None, backend: Any, t_start: float):
        self.specs, self.out_dir, self.cfg = specs, out_dir, cfg
        self.reference, self.runner_version, self.backend, self.t_start = reference, runner_version, backend, t_start
        self.entries: dict[str, tuple[dict, dict]] = {}
        self.data: dict[str, Any] = {**header, "rows": [], "results": [], "aborted": None, "interrupted": None,
                                     "timings": {}, "reference": None}

    @property
    def done(self) -> int:
        """Rows with a result (measured, reused or failed)."""
        return len(self.entries)

    def write(self, final: bool = False, why_missing: str = IN_PROGRESS) -> dict[str, str]:
        """Rebuild rows, speed-ups and timings and write the tables (the chart only when ``final``); returns the
        paths written (:func:`bench.tables.write_all`)."""
        d, figures = self.data, self.data["figures"]
        rows = []
        for s in self.specs:
            row = (dict(self.entries[s.key][0]) if s.key in self.entries
                   else pending_row(s, d["device_label"], figures, why_missing))
            row.update(speedup=None, speedup_basis=None, macs_ratio=None,
                       runner_version=row.get("runner_version") or self.runner_version)
            rows.append(row)
        d["reference"] = add_speedups(rows, self.reference)
        d["rows"] = rows
        d["results"] = [self.entries[s.key][1] for s in self.specs if s.key in self.entries]
        t = dict(getattr(self.backend, "timings", {}))
        # this run's runner time only: rows reused from an interrupted earlier run were timed by that run
        measured = [self.entries[s.key][1] for s in self.specs
                    if s.key in self.entries and not self.entries[s.key][0].get("reused")]
        runner_wall = sum(rep.get("wall_s") or 0.0 for r in measured for rep in r.get("repeats", []))
        t["runner_wall_s"] = runner_wall
        t["cooldown_s"] = self.cfg.cooldown_s * sum(max(0, len(r.get("repeats", [])) - 1) for r in measured)
        t["bench_total_s"] = time.perf_counter() - self.t_start
        t["overhead_s"] = t["bench_total_s"] - (runner_wall or t.get("runner_s", 0.0)) - t["cooldown_s"]
        d["timings"], d["device_cleaned"] = t, getattr(self.backend, "cleaned", None)
        d["complete"] = final and not d["aborted"] and self.done == len(self.specs)
        return tables.write_all(d, self.out_dir, chart=final)
