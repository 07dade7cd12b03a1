"""The pipeline's stages and their runner: each stage is the project's own command on the previous stage's output.

:class:`Pipeline` runs the stages of a :class:`PipelineConfig` in order (``data`` -> ``compress`` -> ``evaluate`` ->
``export`` -> ``bench`` -> ``release``; the table of commands and skip rules is in :mod:`bench.pipeline.cli`),
each as a subprocess so that it can also be run alone by hand, and records every run with
:func:`bench.pipeline.record.record_stage`.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.pipeline.phone import DEFAULT_ADB_PORT, detect_phone
from bench.pipeline.record import (STAGES, STAMP, bench_is_current, load_json, loadavg, mtime, record_stage,
                                   status_by_mtime)
from bench.profiles import HOST, get_profile
from bench.results import BenchError
from bench.virtual_session import VirtualSession
from compress.children import CLEANUP_GRACE_S, run_until_done
from compress.errors import InputError
from compress.io import atomic_write_json, replace_dir, sha256_file
from compress.run_files import CHECKPOINT, METRICS, longest_step_seconds
from export.original import INIT, original_dir, read_original

REPO = Path(__file__).resolve().parents[2]

# Host and virtual-device runs share this machine's few cores: 2 threads, no cool-down (no phone to cool).
NO_PHONE_BENCH_ARGS = ["--threads", "2", "--cooldown", "0"]
#: The release's latency is measured at the phone's input size, whatever the training size (paper Table 3:
#: 256 x 256); generators with a fixed size (DCGAN) keep theirs.
DEFAULT_INPUT_SIZE = 256
#: ``--original-weights`` value that leaves the original out (no export, no bench).
NO_ORIGINAL = "none"


@dataclass
class PipelineConfig:
    """Everything the pipeline needs; the CLI flags map one to one (see :func:`bench.pipeline.cli.build_parser`)."""

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
    strict_gates: bool = False              # False: --accept-gate-failure when a release follows (it lists misses)
    device: str = "sm8450"                  # phone profile; "host" = host CPU only
    phone: str = "auto"                     # auto: bench on the phone if attached; never: host + virtual
    serial: str | None = None
    bench_args: list[str] = field(default_factory=list)
    release_dir: Path = Path("release")
    input_size: int | None = DEFAULT_INPUT_SIZE   # None: the training size
    original: str = INIT                    # the original's weights: init, a baseline run, a .pt, or none
    python: str = sys.executable

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.data_dir = Path(self.data_dir)
        self.release_dir = Path(self.release_dir)


def resolve_preset(preset: str) -> str:
    """``auto`` -> ``paper`` when a CUDA GPU is present, else ``small``; other values pass through."""
    if preset != "auto":
        return preset
    import torch

    return "paper" if torch.cuda.is_available() else "small"


def aside_bench_dir(out: Path, what: str) -> Path:
    """``.<name>.<what>`` beside a bench target's folder ``out``: the last complete tables while a new bench runs
    (``prev``), or a failed attempt's (``failed``). Hidden: the release reads only the targets' own folders."""
    return out.with_name(f".{out.name}.{what}")


#: A slow disk's write speed (bytes/s; a hard disk or a network folder) for the time a checkpoint write may take.
SLOW_DISK_BYTES_PER_S = 50e6


class StageFailed(RuntimeError):
    """A stage's command failed; the message says which and how. ``exit_code``: 2 when the command refused its
    input (it exited 2: the pipeline then exits 2 too), else 1."""

    def __init__(self, message: str, rc: int | None = None):
        super().__init__(message)
        self.exit_code = 2 if rc == 2 else 1


class Pipeline:
    """Runs the stages of :class:`PipelineConfig` and records them in ``RUN/pipeline.json``."""

    def __init__(self, cfg: PipelineConfig, echo: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.echo = echo or (lambda s: print(s, flush=True))
        self.preset = resolve_preset(cfg.preset)
        self.stages: tuple[str, ...] = tuple(STAGES)  # what this run() does: export accepts misses only for a release
        self.env = dict(os.environ)
        # bench/, compress/... importable by the subprocesses even without the editable install
        self.env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [self.env.get("PYTHONPATH")] if p])

    # -- record -------------------------------------------------------------------------------------
    #: The pipeline settings each stage uses (recorded by that stage only: ``make bench SIZE=128`` runs no export,
    #: so it must not record 128 as the run's export size).
    STAGE_SETTINGS = {"export": ("dtype", "input_size", "original"), "bench": ("device", "original")}

    def run_settings(self, stage: str | None = None) -> dict[str, Any]:
        """What the stage records say the run is: model, dataset, target and preset from the run's own
        ``config.json`` once compress wrote it (``make export RUN=<a pix2pix run>`` records pix2pix, not the
        command line's defaults), else from the pipeline's settings; and the settings ``stage`` used
        (:data:`STAGE_SETTINGS`; every stage's when ``stage`` is None)."""
        conf = load_json(self.cfg.run_dir / "config.json") or {}
        mine = {"model": self.cfg.model, "dataset": self.cfg.dataset, "target": self.cfg.target,
                "preset": self.preset}
        used = {"device": self.cfg.device, "dtype": self.cfg.dtype, "input_size": self.cfg.input_size,
                "original": self.cfg.original}
        keys = used if stage is None else self.STAGE_SETTINGS.get(stage, ())
        return {"run_dir": str(self.cfg.run_dir), **{k: conf.get(k, v) for k, v in mine.items()},
                **{k: used[k] for k in keys}}

    def _record(self, stage: str, result: dict[str, Any]) -> None:
        record_stage(self.cfg.run_dir, stage, result, self.run_settings(stage))

    def _sh(self, cmd: list[str], grace_s: float | Callable[[], float] = CLEANUP_GRACE_S) -> int:
        """Run a stage's command (echoed first); returns its exit status. A Ctrl-C or SIGTERM of the pipeline
        reaches the command, which gets ``grace_s`` seconds to clean up
        (:func:`compress.children.run_until_done`)."""
        self.echo("+ " + " ".join(cmd))
        return run_until_done(cmd, self.env, grace_s)

    def _compress_grace_s(self) -> float:
        """Seconds compress gets after a Ctrl-C / SIGTERM: it finishes the step in progress, then writes a
        checkpoint. So on top of the usual grace: twice the longest step it has logged (``metrics.jsonl``), and
        the time to write its last checkpoint again at :data:`SLOW_DISK_BYTES_PER_S` (a paper-preset search
        checkpoint holds the hypernetwork and its Adam state: gigabytes)."""
        run = self.cfg.run_dir
        step_s = longest_step_seconds(run / METRICS) or 0.0
        try:
            checkpoint_bytes = (run / CHECKPOINT).stat().st_size
        except OSError:
            checkpoint_bytes = 0
        return CLEANUP_GRACE_S + 2 * step_s + checkpoint_bytes / SLOW_DISK_BYTES_PER_S

    # -- stages ---------------------------------------------------------------------------------------
    def stage_data(self) -> dict[str, Any]:
        """Fetch the dataset (mirror or official source) into ``data_dir``; fetch skips a verified copy.

        Returns the stage record (``status`` ``ran``/``skipped``, ``detail``). Raises :class:`InputError` for a
        ``--dataset`` that is neither a known name nor a folder, :class:`StageFailed` when the fetch fails."""
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
            raise StageFailed(f"data: `python -m compress.data fetch {spec.name}` exited {rc}", rc)
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
        """The arguments of ``python -m compress`` for this pipeline's model, dataset, target and preset (plus
        ``--compress-arg`` values), without ``--run-dir``."""
        return ["--model", self.cfg.model, "--dataset", self._dataset_arg(), "--target", str(self.cfg.target),
                "--preset", self.preset, *self.cfg.compress_args]

    def expected_config(self) -> dict[str, Any]:
        """The config.json that ``python -m compress`` writes for :meth:`compress_argv`."""
        from compress.cli import build_parser, config_from_args

        return config_from_args(build_parser().parse_args(self.compress_argv())).to_dict()

    def stage_compress(self) -> dict[str, Any]:
        """Run ``python -m compress`` into the run folder: skipped when it holds a finished run of this config,
        resumed from ``checkpoints/last.pt`` when one was started. Returns the stage record.

        Raises:
            InputError: the run folder holds a run of another config.
            StageFailed: compress exited non-zero (``exit_code`` 2 when it refused its input).
        """
        run = self.cfg.run_dir
        want = self.expected_config()
        have = load_json(run / "config.json")
        finished = all((run / n).is_file() for n in ("generator.pt", "architecture.json", "compression_report.json"))
        started = (run / CHECKPOINT).is_file()
        if (finished or started) and have is not None and have != want:
            diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            raise InputError(f"{run} holds a compress run with another config (differs in {', '.join(diff)}); "
                             "choose another RUN / --run-dir or remove that folder")
        if finished and have == want:
            return {"status": "skipped", "detail": f"{run}/generator.pt is finished for this config"}
        base = [self.cfg.python, "-m", "compress"]
        cmd = base + (["--resume", "--run-dir", str(run)] if started else [*self.compress_argv(), "--run-dir", str(run)])
        rc = self._sh(cmd, self._compress_grace_s)
        if rc != 0:
            raise StageFailed(f"compress exited {rc} (log: {run / 'log.txt'})", rc)
        return {"status": "ran", "detail": "resumed from checkpoints/last.pt" if started else "new run"}

    def _need_run(self, stage: str) -> None:
        if not (self.cfg.run_dir / "generator.pt").is_file():
            raise StageFailed(f"{stage}: {self.cfg.run_dir} has no finished compress run (generator.pt); "
                              "run the compress stage first")

    def stage_evaluate(self) -> dict[str, Any]:
        """FID/KID of the finished run (``python -m compress.evaluate RUN``, which skips an unchanged evaluation);
        ``unavailable`` when this checkout lacks ``compress.evaluate``. Returns the stage record.
        Raises :class:`StageFailed` without a finished run, when evaluate fails or writes no evaluation.json."""
        self._need_run("evaluate")
        if importlib.util.find_spec("compress.evaluate") is None:
            return {"status": "unavailable", "detail": "compress.evaluate is not installed in this checkout; "
                    "no FID in the release"}
        out = self.cfg.run_dir / "evaluation.json"
        before = mtime(out)
        rc = self._sh([self.cfg.python, "-m", "compress.evaluate", str(self.cfg.run_dir), *self.cfg.evaluate_args])
        if rc != 0:
            raise StageFailed(f"evaluate: `python -m compress.evaluate {self.cfg.run_dir}` exited {rc}", rc)
        if not out.is_file():
            raise StageFailed(f"evaluate exited 0 but wrote no {out}")
        return {"status": status_by_mtime(out, before), "detail": str(out)}

    @property
    def manifest_path(self) -> Path:
        """The compressed generator's export manifest, ``RUN/export/manifest.json``."""
        return self.cfg.run_dir / "export" / "manifest.json"

    @property
    def original_manifest_path(self) -> Path | None:
        """The original's export manifest (``RUN/original/export/manifest.json``), None with ``--original-weights
        none``."""
        if self.cfg.original == NO_ORIGINAL:
            return None
        return original_dir(self.cfg.run_dir) / "export" / "manifest.json"

    def export_size_args(self) -> list[str]:
        """``--input-size S`` when the run's generator takes an image (:func:`export.inputs.takes_image_input`),
        else nothing: a generator with a fixed size (DCGAN) is exported at that size."""
        if self.cfg.input_size is None:
            return []
        from compress.artifacts import load_architecture
        from export.inputs import takes_image_input

        arch = load_architecture(self.cfg.run_dir)
        return ["--input-size", str(self.cfg.input_size)] if takes_image_input(arch) else []

    def export_commands(self) -> list[list[str]]:
        """``python -m export RUN ...`` for the compressed generator, then the same with ``--original`` (unless
        ``--original-weights none``). Alone (``make export``) the compressed generator's gates fail loudly; an
        original with initialised weights (latency only) is always exported with ``--accept-gate-failure``."""
        cmd = [self.cfg.python, "-m", "export", str(self.cfg.run_dir), "--dtype", self.cfg.dtype,
               *self.export_size_args()]
        if not self.cfg.strict_gates and "release" in self.stages:  # alone (make export): the gates fail loudly
            cmd.append("--accept-gate-failure")
        cmd += self.cfg.export_args
        if self.cfg.original == NO_ORIGINAL:
            return [cmd]
        original = cmd + ["--original", "--original-weights", self.cfg.original]
        if self.cfg.original == INIT:
            # initialised weights are timed, not judged: their PSNR is no quality figure (the release lists misses),
            # so nothing is kept in float for it either: its int8 file is all int8, like the compressed one it is
            # compared with (a float convolution chosen by the PSNR of random weights would skew the speed-up)
            if "--accept-gate-failure" not in original:
                original.append("--accept-gate-failure")
            if not any(a.startswith("--int8-target-db") for a in original):
                original += ["--int8-target-db", "0"]
        return [cmd, original]

    def stage_export(self) -> dict[str, Any]:
        """Run :meth:`export_commands` (the compressed generator, then the original). Returns the stage record,
        with accepted gate misses in its detail. Raises :class:`StageFailed` without a finished run or when an
        export exits non-zero (1: a gate missed without ``--accept-gate-failure``, or the export failed; 2: bad
        input; 130/143: interrupted)."""
        self._need_run("export")
        details, statuses = [], []
        for cmd, path, who in zip(self.export_commands(), (self.manifest_path, self.original_manifest_path),
                                  ("compressed", "original")):
            before = mtime(path)
            rc = self._sh(cmd)
            if rc != 0:
                why = {1: "a quality gate was missed (figures above) or the export failed (its error above)",
                       2: "bad input; its error above", 130: "interrupted (Ctrl-C)",
                       143: "terminated (SIGTERM)"}.get(rc, "see its output above")
                raise StageFailed(f"export of the {who} generator exited {rc} ({why})", rc)
            man = load_json(path) or {}
            statuses.append(status_by_mtime(path, before))
            if who == "original" and ((read_original(self.cfg.run_dir) or {}).get("weights") or {}).get("latency_only"):
                details.append("original: initialised weights (latency only)")
            else:
                details.append(f"{who}: " + ("gates passed" if man.get("gates_passed") else
                                             "GATES MISSED (accepted): " + "; ".join(man.get("gate_failures") or [])))
        return {"status": "ran" if "ran" in statuses else "skipped", "detail": "; ".join(details)}

    # -- bench ----------------------------------------------------------------------------------------
    def bench_targets(self) -> list[dict[str, Any]]:
        """Where to bench: ``[{"kind": "phone", "serial"}]`` when a matching phone is attached, else host and
        virtual (just host for ``--device host``). Raises :class:`StageFailed` with ``--phone require`` and no
        matching phone, :class:`compress.errors.InputError` for an unknown ``--device`` profile or a ``--serial``
        that names no attached matching phone."""
        if self.cfg.device == HOST:
            return [{"kind": "host", "name": "host"}]
        key = get_profile(self.cfg.device)["key"]  # a plain name (a profile file's path is not): RUN/bench/<key>
        if self.cfg.phone != "never":
            serial = detect_phone(self.cfg.device, self.cfg.serial)
            if serial:
                return [{"kind": "phone", "name": key, "serial": serial}]
            if self.cfg.serial:   # a phone named by the user is not there: its figures must not be the host's
                raise InputError(f"--serial {self.cfg.serial} (make: SERIAL=...): no attached phone with this serial "
                                 f"matches --device {self.cfg.device} on the default adb server (adb devices); "
                                 "expected the serial of an attached phone, or leave SERIAL out to bench on the "
                                 "host and the virtual device")
            if self.cfg.phone == "require":
                raise StageFailed(f"bench: no attached phone matches --device {self.cfg.device}")
        return [{"kind": "host", "name": "host"}, {"kind": "virtual", "name": f"{key}-virtual"}]

    def bench_settings(self, target: dict[str, Any]) -> list[str]:
        """The bench flags for ``target``: the no-phone defaults (2 threads, no cooldown) off a phone, then the
        ``--bench-arg`` values (part of the skip stamp)."""
        base = [] if target["kind"] == "phone" else list(NO_PHONE_BENCH_ARGS)
        return base + list(self.cfg.bench_args)

    def bench_manifests(self) -> list[Path]:
        """The export manifests to bench, the original's first (the speed-up reference) when it was exported.
        Raises :class:`StageFailed` when the compressed generator's is missing or a file differs from its entry."""
        paths = [p for p in (self.original_manifest_path, self.manifest_path) if p is not None]
        found = []
        for path in paths:
            man = load_json(path)
            if not man or not man.get("files"):
                if path == self.manifest_path:
                    raise StageFailed(f"bench: no export manifest at {path}; run the export stage first")
                continue
            for e in man["files"]:
                if Path(str(e.get("path"))).name != e.get("path"):
                    raise StageFailed(f"bench: {path} lists {e.get('path')!r}; an export manifest lists bare file "
                                      "names of its own folder; re-export")
                p = path.parent / e["path"]
                if str(e["path"]).endswith(".tflite") and (not p.is_file() or sha256_file(p) != e.get("sha256")):
                    raise StageFailed(f"bench: {p} is missing or differs from its manifest entry; re-export")
            found.append(path)
        return found

    def bench_stamp(self, target: dict[str, Any], manifests: list[Path]) -> dict[str, Any]:
        """What the bench tables of ``target`` were measured from (skip-if-unchanged): the manifests' and model
        files' SHA-256, the bench flags, the device and target. Files of the run are named by their place in it,
        so that the same run reached as ``runs/main``, ``$PWD/runs/main`` or after a move is the same stamp."""
        run_root = self.cfg.run_dir.resolve()

        def key(path: Path) -> str:
            path = path.resolve()
            return path.relative_to(run_root).as_posix() if path.is_relative_to(run_root) else str(path)

        models = {key(m.parent / e["path"]): e.get("sha256") for m in manifests
                  for e in load_json(m)["files"] if str(e["path"]).endswith(".tflite")}
        return {"manifest_sha256": {key(m): sha256_file(m) for m in manifests}, "models": models,
                "settings": self.bench_settings(target), "device": self.cfg.device, "kind": target["kind"],
                "serial": target.get("serial")}

    def stage_bench(self) -> dict[str, Any]:
        """Bench the exported files on every :meth:`bench_targets` target into ``RUN/bench/<target>``: skipped when
        the stamp matches, else benched in place (an interrupted bench resumes) with the last complete tables kept
        in ``.<target>.prev`` and put back when the rerun fails. Returns the stage record; exit 1 of bench (rows
        flagged as failed) is kept. Raises :class:`StageFailed` when bench exits 2 or more."""
        manifests = self.bench_manifests()
        reference = (load_json(manifests[0]) or {}).get("model") if len(manifests) > 1 else None
        targets = self.bench_targets()
        results, worst = [], 0
        for t in targets:
            out = self.cfg.run_dir / "bench" / t["name"]
            settings = self.bench_settings(t)
            stamp = self.bench_stamp(t, manifests)
            if bench_is_current(out, stamp):
                results.append(f"{t['name']}: skipped (unchanged)")
                continue
            # Benched in place (bench resumes an interrupted run there: same files, settings and device), with the
            # last complete tables kept aside until this run completes, and put back if it fails.
            prev = aside_bench_dir(out, "prev")
            if (load_json(out / "latency.json") or {}).get("complete"):
                if prev.exists():
                    shutil.rmtree(prev)
                shutil.copytree(out, prev)
            out.mkdir(parents=True, exist_ok=True)
            (out / STAMP).unlink(missing_ok=True)
            rc = self._bench_one(t, out, manifests, reference, settings)
            # 0 all rows measured, 1 some rows flagged as failed (kept: the release shows them)
            if rc in (0, 1):
                atomic_write_json(out / STAMP, stamp)
                shutil.rmtree(prev, ignore_errors=True)
                results.append(f"{t['name']}: exit {rc}")
            elif prev.exists():
                failed = replace_dir(out, aside_bench_dir(out, "failed"))
                replace_dir(prev, out)
                results.append(f"{t['name']}: exit {rc} (the earlier complete tables are kept; this attempt's "
                               f"tables and logs: {failed})")
            else:
                results.append(f"{t['name']}: exit {rc}")
            worst = max(worst, rc)
        status = "skipped" if all(r.endswith("skipped (unchanged)") for r in results) else "ran"
        if worst >= 2:
            raise StageFailed("bench: " + "; ".join(results), worst)
        return {"status": status, "detail": "; ".join(results), "targets": [t["kind"] for t in targets]}

    def _bench_one(self, target: dict[str, Any], out: Path, manifests: list[Path], reference: str | None,
                   settings: list[str]) -> int:
        script = str(REPO / "bench" / "run_adb.py")
        models = ["--models", *map(str, manifests)] + (["--reference", reference] if reference else [])
        if target["kind"] == "host":
            return self._sh([self.cfg.python, script, "--device", HOST, *models, "--out", str(out), *settings])
        if target["kind"] == "phone":
            return self._sh([self.cfg.python, script, "--device", self.cfg.device, "--serial", target["serial"],
                             "--adb-port", str(DEFAULT_ADB_PORT), *models, "--out", str(out), *settings])
        try:
            with VirtualSession(self.cfg.device) as vs:
                self.echo(f"virtual {self.cfg.device} on {vs.serial}, private adb server on port {vs.port}")
                return self._sh([self.cfg.python, script, "--device", self.cfg.device, "--serial", vs.serial,
                                 "--adb-port", str(vs.port), *models, "--out", str(out), *settings])
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            self.echo(f"virtual device session failed: {e}")
            return 3

    def stage_release(self) -> dict[str, Any]:
        """Build the release folder (:func:`bench.pipeline.release.build_release`); returns the stage record.
        Raises :class:`compress.errors.InputError` when the run folder holds no finished run."""
        # imported here, not at the top: `python -m bench.pipeline.release` must not find its module already
        # imported by the package (runpy would run a second copy)
        from bench.pipeline.release import build_release

        dest = build_release(self.cfg.run_dir, self.cfg.release_dir)
        return {"status": "ran", "detail": str(dest)}

    # -- driver ---------------------------------------------------------------------------------------
    def run(self, stages: Sequence[str] = STAGES) -> int:
        """Run ``stages`` in pipeline order; returns the exit status: 0 every stage ran or was skipped, 1 a stage
        failed, 2 a stage's command refused its input (exit 2: a bad flag passed through, e.g. ``--export-arg``);
        later stages that need the failed one's output are not run, the release is still built when its inputs
        exist. Raises :class:`InputError` for bad input (a stage's settings or the run folder)."""
        order = [s for s in STAGES if s in stages]
        self.stages = tuple(order)
        failed: str | None = None
        code = 0
        for stage in order:
            if failed and stage != "release":
                self.echo(f"== {stage}: not run ({failed} failed)")
                continue
            if stage == "release" and not (self.cfg.run_dir / "compression_report.json").is_file():
                if order == ["release"]:  # asked for alone: the run folder is the bad input
                    raise InputError(f"release: {self.cfg.run_dir} holds no finished compress run "
                                     "(compression_report.json); expected the run folder of a finished "
                                     "`python -m compress` (--run-dir)")
                self.echo("== release: not built (no finished compress run)")
                continue
            self.echo(f"== {stage}")
            load0, t0 = loadavg(), time.perf_counter()
            try:
                res = getattr(self, f"stage_{stage}")()
            except StageFailed as e:
                res = {"status": "failed", "detail": str(e)}
                failed, code = stage, max(code, e.exit_code)
            res.update(wall_s=round(time.perf_counter() - t0, 2), load_before=load0, load_after=loadavg(),
                       finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            self._record(stage, res)
            self.echo(f"== {stage}: {res['status']} in {res['wall_s']:.1f} s - {res.get('detail', '')}")
        return code
