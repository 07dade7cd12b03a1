"""Drive a phone (or the virtual device) over adb with adbutils through the adb server.

Flow: :meth:`AdbBackend.acquire` takes the device lock (:mod:`bench.device_lock`; a live run elsewhere makes
this one wait or refuse) and removes folders of runs that can no longer be live; :meth:`AdbBackend.run`
creates a per-run folder, pushes the runner (TFLite ``benchmark_model``) and ``android_harness/run_models.sh``,
checks the runner's sha256 there, then for each model checks the file against its sha256, pushes it, checks
the copy, runs the harness, pulls its log (so a lost device keeps what was measured) and deletes the copy;
:meth:`AdbBackend.close` stops the harness if it still runs, deletes the folder and releases the lock.
"""
from __future__ import annotations

import logging
import re
import secrets
import shlex
import time
from pathlib import Path
from typing import Any, Callable

from bench.device_lock import REMOTE_ROOT, RUN_PREFIX, DeviceLock
from bench.devices import parse_gles, soc_of
from bench.models import ModelSpec
from bench.results import BenchError, BenchSettings, DeviceLost, ModelResult, RunnerError, parse_harness_log
from compress.io import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "android_harness" / "run_models.sh"
MIN_STALE_S = 600  # a lock without heartbeat this long (and no live runner) is stale


def _adb_errors() -> tuple[type[BaseException], ...]:
    import adbutils

    return (adbutils.AdbError, adbutils.AdbTimeout, OSError, ConnectionError, EOFError)


class AdbBackend:
    """Runs the protocol on one adb device. ``device`` is an adbutils device, ``props`` its getprop values,
    ``runner_kind`` what :func:`bench.runner_file.resolve_runner` said of the runner."""

    def __init__(self, adb_client, device, props: dict[str, str], runner: Path, profile: str | None,
                 runner_kind: str = "android"):
        self.client, self.device, self.props = adb_client, device, props
        self.runner, self.profile, self.runner_kind = Path(runner), profile, runner_kind
        self.virtual = props.get("ro.coronetgan.virtual") == "1"
        self.run_dir = f"{REMOTE_ROOT}/{RUN_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        self.lock: DeviceLock | None = None
        self.cleaned: bool | None = None
        self.timings: dict[str, float] = {}

    # -- facts -----------------------------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        """Device facts: model, SoC, Android version, ABI, GPU renderer and driver, serial, virtual flag."""
        p = self.props
        gles: dict[str, str] = {}
        try:
            gles = parse_gles(self._sh("dumpsys SurfaceFlinger | grep -m 1 '^GLES:'", check=False)[1])
        except BenchError:
            pass
        soc = " ".join(x for x in (p.get("ro.soc.manufacturer"), p.get("ro.soc.model")) if x) or soc_of(p)
        return {
            "kind": "virtual" if self.virtual else "phone",
            "serial": self.device.serial,
            "serialno": p.get("ro.serialno"),
            "profile": self.profile,
            "manufacturer": p.get("ro.product.manufacturer"),
            "model": p.get("ro.product.model"),
            "soc": soc,
            "board_platform": p.get("ro.board.platform"),
            "hardware": p.get("ro.hardware"),
            "android": p.get("ro.build.version.release"),
            "sdk": p.get("ro.build.version.sdk"),
            "abi": p.get("ro.product.cpu.abi"),
            "fingerprint": p.get("ro.build.fingerprint"),
            **gles,
        }

    # -- helpers ---------------------------------------------------------------------------------
    def _sh(self, cmd: str, check: bool = True, timeout: float = 60.0) -> tuple[int, str]:
        try:
            r = self.device.shell2(cmd, timeout=timeout, v2=True)
        except _adb_errors() as e:
            raise self._lost(e, f"shell {cmd.split()[0]}") from None
        if check and r.returncode != 0:
            raise BenchError(f"device command failed ({r.returncode}): {cmd}: {r.output.strip()[:300]}")
        return r.returncode, r.output

    def alive(self, checks: int = 3, interval: float = 0.3) -> bool:
        """Whether the adb server lists the device in state ``device`` at each of ``checks`` polls,
        ``interval`` s apart."""
        for i in range(checks):
            try:
                if not any(d.serial == self.device.serial and d.state == "device" for d in self.client.list()):
                    return False
            except _adb_errors():
                return False
            if i + 1 < checks:
                time.sleep(interval)
        return True

    def _lost(self, err: BaseException, during: str) -> BenchError:
        if not self.alive():
            return DeviceLost(f"device {self.device.serial} disconnected during {during} ({type(err).__name__}: "
                              f"{err}); its run folder {self.run_dir} is removed by the next run")
        return BenchError(f"adb error during {during}: {type(err).__name__}: {err}")

    def _push(self, local: Path | str, remote: str, mode: int) -> None:
        try:
            self.device.sync.push(str(local), remote, mode=mode)
        except _adb_errors() as e:
            raise self._lost(e, f"push of {Path(local).name}") from None

    def _device_sha256(self, remote: str) -> str | None:
        rc, out = self._sh(f"sha256sum {shlex.quote(remote)}", check=False)
        word = out.split()[0] if rc == 0 and out.split() else ""
        return word if re.fullmatch(r"[0-9a-f]{64}", word) else None

    # -- the run ---------------------------------------------------------------------------------
    def acquire(self, cfg: BenchSettings, wait_s: float = 0.0) -> None:
        """Take the device lock (waiting up to ``wait_s`` s for another live run) and remove the folders of
        runs that cannot be live any more. Raises :class:`bench.results.DeviceBusy` or :class:`BenchError`."""
        stale_after = max(MIN_STALE_S, 2 * cfg.max_secs + 300)  # one runner call: warm-up + timed blocks
        self.lock = DeviceLock(lambda c: self._sh(c, check=False), self.run_dir, self.device.serial, stale_after)
        self.lock.acquire(wait_s)

    def run(self, models: list[ModelSpec], cfg: BenchSettings, logs_dir: Path,
            on_result: Callable[[ModelResult], None] | None = None) -> list[ModelResult]:
        """Time every model (after :meth:`acquire`); returns one :class:`ModelResult` per model in order.

        ``on_result`` is called after each model (bench writes partial tables there). A model file whose
        sha256 no longer matches (it changed since bench read it) or whose pushed copy differs is a failed row,
        not timed. Raises :class:`DeviceLost` when the device disconnects (results so far were passed to
        ``on_result``), :class:`RunnerError` when the runner is missing or not executable on the device, and
        :class:`BenchError` for other device failures. :meth:`close` runs at the end, also after errors.
        """
        results: list[ModelResult] = []
        t0 = time.perf_counter()
        runner_sha = sha256_file(self.runner)
        try:
            self._sh(f"mkdir -p {shlex.quote(self.run_dir + '/out')}")
            remote_runner = f"{self.run_dir}/benchmark_model"
            self._push(self.runner, remote_runner, 0o755)
            self._push(HARNESS, f"{self.run_dir}/run_models.sh", 0o644)
            self._sh(f"chmod 755 {shlex.quote(remote_runner)}", check=False)
            on_device = self._device_sha256(remote_runner)
            if on_device is not None and on_device != runner_sha:
                raise BenchError(f"runner on the device has sha256 {on_device}, pushed {runner_sha}")
            self.timings["setup_s"] = time.perf_counter() - t0
            self.timings["runner_s"] = 0.0
            for i, spec in enumerate(models):
                self.lock.beat()
                results.append(self._model(i, spec, remote_runner, cfg, logs_dir))
                if on_result:
                    on_result(results[-1])
        finally:
            self.close()
            self.timings["total_s"] = time.perf_counter() - t0
        return results

    def _model(self, i: int, spec: ModelSpec, remote_runner: str, cfg: BenchSettings, logs_dir: Path) -> ModelResult:
        """Check, push, time and remove one model."""
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"m{i:02d}_{spec.label}_{spec.dtype}") + ".tflite"
        remote = f"{self.run_dir}/{name}"
        now = sha256_file(spec.path)
        if now != spec.sha256:
            return ModelResult(spec=spec, problem="file-changed",
                               error=f"{spec.path} changed during the run (sha256 {now[:12]}…, read as "
                                     f"{spec.sha256[:12]}…); not timed")
        self._push(spec.path, remote, 0o644)
        copy = self._device_sha256(remote)
        if copy is not None and copy != spec.sha256:
            return ModelResult(spec=spec, problem="push-failed",
                               error=f"the copy of {spec.path.name} on the device has sha256 {copy[:12]}…, the "
                                     f"file {spec.sha256[:12]}…; not timed")
        try:
            return self._run_one(spec, remote, remote_runner, cfg, logs_dir)
        finally:
            if self.alive(checks=1):
                self._sh(f"rm -f {shlex.quote(remote)}", check=False)

    def _harness_failure(self, output: str) -> BenchError:
        """The run-level error for run_models.sh's exit 3 (runner unusable) or 4 (arguments refused)."""
        m = re.search(r"^@@ error (\S+) ?(.*)$", output, re.MULTILINE)
        code, detail = (m.group(1), m.group(2)) if m else ("", output.strip()[-300:])
        remote = f"{self.run_dir}/benchmark_model"
        if code == "runner-missing":
            return RunnerError(f"the runner is missing on the device: {remote} is not there after the push of "
                               f"{self.runner}")
        if code == "runner-not-executable":
            return RunnerError(f"the runner cannot be executed on the device: {remote} has no exec permission "
                               f"after chmod 755 (is {REMOTE_ROOT} mounted noexec?); pushed from {self.runner}")
        return BenchError(f"android_harness/run_models.sh refused its arguments: {detail or 'no message'}")

    def _run_one(self, spec: ModelSpec, remote_model: str, remote_runner: str, cfg: BenchSettings,
                 logs_dir: Path) -> ModelResult:
        args = ["sh", f"{self.run_dir}/run_models.sh", "--runner", remote_runner, "--outdir", f"{self.run_dir}/out",
                "--precision", spec.dtype, "--backend", cfg.gpu_backend, "--warmup", str(cfg.warmup),
                "--runs", str(cfg.runs), "--repeats", str(cfg.repeats), "--cooldown", f"{cfg.cooldown_s:g}",
                "--min-secs", f"{cfg.min_secs:g}", "--max-secs", f"{cfg.max_secs:g}", "--threads", str(cfg.threads),
                "--heartbeat", self.lock.heartbeat_file]
        if not cfg.use_gpu:
            args.append("--no-gpu")
        for a in cfg.runner_args:
            args += ["--arg", a]
        args.append(remote_model)
        cmd = " ".join(shlex.quote(a) for a in args)
        t = time.perf_counter()
        try:
            r = self.device.shell2(cmd, timeout=cfg.timeout_s, v2=True)
        except _adb_errors() as e:
            err = self._lost(e, f"the run of {spec.key}")
            if isinstance(err, DeviceLost):
                raise err from None
            return ModelResult(spec=spec, error=f"adb: {err}")
        finally:
            self.timings["runner_s"] = self.timings.get("runner_s", 0.0) + time.perf_counter() - t
        if r.returncode in (3, 4):
            raise self._harness_failure(r.output)
        if r.returncode != 0:
            lines = r.output.strip().splitlines()
            return ModelResult(spec=spec, error=f"run_models.sh exited {r.returncode}: "
                                                f"{lines[-1] if lines else 'no output'}")
        name = Path(remote_model).stem
        text = None
        try:
            text = self.device.sync.read_bytes(f"{self.run_dir}/out/{name}.log").decode("utf-8", "replace")
        except _adb_errors() as e:
            if not self.alive():
                raise self._lost(e, f"pull of {name}.log") from None
            log.warning("pull of %s.log failed (%s); using the shell output", name, e)
        if text is None:
            text = r.stdout
        local = logs_dir / f"{name}.log"
        atomic_write_bytes(local, text.encode("utf-8"))
        res = parse_harness_log(text, spec)
        res.log_file = str(local)
        return res

    def close(self) -> None:
        """Stop a harness still running, delete the run folder and release the lock (when the device is still
        reachable; a lost device's folder is removed by the next run). Safe to call twice."""
        if self.cleaned or self.lock is None:
            return
        t1 = time.perf_counter()
        self.cleaned = False
        if self.alive(checks=1):
            q = shlex.quote(self.run_dir)
            try:
                self.device.shell2(f"for f in {q}/out/*.pid; do [ -f \"$f\" ] && kill \"$(cat \"$f\")\" 2>/dev/null; "
                                   f"done; rm -rf {q}", timeout=60, v2=True)
                self.lock.release()
                self.cleaned = True
            except (BenchError, *_adb_errors()):
                pass
        if not self.cleaned:
            self.lock.abandon()
        self.timings["cleanup_s"] = time.perf_counter() - t1
