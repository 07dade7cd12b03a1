"""The main job as one pipeline: data -> compress -> evaluate -> export/quantize -> bench -> release.

``python -m bench.pipeline [STAGE ...] [--run-dir runs/main] [options]`` (``make pipeline`` runs all stages;
``make compress|evaluate|export|bench|release`` one). Each stage is the project's own command on the previous
stage's output, run as a subprocess so that it can also be run alone by hand:

=========  ==============================================================  =====================================
stage      command                                                         skipped when
=========  ==============================================================  =====================================
data       ``python -m compress.data fetch NAME --dest DATA_DIR``          fetch finds a verified copy (its own)
compress   ``python -m compress --model M --dataset D --target T           RUN holds a finished generator.pt
           --preset P --run-dir RUN [extra]`` (``--resume`` after a stop)  whose config.json is this config
evaluate   ``python -m compress.evaluate RUN [extra]``                     its own skip-if-unchanged
export     ``python -m export RUN --dtype all --accept-gate-failure``      its own skip-if-unchanged (manifest)
bench      ``python bench/run_adb.py --device sm8450 --models MANIFEST``   same manifest sha256s, same settings,
           on the attached phone; without one ``--device host`` and the    same device (stamp file in the
           virtual device (private adb server on 127.0.0.1)                output folder), complete tables
release    :func:`bench.release.build_release` (``python -m bench.release``) never (cheap; always rebuilt)
=========  ==============================================================  =====================================

Phone detection: ``adb devices`` on the default adb server (port 5037; started like ``adb devices`` does, and
nothing else), ignoring virtual devices; a phone whose getprop matches the ``--device`` profile is benched. With
none, bench runs on the host CPU and on a virtual device: those rows are labelled ``host`` / ``virtual`` and are
never phone figures.

Every stage run is recorded in ``RUN/pipeline.json``: ``stages`` (the last run of each stage: status
ran/skipped/failed/unavailable, wall seconds, detail, load average before and after), ``last_ran`` (the last run
of each stage that did the work) and ``history``; the release index shows them. Exit status: 0 every requested stage
ran or was skipped, 1 a stage failed (later stages that need its output are not run; the release is still
built when its inputs exist), 2 bad input.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from compress.errors import InputError
from compress.io import atomic_write_json
from compress.io import sha256_file

LOG = logging.getLogger("coronetgan.pipeline")

STAGES = ("data", "compress", "evaluate", "export", "bench", "release")
REPO = Path(__file__).resolve().parents[1]
RECORD = "pipeline.json"
STAMP = "pipeline_stamp.json"
DEFAULT_ADB_PORT = 5037

# Host and virtual-device runs share this machine's few cores: 2 threads, no cool-down (no phone to cool).
NO_PHONE_BENCH_ARGS = ["--threads", "2", "--cooldown", "0"]


@dataclass
class PipelineConfig:
    """Everything the pipeline needs; the CLI flags map one to one (see :func:`build_parser`)."""

    run_dir: Path = Path("runs/main")
    model: str = "cyclegan"
    dataset: str = "horse2zebra"
    target: float = 0.75
    preset: str = "auto"                    # auto: paper when CUDA is available, else small
    data_dir: Path = Path("data")
    compress_args: list[str] = field(default_factory=list)
    evaluate_args: list[str] = field(default_factory=list)
    dtype: str = "all"
    export_args: list[str] = field(default_factory=list)
    strict_gates: bool = False              # False: --accept-gate-failure, the release lists the misses
    device: str = "sm8450"                  # phone profile; "host" = host CPU only
    phone: str = "auto"                     # auto: bench on the phone if attached; never: host + virtual
    serial: str | None = None
    bench_args: list[str] = field(default_factory=list)
    release_dir: Path = Path("release")
    python: str = sys.executable

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.data_dir = Path(self.data_dir)
        self.release_dir = Path(self.release_dir)


# --------------------------------------------------------------------------------------------------------
# helpers
def resolve_preset(preset: str) -> str:
    """``auto`` -> ``paper`` when a CUDA GPU is present, else ``small``; other values pass through."""
    if preset != "auto":
        return preset
    import torch

    return "paper" if torch.cuda.is_available() else "small"


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """This machine in a few words (for the record and the release index)."""
    info: dict[str, Any] = {"host": platform.node(), "cpu": platform.processor() or platform.machine(),
                            "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
                            "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
        info["memory_gb"] = round(int(mem[1]) / 1024 ** 2, 1)
    except (OSError, IndexError, ValueError):
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # pragma: no cover - torch always importable here
        pass
    return info


def machine_text(m: dict[str, Any] | None) -> str:
    if not m:
        return "unknown machine"
    text = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    if m.get("memory_gb"):
        text += f", {m['memory_gb']} GB RAM"
    if m.get("gpu"):
        text += f", GPU {m['gpu']}"
    return text + f" ({m.get('host', '?')})"


class StageFailed(RuntimeError):
    """A stage's command failed; the message says which and how."""


# --------------------------------------------------------------------------------------------------------
class Pipeline:
    """Runs the stages of :class:`PipelineConfig` and records them in ``RUN/pipeline.json``."""

    def __init__(self, cfg: PipelineConfig, echo: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.echo = echo or (lambda s: print(s, flush=True))
        self.preset = resolve_preset(cfg.preset)
        self.env = dict(os.environ)
        # bench/, compress/... importable by the subprocesses even without the editable install
        self.env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [self.env.get("PYTHONPATH")] if p])

    # -- record -------------------------------------------------------------------------------------
    @property
    def record_path(self) -> Path:
        return self.cfg.run_dir / RECORD

    def _record(self, stage: str, result: dict[str, Any]) -> None:
        rec = _load_json(self.record_path) or {}
        rec.setdefault("stages", {})[stage] = result
        if result.get("status") == "ran":  # the figures of the last real run survive later skipped reruns
            rec.setdefault("last_ran", {})[stage] = result
        rec.setdefault("history", []).append({"stage": stage, **{k: result.get(k) for k in
                                              ("status", "wall_s", "finished", "load_before", "load_after")}})
        rec["machine"] = machine()
        rec["pipeline"] = {"run_dir": str(self.cfg.run_dir), "model": self.cfg.model, "dataset": self.cfg.dataset,
                           "target": self.cfg.target, "preset": self.preset, "device": self.cfg.device,
                           "dtype": self.cfg.dtype}
        rec["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.record_path, rec)

    def _sh(self, cmd: list[str]) -> int:
        self.echo("+ " + " ".join(cmd))
        return subprocess.run(cmd, env=self.env).returncode

    # -- stages ---------------------------------------------------------------------------------------
    def stage_data(self) -> dict[str, Any]:
        """Fetch the dataset (mirror or official source) into ``data_dir``; fetch skips a verified copy."""
        if Path(self.cfg.dataset).expanduser().exists():
            return {"status": "skipped", "detail": f"--dataset is a folder ({self.cfg.dataset}): nothing to fetch"}
        from compress.data.catalog import find_spec

        spec = find_spec(self.cfg.dataset)
        if spec is None:
            raise InputError(f"--dataset {self.cfg.dataset!r}: not a known dataset name nor an existing folder")
        dest = self.cfg.data_dir
        present = (dest / spec.name).is_dir() or any((dest / f).is_dir() for f in spec.folders)
        rc = self._sh([self.cfg.python, "-m", "compress.data", "fetch", spec.name, "--dest", str(dest)])
        if rc != 0:
            raise StageFailed(f"data: `python -m compress.data fetch {spec.name}` exited {rc}")
        return {"status": "skipped" if present else "ran",
                "detail": f"{spec.name} in {dest}" + (" (verified copy already there)" if present else "")}

    def _dataset_arg(self) -> str:
        """The --dataset of compress: the name when data_dir is ./data (compress looks there first), else the
        fetched folder (or the given path)."""
        ds = self.cfg.dataset
        if Path(ds).expanduser().exists():
            return str(Path(ds).expanduser().resolve())
        if self.cfg.data_dir.resolve() == (Path.cwd() / "data").resolve():
            return ds
        from compress.data.catalog import find_spec

        spec = find_spec(ds)
        if spec is not None:
            for name in [spec.name, *spec.folders]:
                if (self.cfg.data_dir / name).is_dir():
                    return str((self.cfg.data_dir / name).resolve())
        return ds

    def compress_argv(self) -> list[str]:
        return ["--model", self.cfg.model, "--dataset", self._dataset_arg(), "--target", str(self.cfg.target),
                "--preset", self.preset, *self.cfg.compress_args]

    def expected_config(self) -> dict[str, Any]:
        """The config.json that ``python -m compress`` writes for :meth:`compress_argv`."""
        from compress.cli import build_parser, config_from_args

        return config_from_args(build_parser().parse_args(self.compress_argv())).to_dict()

    def stage_compress(self) -> dict[str, Any]:
        run = self.cfg.run_dir
        want = self.expected_config()
        have = _load_json(run / "config.json")
        finished = all((run / n).is_file() for n in ("generator.pt", "architecture.json", "compression_report.json"))
        started = (run / "checkpoints" / "last.pt").is_file()
        if (finished or started) and have is not None and have != want:
            diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            raise InputError(f"{run} holds a compress run with another config (differs in {', '.join(diff)}); "
                             "choose another RUN / --run-dir or remove that folder")
        if finished and have == want:
            return {"status": "skipped", "detail": f"{run}/generator.pt is finished for this config"}
        base = [self.cfg.python, "-m", "compress"]
        cmd = base + (["--resume", "--run-dir", str(run)] if started else [*self.compress_argv(), "--run-dir", str(run)])
        rc = self._sh(cmd)
        if rc != 0:
            raise StageFailed(f"compress exited {rc} (log: {run / 'log.txt'})")
        return {"status": "ran", "detail": "resumed from checkpoints/last.pt" if started else "new run"}

    def _need_run(self, stage: str) -> None:
        if not (self.cfg.run_dir / "generator.pt").is_file():
            raise StageFailed(f"{stage}: {self.cfg.run_dir} has no finished compress run (generator.pt); "
                              "run the compress stage first")

    def stage_evaluate(self) -> dict[str, Any]:
        self._need_run("evaluate")
        if importlib.util.find_spec("compress.evaluate") is None:
            return {"status": "unavailable", "detail": "compress.evaluate is not installed in this checkout; "
                    "no FID in the release"}
        out = self.cfg.run_dir / "evaluation.json"
        before = _mtime(out)
        rc = self._sh([self.cfg.python, "-m", "compress.evaluate", str(self.cfg.run_dir), *self.cfg.evaluate_args])
        if rc != 0:
            raise StageFailed(f"evaluate: `python -m compress.evaluate {self.cfg.run_dir}` exited {rc}")
        if not out.is_file():
            raise StageFailed(f"evaluate exited 0 but wrote no {out}")
        return {"status": "skipped" if before is not None and _mtime(out) == before else "ran",
                "detail": str(out)}

    @property
    def manifest_path(self) -> Path:
        return self.cfg.run_dir / "export" / "manifest.json"

    def stage_export(self) -> dict[str, Any]:
        self._need_run("export")
        before = _mtime(self.manifest_path)
        cmd = [self.cfg.python, "-m", "export", str(self.cfg.run_dir), "--dtype", self.cfg.dtype]
        if not self.cfg.strict_gates:
            cmd.append("--accept-gate-failure")
        rc = self._sh(cmd + self.cfg.export_args)
        if rc != 0:
            raise StageFailed(f"export exited {rc} ({'a quality gate was missed' if rc == 1 else 'bad input'}; "
                              "figures above)")
        man = _load_json(self.manifest_path) or {}
        detail = "gates passed" if man.get("gates_passed") else "GATES MISSED (accepted): " + "; ".join(
            man.get("gate_failures") or [])
        return {"status": "skipped" if before is not None and _mtime(self.manifest_path) == before else "ran",
                "detail": detail}

    # -- bench ----------------------------------------------------------------------------------------
    def bench_targets(self) -> list[dict[str, Any]]:
        """Where to bench: ``[{"kind": "phone", "serial"}]`` when a matching phone is attached, else host and
        virtual (just host for ``--device host``)."""
        if self.cfg.device == "host":
            return [{"kind": "host", "name": "host"}]
        if self.cfg.phone != "never":
            serial = detect_phone(self.cfg.device, self.cfg.serial)
            if serial:
                return [{"kind": "phone", "name": self.cfg.device, "serial": serial}]
            if self.cfg.phone == "require":
                raise StageFailed(f"bench: no attached phone matches --device {self.cfg.device}")
        return [{"kind": "host", "name": "host"}, {"kind": "virtual", "name": f"{self.cfg.device}-virtual"}]

    def bench_settings(self, target: dict[str, Any]) -> list[str]:
        base = [] if target["kind"] == "phone" else list(NO_PHONE_BENCH_ARGS)
        return base + list(self.cfg.bench_args)

    def stage_bench(self) -> dict[str, Any]:
        man_path = self.manifest_path
        man = _load_json(man_path)
        if not man or not man.get("files"):
            raise StageFailed(f"bench: no export manifest at {man_path}; run the export stage first")
        root = man_path.parent
        models = {e["path"]: e.get("sha256") for e in man["files"] if str(e["path"]).endswith(".tflite")}
        for p in list(models):
            if not (root / p).is_file() or sha256_file(root / p) != models[p]:
                raise StageFailed(f"bench: {root / p} is missing or differs from its manifest entry; re-export")
        targets = self.bench_targets()
        results, worst = [], 0
        for t in targets:
            out = self.cfg.run_dir / "bench" / t["name"]
            settings = self.bench_settings(t)
            stamp = {"manifest_sha256": sha256_file(man_path), "models": models, "settings": settings,
                     "device": self.cfg.device, "kind": t["kind"], "serial": t.get("serial")}
            old = _load_json(out / STAMP)
            lat = _load_json(out / "latency.json") or {}
            if old == stamp and lat.get("complete"):
                results.append(f"{t['name']}: skipped (unchanged)")
                continue
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            rc = self._bench_one(t, out, settings)
            # 0 all rows measured, 1 some rows flagged as failed (kept: the release shows them)
            if rc in (0, 1):
                atomic_write_json(out / STAMP, stamp)
            worst = max(worst, rc)
            results.append(f"{t['name']}: exit {rc}")
        status = "skipped" if all(r.endswith("skipped (unchanged)") for r in results) else "ran"
        if worst >= 2:
            raise StageFailed("bench: " + "; ".join(results))
        return {"status": status, "detail": "; ".join(results), "targets": [t["kind"] for t in targets]}

    def _bench_one(self, target: dict[str, Any], out: Path, settings: list[str]) -> int:
        script = str(REPO / "bench" / "run_adb.py")
        models = ["--models", str(self.manifest_path)]
        if target["kind"] == "host":
            return self._sh([self.cfg.python, script, "--device", "host", *models, "--out", str(out), *settings])
        if target["kind"] == "phone":
            return self._sh([self.cfg.python, script, "--device", self.cfg.device, "--serial", target["serial"],
                             "--adb-port", str(DEFAULT_ADB_PORT), *models, "--out", str(out), *settings])
        from bench.results import BenchError
        from bench.virtual_session import VirtualSession

        try:
            with VirtualSession(self.cfg.device) as vs:
                self.echo(f"virtual {self.cfg.device} on {vs.serial}, private adb server on port {vs.port}")
                return self._sh([self.cfg.python, script, "--device", self.cfg.device, "--serial", vs.serial,
                                 "--adb-port", str(vs.port), *models, "--out", str(out), *settings])
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            self.echo(f"virtual device session failed: {e}")
            return 3

    def stage_release(self) -> dict[str, Any]:
        from bench.release import build_release

        dest = build_release(self.cfg.run_dir, self.cfg.release_dir)
        return {"status": "ran", "detail": str(dest)}

    # -- driver ---------------------------------------------------------------------------------------
    def run(self, stages: Sequence[str] = STAGES) -> int:
        """Run ``stages`` in pipeline order; returns the exit status (module docstring)."""
        order = [s for s in STAGES if s in stages]
        failed: str | None = None
        for stage in order:
            if failed and stage != "release":
                self.echo(f"== {stage}: not run ({failed} failed)")
                continue
            if stage == "release" and not (self.cfg.run_dir / "compression_report.json").is_file():
                self.echo("== release: not built (no finished compress run)")
                continue
            self.echo(f"== {stage}")
            load0, t0 = _loadavg(), time.perf_counter()
            try:
                res = getattr(self, f"stage_{stage}")()
            except StageFailed as e:
                res = {"status": "failed", "detail": str(e)}
                failed = stage
            res.update(wall_s=round(time.perf_counter() - t0, 2), load_before=load0, load_after=_loadavg(),
                       finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            self._record(stage, res)
            self.echo(f"== {stage}: {res['status']} in {res['wall_s']:.1f} s - {res.get('detail', '')}")
        return 1 if failed else 0


# --------------------------------------------------------------------------------------------------------
def detect_phone(profile: str, serial: str | None = None, port: int = DEFAULT_ADB_PORT) -> str | None:
    """Serial of the attached phone matching ``profile`` on the default adb server, else ``None``.

    Like ``adb devices``: starts the default server on ``port`` when none answers (nothing else), lists
    devices in state ``device``, skips virtual devices (``ro.coronetgan.virtual=1``) and returns the single one
    whose getprop matches the profile (``serial`` picks one of several). Any adb problem means "no phone".
    """
    try:
        from bench import adb_backend as ab
        from bench import profiles as prof

        p = prof.get_profile(profile)
        order = prof.load_profiles()["match_order"]
        c = ab.client("127.0.0.1", port, start=True)
        found = []
        for d in c.list():
            if d.state != "device" or (serial and d.serial != serial):
                continue
            props = ab.device_props(c.device(d.serial))
            if props.get("ro.coronetgan.virtual") == "1":
                continue
            if prof.matches(p, props, order):
                found.append(d.serial)
    except InputError:
        raise
    except Exception as e:  # no adb, no server, USB trouble: bench without a phone
        LOG.info("phone detection on adb port %d: %s", port, e)
        return None
    if len(found) > 1:
        raise InputError(f"--device {profile}: {len(found)} attached phones match ({', '.join(found)}); "
                         "pick one with --serial (make: SERIAL=...)")
    return found[0] if found else None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stages", nargs="*", metavar="STAGE",
                    help=f"stages to run, in pipeline order whatever the order given ({', '.join(STAGES)}; "
                         "default: all)")
    ap.add_argument("--run-dir", type=Path, help="run folder (default runs/main)")
    ap.add_argument("--latest", metavar="RUNS", help="use the newest finished run under RUNS as the run folder "
                    "(for evaluate/export/bench/release alone)")
    ap.add_argument("--model", default="cyclegan")
    ap.add_argument("--dataset", default="horse2zebra", help="dataset name (fetched by the data stage) or folder")
    ap.add_argument("--target", type=float, default=0.75, help="fraction of MACs to remove [0.75]")
    ap.add_argument("--preset", default="auto", choices=("auto", "paper", "small"),
                    help="auto: paper when CUDA is available, else small")
    ap.add_argument("--data-dir", type=Path, default=Path("data"), help="where the data stage puts datasets [data]")
    ap.add_argument("--compress-arg", action="append", default=[], metavar="FLAG",
                    help="extra flag for python -m compress (repeatable; = form: --compress-arg=--ngf=8)")
    ap.add_argument("--evaluate-arg", action="append", default=[], metavar="FLAG",
                    help="extra flag for python -m compress.evaluate (repeatable)")
    ap.add_argument("--dtype", default="all", help="export dtypes: fp32, fp16, int8 or all [all]")
    ap.add_argument("--export-arg", action="append", default=[], metavar="FLAG",
                    help="extra flag for python -m export (repeatable)")
    ap.add_argument("--strict-gates", action="store_true",
                    help="stop when an export quality gate is missed (default: accept, the release lists it)")
    ap.add_argument("--device", default="sm8450", help="phone profile for bench (sm8450, dimensity1200) or host")
    ap.add_argument("--phone", default="auto", choices=("auto", "never", "require"),
                    help="auto: the attached phone if any, else host + virtual device; never: host + virtual; "
                         "require: fail without a phone")
    ap.add_argument("--serial", help="adb serial of the phone (when several match)")
    ap.add_argument("--bench-arg", action="append", default=[], metavar="FLAG",
                    help="extra flag for bench/run_adb.py (repeatable; = form: --bench-arg=--runs=10)")
    ap.add_argument("--release-dir", type=Path, default=Path("release"), help="release root [release]")
    ap.add_argument("--timings", action="store_true",
                    help="print the wall time of each stage's last real run (Markdown, from RUN/pipeline.json) "
                         "and exit")
    return ap


def timings_markdown(run_dir: Path) -> str:
    """Markdown table of the last real run of each stage (``last_ran`` of ``RUN/pipeline.json``)."""
    rec = _load_json(Path(run_dir) / RECORD)
    if not rec:
        raise InputError(f"{run_dir}: no {RECORD}; run the pipeline on it first")
    ran, last = rec.get("last_ran") or {}, rec.get("stages") or {}
    lines = [f"Run folder `{run_dir}`, machine: {machine_text(rec.get('machine'))}.", "",
             "| stage | wall time | finished | load avg (1/5/15 min) before | after | last run |",
             "|---|---|---|---|---|---|"]
    total = 0.0
    for s in STAGES:
        r = ran.get(s)
        if r is None and s not in last:
            continue
        w = r["wall_s"] if r else None
        total += w or 0.0
        fmt = (lambda la: "/".join(f"{x:.1f}" for x in la) if la else "-")
        wall = "-" if w is None else (f"{w:.0f} s" if w < 120 else f"{w:.0f} s ({w / 60:.1f} min)")
        lines.append(f"| {s} | {wall} | {(r or {}).get('finished', '-')} | {fmt((r or {}).get('load_before'))} | "
                     f"{fmt((r or {}).get('load_after'))} | {last.get(s, {}).get('status', '-')} |")
    lines.append(f"| **total** | **{total:.0f} s ({total / 60:.1f} min)** | | | | |")
    return "\n".join(lines) + "\n"


def _split_flags(items: list[str]) -> list[str]:
    """``--compress-arg=--ngf=8`` style items -> argv pieces (``--ngf 8`` also accepted as one item)."""
    out: list[str] = []
    for it in items:
        out.extend(it.split())
    return out


def config_from_args(a: argparse.Namespace) -> PipelineConfig:
    if a.run_dir and a.latest:
        raise InputError("give --run-dir or --latest, not both")
    if a.latest:
        from export.__main__ import latest_run

        run_dir = latest_run(a.latest)
    else:
        run_dir = a.run_dir or Path("runs/main")
    return PipelineConfig(run_dir=run_dir, model=a.model, dataset=a.dataset, target=a.target, preset=a.preset,
                          data_dir=a.data_dir, compress_args=_split_flags(a.compress_arg),
                          evaluate_args=_split_flags(a.evaluate_arg), dtype=a.dtype,
                          export_args=_split_flags(a.export_arg), strict_gates=a.strict_gates, device=a.device,
                          phone=a.phone, serial=a.serial, bench_args=_split_flags(a.bench_arg),
                          release_dir=a.release_dir)


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        bad = [s for s in a.stages if s not in STAGES and s != "all"]
        if bad:
            raise InputError(f"stage {bad[0]!r}: expected one of {', '.join(STAGES)} or all")
        stages = STAGES if not a.stages or "all" in a.stages else a.stages
        cfg = config_from_args(a)
        if a.timings:
            print(timings_markdown(cfg.run_dir), end="")
            return 0
        return Pipeline(cfg).run(stages)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
