"""Bench a list of models on one device: pick the backend, run the protocol, write the latency tables.

:func:`bench_models` is what ``python bench/run_adb.py`` (:mod:`bench.cli`) runs, and what Python callers use
(``from bench import bench_models``).
"""
from __future__ import annotations

import logging
import math
import os
import re
import signal
import time
from pathlib import Path
from typing import Any, Sequence

from bench.host_check import check_models
from bench.models import ModelSpec, parse_model_args
from bench.profiles import HOST, check_device
from bench.results import BenchError, BenchSettings, Interrupted, ModelResult
from bench.report import RunReport
from bench.resume import device_identity, load_previous, reusable
from bench.rows import summarise
from compress.errors import InputError
from compress.io import sha256_file

log = logging.getLogger("bench")


#: What a bench run (and the pipeline's bench stage) writes in ``--out``; a temporary file of an atomic write is
#: named ``.<stem>.XXXX.tmp<suffix>`` after one of them (:func:`compress.io.atomic_path`).
OUT_NAMES = frozenset({"latency.md", "latency.csv", "latency.json", "latency.png", "log.txt", "logs",
                       ".virtual_runner", "pipeline_stamp.json"})
#: The first line of every bench ``log.txt``: how :func:`check_out_dir` tells bench's log from another command's.
LOG_HEADER = "# bench log (python bench/run_adb.py, coronetgan)"


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding files a bench run did not write (its ``log.txt``
    would be overwritten: e.g. a run folder given instead of ``RUN/bench/host``).

    Raises:
        InputError: names the folder and up to three of the foreign entries.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputError(f"--out {out_dir}: a file; expected a folder for latency.{{md,csv,json,png}} and logs/")
    foreign = sorted(p.name for p in out_dir.iterdir()
                     if p.name not in OUT_NAMES and not any(p.name.startswith(f".{Path(n).stem}.") for n in OUT_NAMES))
    log_txt = out_dir / "log.txt"
    if log_txt.is_file() and not _is_bench_log(log_txt):
        foreign.insert(0, "a log.txt of another command")
    if foreign:
        raise InputError(f"--out {out_dir}: holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
                         "which a bench run did not write (its log.txt and logs/ would be replaced); expected a "
                         "new or empty folder, or the --out of an earlier bench run")


#: The first line of a bench ``log.txt`` written before :data:`LOG_HEADER` existed (its first record).
_OLD_FIRST_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO bench: device: ")


def _is_bench_log(path: Path) -> bool:
    """Whether ``path`` is the ``log.txt`` of a bench run: beside its ``latency.json``, empty, or starting with
    :data:`LOG_HEADER` (or with the device record that was a bench log's first line before it)."""
    if (path.parent / "latency.json").is_file():
        return True
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    except OSError:
        return False
    return not first or first.rstrip("\n") == LOG_HEADER or _OLD_FIRST_LINE.match(first) is not None


def _open_backend(device: str, serial: str | None, virtual: bool, runner: str | None, runner_kind: str,
                  adb_host: str, adb_port: int | None, connect: str | None, out_dir: Path):
    """``(backend, device label, figures, runner info, virtual session or None)`` for ``device``.

    Raises :class:`compress.errors.InputError` for a bad device, serial or runner and :class:`BenchError` when
    the adb server or the device cannot be reached.
    """
    if device == HOST:
        from bench.host_backend import HostBackend

        return HostBackend(), "host CPU (LiteRT)", "host", None, None
    from bench import adb_server
    from bench.adb_backend import AdbBackend
    from bench.devices import select_device
    from bench.runner_file import resolve_runner

    vdev = None
    try:
        if virtual:
            # a private adb server on a free port (never the user's server on 5037) and a virtual device
            from bench.virtual_session import VirtualSession

            vdev = VirtualSession(device).start()
            c = vdev.server.client()
            serial = serial or vdev.serial
            log.info("virtual device %s started on %s (private adb server on port %d)", device, vdev.serial,
                     vdev.port)
        else:
            port = adb_port if adb_port is not None else int(os.environ.get("ANDROID_ADB_SERVER_PORT", 5037))
            c = adb_server.client(adb_host, port)
            if connect:
                adb_server.adb_connect(connect, adb_client=c)
        dev, props, prof_name = select_device(c, device, serial)
        runner_path, kind = resolve_runner(runner, props, out_dir, runner_kind)
        backend = AdbBackend(c, dev, props, runner_path, prof_name, kind)
    except BaseException:
        if vdev is not None:
            vdev.stop()
        raise
    # --runner-kind host wins: whatever device ran it, the runner says the figures are the host's
    figures = "host" if kind == "host" else ("virtual" if backend.virtual else "phone")
    label = (f"{prof_name} ({props.get('ro.product.model', dev.serial)})" + (" VIRTUAL" if backend.virtual else "")
             + (" HOST RUNNER" if kind == "host" else ""))
    runner_info = {"path": str(runner_path), "name": runner_path.name, "sha256": sha256_file(runner_path),
                   "size_bytes": runner_path.stat().st_size, "virtual": backend.virtual, "kind": kind}
    return backend, label, figures, runner_info, vdev


def _host_checked(specs: list[ModelSpec], device_label: str, figures: str) -> tuple[list[ModelSpec], dict]:
    """Load every model on the host (:mod:`bench.host_check`); returns the loadable ones and the failed rows
    (``{key: (row, result)}``, flagged ``load-failed``: a crash while loading is a row, not a crash of bench)."""
    checks = check_models([str(s.path) for s in specs])
    ok, failed = [], {}
    for s in specs:
        c = checks[str(s.path)]
        s.ops, s.input_shape = c.ops, c.input_shape
        if c.ok is False:
            res = ModelResult(spec=s, problem="load-failed",
                              error=f"{s.path.name} does not load on the host (LiteRT): {c.error}; not timed")
            failed[s.key] = (summarise(res, device_label, figures), res.to_dict())
        else:
            ok.append(s)
    return ok, failed


def _check_connection(device: str, serial: str | None, virtual: bool, adb_port: int | None, connect: str | None,
                      wait_busy_s: float) -> None:
    """The connection flags, before anything is started. Raises InputError naming the flag and value."""
    if device == HOST and (virtual or serial or connect):
        given = ", ".join(f for f, v in (("--virtual", virtual), ("--serial", serial), ("--connect", connect)) if v)
        raise InputError(f"--device host times this machine's CPU; {given}: only with a phone profile "
                         "(e.g. --device sm8450)")
    if virtual and (serial or connect):
        raise InputError("--virtual starts its own device on a private adb server; --serial / --connect name "
                         "another one: give one or the other")
    if adb_port is not None and not (isinstance(adb_port, int) and 1 <= adb_port <= 65535):
        raise InputError(f"--adb-port {adb_port!r}: expected a TCP port from 1 to 65535")
    env_port = os.environ.get("ANDROID_ADB_SERVER_PORT")
    if (device != HOST and not virtual and adb_port is None and env_port is not None
            and not (env_port.isdigit() and 1 <= int(env_port) <= 65535)):  # host and virtual do not use it
        raise InputError(f"$ANDROID_ADB_SERVER_PORT={env_port!r}: expected a TCP port from 1 to 65535 (or pass "
                         "--adb-port)")
    if connect is not None:
        host, sep, port = connect.rpartition(":")
        if not (sep and host and port.isdigit() and 1 <= int(port) <= 65535):
            raise InputError(f"--connect {connect!r}: expected HOST:PORT, e.g. 192.168.1.20:5555 or 127.0.0.1:5555")
    if not (isinstance(wait_busy_s, (int, float)) and math.isfinite(wait_busy_s) and wait_busy_s >= 0):
        raise InputError(f"--wait-busy {wait_busy_s!r}: expected seconds >= 0")


def bench_models(models: str | os.PathLike | Sequence[str | os.PathLike], *, out: str | os.PathLike,
                 device: str = HOST, serial: str | None = None, virtual: bool = False, runner: str | None = None,
                 runner_kind: str = "android", adb_host: str = "127.0.0.1", adb_port: int | None = None,
                 connect: str | None = None, macs: dict[str, int] | None = None, reference: str | None = None,
                 wait_busy_s: float = 0.0, resume: bool = True, argv: Sequence[str] | None = None,
                 **settings: Any) -> dict[str, Any]:
    """Time ``models`` on ``device`` and write ``out/latency.{md,csv,json,png}``, ``out/logs/``, ``out/log.txt``.

    ``models``: one or several export manifests (``manifest.json`` or its folder; each file's sha256 must match
    its entry), ``label:dtype=path.tflite``, ``label=path.tflite`` or ``.tflite`` paths
    (:func:`bench.models.parse_model_args`). ``device``: a profile of ``bench/profiles.json`` (key, SoC or name,
    any case) or a profile file - the attached phone whose getprop matches; ``serial`` picks one, ``connect``
    ``HOST:PORT`` runs ``adb connect`` first, ``virtual`` starts a virtual device with a private adb server -
    or ``host`` (LiteRT on this machine's CPU). ``adb_port`` defaults to ``$ANDROID_ADB_SERVER_PORT``, else 5037.
    ``runner``: benchmark_model for Android arm64 (default ``$CORONETGAN_BENCHMARK_MODEL``); ``runner_kind``
    ``host`` accepts any runner and marks every figure as a host figure. ``wait_busy_s``: how long to wait
    for another bench run holding the device. ``resume``: reuse the rows an interrupted earlier run of the
    same settings measured in ``out`` (:mod:`bench.resume`). ``macs`` maps labels to MAC counts;
    ``reference`` is the label the speedup column compares with. ``settings`` are the fields of
    :class:`bench.results.BenchSettings` (``warmup``, ``runs``, ``repeats``, ``cooldown_s``, ``threads``, ...).
    ``argv`` is the command line recorded in the report (the CLI passes its own).

    Every model is first loaded on the host in a child process: one that does not load is a failed row
    (``load-failed``), not timed. Returns the report written to ``latency.json``: ``rows`` (one per model ×
    dtype, fields in :mod:`bench.rows`), ``results`` (per-repeat parsed output, times in µs as printed),
    ``device``, ``figures`` (phone, virtual or host), ``runner``, ``config``, ``timings`` (s), ``aborted`` (why
    the run stopped early, else ``None``), ``interrupted``, ``reused`` and ``complete``. A run that stops early
    (device lost, runner unusable) is not raised: ``aborted`` says why, the tables hold the rows measured
    before and list the others as ``not-run``.

    Raises :class:`compress.errors.InputError` for a bad model, device, serial, runner or setting (nothing is
    written for an unknown device or setting), :class:`bench.results.BenchError` when the device cannot be
    reached or is busy before measuring, and :class:`bench.results.Interrupted` / ``KeyboardInterrupt`` on
    SIGTERM/SIGINT after writing the tables (rows measured so far, the others ``not-run``).
    """
    t_start = time.perf_counter()
    device = check_device(device)
    cfg = BenchSettings.from_options(settings)
    _check_connection(device, serial, virtual, adb_port, connect, wait_busy_s)
    if isinstance(models, (str, os.PathLike)):
        models = [models]
    specs = parse_model_args([str(m) for m in models], macs)
    if reference is not None and reference not in {s.label for s in specs}:
        raise InputError(f"--reference {reference!r}: no model has this label; expected one of "
                         f"{', '.join(sorted({s.label for s in specs}))}")
    out_dir = Path(out)
    check_out_dir(out_dir)
    backend, device_label, figures, runner_info, vdev = _open_backend(
        device, serial, virtual, runner, runner_kind, adb_host, adb_port, connect, out_dir)
    fh, level = None, None
    try:
        backend.acquire(cfg, wait_busy_s)
        logs_dir = out_dir / "logs"
        logs_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "log.txt").write_text(LOG_HEADER + "\n")  # this run's log only
        fh = logging.FileHandler(out_dir / "log.txt", mode="a")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(fh)
        if log.getEffectiveLevel() > logging.INFO:  # log.txt gets bench's INFO lines whatever the caller's level
            level = log.level
            log.setLevel(logging.INFO)
        facts = backend.facts()
        log.info("device: %s, serial %s%s", device_label, facts.get("serial"),
                 f" (virtual device on a private adb server, port {vdev.port})" if vdev is not None else "")
        log.info("models: %s; tables: %s", ", ".join(str(m) for m in models), out_dir)
        identity = device_identity(facts, figures)
        runner_sha = runner_info["sha256"] if runner_info else None
        previous = load_previous(out_dir) if resume else None
        kept = reusable(previous, cfg.to_dict(), identity, runner_sha, specs)
        keep_logs = {Path(res["log_file"]).name for _, res in kept.values() if res.get("log_file")}
        for f in logs_dir.iterdir():  # an earlier run's logs must not pass for this run's (only runner logs)
            if f.is_file() and f.suffix == ".log" and f.name not in keep_logs:
                f.unlink()
        header = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device_label": device_label, "device": facts,
                  "figures": figures, "identity": identity, "runner": runner_info, "config": cfg.to_dict(),
                  "argv": list(argv) if argv is not None else None, "reused": list(kept),
                  "resumed_from": previous.get("started") if kept else None}
        runner_version = (facts.get("runtime") if runner_info is None
                          else f"unknown (runner sha256 {runner_sha[:12]}…)")
        rep = RunReport(specs, out_dir, cfg, header, reference, runner_version, backend, t_start)
        rep.entries.update({k: (dict(row, reused=True), res) for k, (row, res) in kept.items()})
        if kept:
            rest = [s.key for s in specs if s.key not in kept]
            log.info("resuming the unfinished run of %s in %s: reusing %d row(s) it measured (%s); measuring %d "
                     "(%s)", header["resumed_from"], out_dir, len(kept), ", ".join(kept), len(rest),
                     ", ".join(rest) or "none")

        def on_result(res: ModelResult) -> None:
            rep.entries[res.spec.key] = (summarise(res, device_label, figures), res.to_dict())
            rep.write()
            log.info("%s: %s", res.spec.key, "ok" if any(r.ok for r in res.repeats) else "FAILED")

        stopped: BaseException | None = None
        try:
            rep.write()
            runnable, failed = _host_checked([s for s in specs if s.key not in kept], device_label, figures)
            rep.entries.update(failed)
            for key, (row, _) in failed.items():
                log.warning("%s: %s", key, row["problem"])
            backend.run(runnable, cfg, logs_dir, on_result)
        except BenchError as e:
            rep.data["aborted"] = f"{e} (after {rep.done} of {len(specs)} rows)"
            log.error("run aborted: %s", e)
        except (Interrupted, KeyboardInterrupt) as e:
            stopped = e
            name = e.name if isinstance(e, Interrupted) else Interrupted(signal.SIGINT).name
            rep.data["interrupted"] = name.split()[0]
            rep.data["aborted"] = f"interrupted by {name} after {rep.done} of {len(specs)} rows"
        aborted = rep.data["aborted"]
        paths = rep.write(final=True, why_missing=f"not measured: {aborted}" if aborted else "not measured")
        for row in rep.data["rows"]:
            if set(row["flags"]) - {"virtual", "host", "not-run"}:
                log.warning("%s %s flagged: %s", row["model"], row["dtype"], ", ".join(row["flags"]))
        log.info("wrote %s", ", ".join(paths.values()))
        if stopped is not None:
            missing = len(specs) - rep.done
            stopped.summary = (f"{aborted}; the tables in {out_dir} hold them" + (
                f"; rerun the same command to measure the other {missing}" if missing else ""))
            raise stopped
        return rep.data
    finally:
        backend.close()
        if vdev is not None:
            vdev.stop()   # disconnects, stops the virtual device and the private adb server
        if fh is not None:
            logging.getLogger().removeHandler(fh)
            fh.close()
        if level is not None:
            log.setLevel(level)
