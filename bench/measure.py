"""Bench a list of models on one device: pick the backend, run the protocol, write the latency tables.

:func:`bench_models` is what ``python bench/run_adb.py`` (:mod:`bench.cli`) runs, and what Python callers use
(``from bench import bench_models``).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

from bench import tables
from bench.models import parse_model_args
from bench.profiles import HOST, check_device
from bench.results import BenchError, BenchSettings, ModelResult
from compress.io import sha256_file

log = logging.getLogger("bench")


def bench_models(models: str | os.PathLike | Sequence[str | os.PathLike], *, out: str | os.PathLike,
                 device: str = HOST, serial: str | None = None, virtual: bool = False, runner: str | None = None,
                 adb_host: str = "127.0.0.1", adb_port: int | None = None, connect: str | None = None,
                 macs: dict[str, int] | None = None, reference: str | None = None,
                 argv: Sequence[str] | None = None, **settings: Any) -> dict[str, Any]:
    """Time ``models`` on ``device`` and write ``out/latency.{md,csv,json,png}``, ``out/logs/``, ``out/log.txt``.

    ``models``: one or several export manifests (``manifest.json`` or its folder), ``label:dtype=path.tflite``,
    ``label=path.tflite`` or ``.tflite`` paths (:func:`bench.models.parse_model_args`). ``device``: a profile of
    ``bench/profiles.json`` (the attached phone whose getprop matches; ``serial`` picks one, ``connect``
    ``HOST:PORT`` runs ``adb connect`` first, ``virtual`` starts a virtual device with a private adb server) or
    ``host`` (LiteRT on this machine's CPU). ``adb_port`` defaults to ``$ANDROID_ADB_SERVER_PORT``, else 5037.
    ``runner``: benchmark_model for Android arm64 (default ``$CORONETGAN_BENCHMARK_MODEL``). ``macs`` maps
    labels to MAC counts; ``reference`` is the label the speedup column compares with. ``settings`` are the
    fields of :class:`bench.results.BenchSettings` (``warmup``, ``runs``, ``repeats``, ``cooldown_s``,
    ``threads``, ...). ``argv`` is the command line recorded in the report (the CLI passes its own).

    Returns the report written to ``latency.json``: ``rows`` (one per model × dtype; ``median_ms``, ``p90_ms``,
    ``mean_ms``, ``std_ms``, ``min_ms``, ``init_ms`` in ms, ``speedup`` ×, ``flags``, ``status`` ok/failed),
    ``results`` (per-repeat parsed output, times in µs as printed), ``device``, ``runner``, ``config``,
    ``timings`` (s), ``aborted`` (why the run stopped early, else ``None``) and ``complete``. A run that stops
    early (device lost, runner unusable) is not raised: ``aborted`` says why and the tables hold the rows
    measured before.

    Raises :class:`compress.errors.InputError` for a bad model, device, serial, runner or setting (nothing is
    written for an unknown device or setting), and :class:`bench.results.BenchError` when the device cannot be
    reached before measuring.
    """
    t_start = time.perf_counter()
    check_device(device)
    cfg = BenchSettings.from_options(settings)
    if isinstance(models, (str, os.PathLike)):
        models = [models]
    specs = parse_model_args([str(m) for m in models], macs)
    out_dir = Path(out)
    logs_dir = out_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(out_dir / "log.txt")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(fh)

    vdev = None
    try:
        if device == HOST:
            from bench.host_backend import HostBackend

            backend: Any = HostBackend()
            device_label, is_virtual, host = "host CPU (LiteRT)", False, True
            runner_info = None
        else:
            from bench import adb_backend as ab
            from bench import adb_server

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
            dev, props, prof_name = ab.select_device(c, device, serial)
            runner_path = ab.resolve_runner(runner, props, out_dir)
            backend = ab.AdbBackend(c, dev, props, runner_path, prof_name)
            is_virtual, host = backend.virtual, False
            device_label = (f"{prof_name} ({props.get('ro.product.model', dev.serial)})"
                            + (" VIRTUAL" if is_virtual else ""))
            runner_info = {"path": str(runner_path), "name": runner_path.name, "sha256": sha256_file(runner_path),
                           "size_bytes": runner_path.stat().st_size, "virtual": is_virtual}
        facts = backend.facts()
        report: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device_label": device_label, "device": facts,
            "runner": runner_info, "config": cfg.to_dict(), "rows": [], "results": [], "aborted": None,
            "timings": {}, "reference": None, "argv": list(argv) if argv is not None else None,
        }
        done: list[ModelResult] = []

        def write(final: bool = False) -> dict[str, str]:
            rows = [tables.summarise(r, device_label, is_virtual, host) for r in done]
            report["reference"] = tables.add_speedups(rows, reference)
            report["rows"], report["results"] = rows, [r.to_dict() for r in done]
            t = dict(getattr(backend, "timings", {}))
            runner_wall = sum(rep.wall_s or 0.0 for r in done for rep in r.repeats)
            t["runner_wall_s"] = runner_wall
            t["cooldown_s"] = cfg.cooldown_s * sum(max(0, len(r.repeats) - 1) for r in done)
            t["bench_total_s"] = time.perf_counter() - t_start
            t["overhead_s"] = (t["bench_total_s"] - (runner_wall if runner_wall else t.get("runner_s", 0.0))
                               - t["cooldown_s"])
            report["timings"], report["device_cleaned"] = t, getattr(backend, "cleaned", None)
            report["complete"] = final and not report["aborted"]
            return tables.write_all(report, out_dir, chart=final)

        def on_result(res: ModelResult) -> None:
            done.append(res)
            write()
            log.info("%s: %s", res.spec.key, "ok" if any(r.ok for r in res.repeats) else "FAILED")

        try:
            backend.run(specs, cfg, logs_dir, on_result)
        except BenchError as e:
            report["aborted"] = str(e)
            log.error("run aborted: %s", e)
        paths = write(final=True)
        for row in report["rows"]:
            if row["flags"] and set(row["flags"]) - {"virtual", "host"}:
                log.warning("%s %s flagged: %s", row["model"], row["dtype"], ", ".join(row["flags"]))
        log.info("wrote %s", ", ".join(paths.values()))
        return report
    finally:
        if vdev is not None:
            vdev.stop()   # disconnects, stops the virtual device and the private adb server
        logging.getLogger().removeHandler(fh)
        fh.close()
