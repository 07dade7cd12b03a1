"""Drive a phone (or the virtual device) over adb with adbutils through the adb server.

Flow of :meth:`AdbBackend.run`: remove stale ``/data/local/tmp/coronetgan-bench-*`` folders, create a per-run
folder, push the runner (TFLite ``benchmark_model``), ``android_harness/run_models.sh`` and the models, check
the runner's sha256 on the device, run the harness once per model, pull its log after each model (so a
lost device keeps what was measured), and delete the folder.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import shlex
import time
from pathlib import Path
from typing import Any, Callable

from bench import profiles as prof
from bench.models import ModelSpec
from bench.results import BenchError, BenchSettings, DeviceLost, ModelResult, RunnerError, parse_harness_log
from compress.errors import InputError
from compress.io import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "android_harness" / "run_models.sh"
REMOTE_ROOT = "/data/local/tmp"
RUN_PREFIX = "coronetgan-bench-"
RUNNER_ENV = "CORONETGAN_BENCHMARK_MODEL"


def _adb_errors() -> tuple[type[BaseException], ...]:
    import adbutils

    return (adbutils.AdbError, adbutils.AdbTimeout, OSError, ConnectionError, EOFError)


def parse_getprop(text: str) -> dict[str, str]:
    """``[key]: [value]`` lines of ``getprop`` → dict."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.MULTILINE)}


def parse_gles(text: str) -> dict[str, str]:
    """``GLES: vendor, renderer, version/driver`` from ``dumpsys SurfaceFlinger`` → dict (empty if absent)."""
    m = re.search(r"^GLES:\s*([^,]+),\s*([^,]+),\s*(.+)$", text, re.MULTILINE)
    if not m:
        return {}
    return {"gpu_vendor": m.group(1).strip(), "gpu_renderer": m.group(2).strip(), "gpu_driver": m.group(3).strip()}


def device_props(device) -> dict[str, str]:
    """All getprop values of an adbutils device."""
    return parse_getprop(device.shell("getprop", timeout=30))


def select_device(adb_client, profile: str | None, serial: str | None = None):
    """The attached device to use: ``serial`` if given, else the one whose getprop matches ``profile``.

    Returns ``(adbutils device, props, profile name or None)``. Raises :class:`InputError` when the serial is
    not attached (or not ready), when it is another SoC than ``profile``, or when no device or several
    devices match ``profile`` (the message lists what is attached).
    """
    attached = [(d.serial, d.state) for d in adb_client.list()]
    ready = [s for s, st in attached if st == "device"]
    listing = ", ".join(f"{s} ({st})" for s, st in attached) or "none"
    if serial:
        if serial not in ready:
            raise InputError(f"--serial {serial}: no such device in state 'device' (attached: {listing})")
        dev = adb_client.device(serial)
        props = device_props(dev)
        if profile:
            p = prof.get_profile(profile)
            if not prof.matches(p, props, prof.load_profiles()["match_order"]):
                raise InputError(f"--serial {serial} is {_soc(props)}, not --device {profile} ({p.get('soc')})")
        return dev, props, profile or prof.identify(props)
    if not profile:
        raise InputError("--device: give a device profile (or host), or --serial")
    p = prof.get_profile(profile)
    order = prof.load_profiles()["match_order"]
    found, seen = [], []
    for s in ready:
        dev = adb_client.device(s)
        try:
            props = device_props(dev)
        except _adb_errors() as e:
            seen.append(f"{s} (unreadable: {e})")
            continue
        seen.append(f"{s} ({_soc(props)})")
        if prof.matches(p, props, order):
            found.append((dev, props))
    if not found:
        raise InputError(f"--device {profile}: no attached device is a {p.get('soc')} ({p.get('name')}); "
                         f"attached: {', '.join(seen) or 'none'}")
    if len(found) > 1:
        raise InputError(f"--device {profile}: {len(found)} attached devices match "
                         f"({', '.join(d.serial for d, _ in found)}); pick one with --serial")
    return found[0][0], found[0][1], profile


def _soc(props: dict[str, str]) -> str:
    return (props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware")
            or "unknown SoC")


def resolve_runner(runner: str | None, props: dict[str, str], workdir: str | os.PathLike | None = None) -> Path:
    """The local runner file: ``--runner``, else ``$CORONETGAN_BENCHMARK_MODEL``, else (virtual device only)
    a freshly written virtual benchmark_model (in ``workdir/.virtual_runner``).

    Raises :class:`InputError` when none is given for a real phone, the file is missing, or it is an ELF
    binary for another CPU than the phone's arm64.
    """
    path = runner or os.environ.get(RUNNER_ENV)
    if not path:
        if props.get("ro.coronetgan.virtual") == "1":
            import tempfile

            from bench.virtual_device.benchmark_model import write_runner

            folder = Path(workdir) / ".virtual_runner" if workdir else Path(tempfile.mkdtemp(prefix="coronetgan-vrunner-"))
            return write_runner(folder / "benchmark_model")
        raise InputError(f"no runner: pass --runner PATH or set {RUNNER_ENV} to TFLite's benchmark_model for "
                         "Android arm64 (see android_harness/README.md)")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"runner {p} (from {'--runner' if runner else RUNNER_ENV}) not found")
    head = p.read_bytes()[:20]
    abi = props.get("ro.product.cpu.abi", "")
    if head[:4] == b"\x7fELF" and abi.startswith("arm64"):
        machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
        if machine != 183:  # EM_AARCH64
            raise InputError(f"runner {p} is an ELF binary for machine {machine}, not aarch64; the phone is {abi}")
    return p


class AdbBackend:
    """Runs the protocol on one adb device. ``device`` is an adbutils device, ``props`` its getprop values."""

    def __init__(self, adb_client, device, props: dict[str, str], runner: Path, profile: str | None):
        self.client, self.device, self.props = adb_client, device, props
        self.runner, self.profile = Path(runner), profile
        self.virtual = props.get("ro.coronetgan.virtual") == "1"
        self.run_dir = f"{REMOTE_ROOT}/{RUN_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
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
        soc = " ".join(x for x in (p.get("ro.soc.manufacturer"), p.get("ro.soc.model")) if x) or _soc(p)
        return {
            "kind": "virtual" if self.virtual else "phone",
            "serial": self.device.serial,
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
        """Whether the adb server lists the device in state ``device`` at each of ``checks`` polls."""
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

    # -- the run ---------------------------------------------------------------------------------
    def run(self, models: list[ModelSpec], cfg: BenchSettings, logs_dir: Path,
            on_result: Callable[[ModelResult], None] | None = None) -> list[ModelResult]:
        """Time every model; returns one :class:`ModelResult` per model in order.

        ``on_result`` is called after each model (bench writes partial tables there). Raises
        :class:`DeviceLost` when the device disconnects (results so far were passed to ``on_result``),
        :class:`RunnerError` when the runner is missing or not executable on the device, and
        :class:`BenchError` for other device failures. The run folder is deleted whenever the device is
        still reachable.
        """
        results: list[ModelResult] = []
        t0 = time.perf_counter()
        runner_sha = sha256_file(self.runner)
        try:
            self._sh(f"rm -rf {REMOTE_ROOT}/{RUN_PREFIX}*; mkdir -p {self.run_dir}/out")
            remote_runner = f"{self.run_dir}/benchmark_model"
            remote_harness = f"{self.run_dir}/run_models.sh"
            self._push(self.runner, remote_runner, 0o755)
            self._push(HARNESS, remote_harness, 0o644)
            remote_models = []
            for i, s in enumerate(models):
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"m{i:02d}_{s.label}_{s.dtype}") + ".tflite"
                self._push(s.path, f"{self.run_dir}/{name}", 0o644)
                remote_models.append(f"{self.run_dir}/{name}")
            self._sh(f"chmod 755 {remote_runner}", check=False)
            rc, out = self._sh(f"sha256sum {remote_runner}", check=False)
            if rc == 0 and out.split() and re.fullmatch(r"[0-9a-f]{64}", out.split()[0]):
                if out.split()[0] != runner_sha:
                    raise BenchError(f"runner on the device has sha256 {out.split()[0]}, pushed {runner_sha}")
            self.timings["setup_s"] = time.perf_counter() - t0
            self.timings["runner_s"] = 0.0
            for spec, remote in zip(models, remote_models):
                results.append(self._run_one(spec, remote, remote_runner, cfg, logs_dir))
                if on_result:
                    on_result(results[-1])
        finally:
            t1 = time.perf_counter()
            self.cleaned = False
            if self.alive(checks=1):
                try:
                    self.device.shell2(f"rm -rf {self.run_dir}", timeout=60, v2=True)
                    self.cleaned = True
                except _adb_errors():
                    pass
            self.timings["cleanup_s"] = time.perf_counter() - t1
            self.timings["total_s"] = time.perf_counter() - t0
        return results

    def _run_one(self, spec: ModelSpec, remote_model: str, remote_runner: str, cfg: BenchSettings,
                 logs_dir: Path) -> ModelResult:
        args = ["sh", f"{self.run_dir}/run_models.sh", "--runner", remote_runner, "--outdir", f"{self.run_dir}/out",
                "--precision", spec.dtype, "--backend", cfg.gpu_backend, "--warmup", str(cfg.warmup),
                "--runs", str(cfg.runs), "--repeats", str(cfg.repeats), "--cooldown", f"{cfg.cooldown_s:g}",
                "--min-secs", f"{cfg.min_secs:g}", "--max-secs", f"{cfg.max_secs:g}", "--threads", str(cfg.threads)]
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
        if r.returncode == 3:
            raise RunnerError(f"{r.output.strip().splitlines()[-1] if r.output.strip() else 'runner unusable'} "
                              f"(runner {self.runner})")
        if r.returncode != 0:
            return ModelResult(spec=spec, error=f"harness exited {r.returncode}: {r.output.strip()[-300:]}")
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
