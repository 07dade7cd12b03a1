"""Result records shared by the adb and host backends, the measuring settings, and the harness log parser."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from bench.diagnose import diagnose, exit_text
from bench.models import ModelSpec
from bench.parse import BenchmarkOutput, UnparseableOutput, is_load_failure, parse_benchmark_output
from compress.errors import InputError

# Android PowerManager thermal statuses (dumpsys thermalservice "Thermal Status: N").
THERMAL_NAMES = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical", 5: "emergency", 6: "shutdown"}
THROTTLE_STATUS = 2  # MODERATE and above: the OS is throttling
GPU_BACKENDS = ("cl", "gl")  # benchmark_model --gpu_backend: OpenCL or OpenGL ES


class BenchError(RuntimeError):
    """A run could not go on (the message says why and what was kept)."""


class DeviceLost(BenchError):
    """The phone disconnected (or stopped answering) mid-run."""


class RunnerError(BenchError):
    """The runner is missing or not executable on the device."""


class DeviceBusy(BenchError):
    """Another bench run holds the device (its lock is live); nothing was changed on the device."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, like KeyboardInterrupt: no ``except Exception`` stops it).

    ``signum`` is the signal; :attr:`exit_code` is the shell convention 128 + signum (130, 143).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        """``SIGINT (Ctrl-C)`` or ``SIGTERM``."""
        import signal

        return "SIGINT (Ctrl-C)" if self.signum == signal.SIGINT else signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal number."""
        return 128 + self.signum


@dataclasses.dataclass
class BenchSettings:
    """The measuring protocol: warm-up runs, ``runs`` timed runs, ``repeats`` invocations with a cool-down.

    ``cooldown_s``, ``min_secs``, ``max_secs`` and ``timeout_s`` are seconds; ``threads`` is benchmark_model's
    ``--num_threads``; ``gpu_backend`` ``cl`` or ``gl`` and ``use_gpu`` choose the GPU delegate (phones);
    ``runner_args`` are extra benchmark_model flags (``--name=value``).
    """

    warmup: int = 5
    runs: int = 50
    repeats: int = 3
    cooldown_s: float = 5.0
    min_secs: float = 0.0
    max_secs: float = 150.0
    threads: int = 4
    gpu_backend: str = "cl"
    use_gpu: bool = True
    runner_args: list[str] = dataclasses.field(default_factory=list)
    timeout_s: float = 1800.0

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "BenchSettings":
        """Settings from keyword options (the field names), checked with :meth:`check`.

        Raises :class:`InputError` for an unknown option or a value :meth:`check` refuses.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise InputError(f"bench setting {unknown[0]!r}: unknown; expected one of {', '.join(names)}")
        return cls(**options).check()

    def check(self) -> "BenchSettings":
        """Returns ``self`` when every value is usable; raises :class:`InputError` naming the bench CLI flag."""
        for flag, v, least in (("--warmup", self.warmup, 0), ("--runs", self.runs, 1),
                               ("--repeats", self.repeats, 1), ("--threads", self.threads, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise InputError(f"{flag} {v!r}: expected an integer >= {least}")
        for flag, v, positive in (("--cooldown", self.cooldown_s, False), ("--min-secs", self.min_secs, False),
                                  ("--max-secs", self.max_secs, True), ("--timeout", self.timeout_s, True)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 if positive else v >= 0)):
                raise InputError(f"{flag} {v!r}: expected seconds {'> 0' if positive else '>= 0'}")
        if self.max_secs < self.min_secs:
            raise InputError(f"--max-secs {self.max_secs:g} < --min-secs {self.min_secs:g}: expected max >= min")
        if self.gpu_backend not in GPU_BACKENDS:
            raise InputError(f"--gpu-backend {self.gpu_backend!r}: expected one of {', '.join(GPU_BACKENDS)}")
        bad = [x for x in self.runner_args if not x.startswith("--") or any(c.isspace() for c in x)]
        if bad:
            raise InputError(f"--runner-arg {bad[0]!r}: expected one benchmark_model flag like --name=value")
        for x in self.runner_args:
            name = x[2:].split("=", 1)[0]
            if name in CONTROLLED_RUNNER_FLAGS:
                raise InputError(f"--runner-arg {x!r}: bench sets --{name} itself (the tables' labels come from it: "
                                 f"{CONTROLLED_RUNNER_FLAGS[name]}); expected a flag it does not set")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


#: benchmark_model flags that bench and android_harness/run_models.sh set from its own options, with the option
#: (a ``--runner-arg`` setting one would make the row time another file or setting than its label says).
CONTROLLED_RUNNER_FLAGS = {
    "graph": "--models", "use_gpu": "--cpu", "gpu_backend": "--gpu-backend",
    "gpu_precision_loss_allowed": "the file's dtype", "num_threads": "--threads", "warmup_runs": "--warmup",
    "num_runs": "--runs", "min_secs": "--min-secs", "max_secs": "--max-secs",
    "report_peak_memory_footprint": "the peak memory column",
}


@dataclasses.dataclass
class Thermal:
    """A thermal reading: Android thermal ``status`` (0-6, ``None`` if unknown), hottest zone in m°C."""

    status: int | None = None
    temp_mc: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Thermal":
        """From the harness's ``status=S temp_mC=T`` (``NA`` for unknown)."""
        st = re.search(r"status=(-?\d+)", text)
        tm = re.search(r"temp_mC=(-?\d+)", text)
        return cls(int(st.group(1)) if st else None, int(tm.group(1)) if tm else None)


@dataclasses.dataclass
class RepeatResult:
    """One benchmark_model invocation: exit code, thermal before/after, parsed output or the reason none."""

    index: int
    exit_code: int | None
    thermal_before: Thermal
    thermal_after: Thermal
    output: BenchmarkOutput | None = None
    problem: str | None = None  # crashed | load-failed | unparseable | runner-error
    detail: str = ""
    wall_s: float | None = None  # the runner process's wall time (s) where the device could tell
    cause: str | None = None  # missing-library | out-of-memory | delegate-failed (bench.diagnose)

    @property
    def ok(self) -> bool:
        """True when the invocation exited 0 and printed timings."""
        return self.output is not None and self.exit_code == 0 and self.problem is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times in µs as printed, plus ``*_ms`` fields)."""
        d = {"index": self.index, "exit_code": self.exit_code, "problem": self.problem, "detail": self.detail,
             "cause": self.cause, "wall_s": self.wall_s,
             "thermal_before": dataclasses.asdict(self.thermal_before),
             "thermal_after": dataclasses.asdict(self.thermal_after)}
        if self.output is not None:
            d["output"] = self.output.to_dict()
        return d


@dataclasses.dataclass
class ModelResult:
    """Everything measured for one model file on one device.

    ``problem`` names a failure of the model as a whole (``load-failed`` on the host, ``file-changed``,
    ``not-run``), ``error`` says what happened (also for device-side errors without a problem name).
    """

    spec: ModelSpec
    repeats: list[RepeatResult] = dataclasses.field(default_factory=list)
    error: str | None = None
    log_file: str | None = None
    runner_sha256_device: str | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"model": self.spec.to_dict(), "error": self.error, "problem": self.problem, "log_file": self.log_file,
                "runner_sha256_device": self.runner_sha256_device,
                "repeats": [r.to_dict() for r in self.repeats]}


def classify(text: str, exit_code: int | None) -> tuple[BenchmarkOutput | None, str | None, str, str | None]:
    """Parse one invocation's output; returns ``(parsed or None, problem or None, detail, cause or None)``.

    ``problem``: ``crashed`` (killed by a signal), ``load-failed``, ``runner-error`` (non-zero exit) or
    ``unparseable`` (exit 0 without timings). ``detail`` names the exit status or signal and the decisive
    output line (:func:`bench.diagnose.diagnose`), whose ``cause`` is returned too.
    """
    cause, line = diagnose(text)
    tail = f": {line}" if line else ""
    if exit_code is not None and exit_code >= 128:
        return None, "crashed", f"runner killed by {exit_text(exit_code)}{tail}", cause
    if is_load_failure(text):
        errs = [ln.strip() for ln in text.splitlines() if "ERROR" in ln]
        return None, "load-failed", "; ".join(errs[:3]) or "model failed to load", cause
    try:
        out = parse_benchmark_output(text)
    except UnparseableOutput as e:
        if exit_code not in (0, None):
            return None, "runner-error", f"runner {exit_text(exit_code).replace('exit', 'exited')}{tail}", cause
        return None, "unparseable", str(e), cause
    if exit_code not in (0, None):
        return out, "runner-error", f"runner {exit_text(exit_code).replace('exit', 'exited')}{tail}", cause
    return out, None, "", None


# run_models.sh's "@@ error CODE DETAIL" lines about one model, in words (the marker never reaches a user)
HARNESS_ERRORS = {"model-missing": "the model file {what} is not on the device (the push did not store it)"}


def parse_harness_log(text: str, spec: ModelSpec) -> ModelResult:
    """Split a ``run_models.sh`` log (``@@`` marker lines) into :class:`RepeatResult` records."""
    res = ModelResult(spec=spec)
    cur: dict[str, Any] | None = None
    body: list[str] = []

    def finish() -> None:
        nonlocal cur, body
        if cur is None:
            return
        text = "\n".join(body)
        out, problem, detail, cause = classify(text, cur.get("exit"))
        if cur.get("exit") is None and problem is None:
            problem, detail = "unparseable", "the repeat did not finish (no exit line)"
            out = None
        res.repeats.append(RepeatResult(cur["k"], cur.get("exit"), cur.get("before", Thermal()),
                                        cur.get("after", Thermal()), out, problem, detail, cur.get("wall_s"), cause))
        cur, body = None, []

    for line in text.splitlines():
        if not line.startswith("@@ "):
            if cur is not None:
                body.append(line)
            continue
        m = re.match(r"@@ repeat=(\d+) (\S+)(.*)$", line)
        if line.startswith("@@ model="):
            m2 = re.search(r"runner_sha256=(\S+)", line)
            if m2 and m2.group(1) != "NA":
                res.runner_sha256_device = m2.group(1)
        elif line.startswith("@@ error"):
            finish()
            code, _, what = line[len("@@ error"):].strip().partition(" ")
            res.error = HARNESS_ERRORS.get(code, "{what}").format(what=what)
        elif m:
            k, what, rest = int(m.group(1)), m.group(2), m.group(3)
            if what == "thermal_before":
                finish()
                cur = {"k": k, "before": Thermal.parse(rest)}
            elif what.startswith("exit=") and cur is not None:
                cur["exit"] = int(what.split("=", 1)[1])
                t0, t1 = re.search(r"t_start_ns=(\d+)", rest), re.search(r"t_end_ns=(\d+)", rest)
                if t0 and t1:
                    cur["wall_s"] = (int(t1.group(1)) - int(t0.group(1))) / 1e9
            elif what == "thermal_after" and cur is not None:
                cur["after"] = Thermal.parse(rest)
                finish()
        elif line.startswith("@@ done"):
            finish()
    finish()
    return res
