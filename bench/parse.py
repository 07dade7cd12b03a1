"""Parse the text that TFLite's ``benchmark_model`` prints, in its older and newer forms.

Two output forms exist in the wild (see ``docs/bench.md``):

* **newer** builds prefix every line with ``INFO: `` (``ERROR: `` / ``WARNING: `` for problems) and add
  ``p5=… median=… p95=…`` to the statistics line;
* **older** builds print bare lines (``Initialized session in 512.3ms.``) and report memory as
  ``Peak memory footprint (MB): init=… overall=…``.

:func:`parse_benchmark_output` understands both and returns a :class:`BenchmarkOutput`. All times that
benchmark_model prints in µs are kept in µs in :class:`TimingBlock` and converted to ms by the properties
of :class:`BenchmarkOutput` whose names end in ``_ms``.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

__all__ = ["TimingBlock", "DelegateInfo", "BenchmarkOutput", "UnparseableOutput", "parse_benchmark_output"]


class UnparseableOutput(ValueError):
    """benchmark_model's output holds no timing statistics (no ``count=…`` line and no timing summary)."""


_PREFIX = re.compile(r"^(?:INFO|WARNING|ERROR|VERBOSE|DEBUG):\s*")
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_STATS = re.compile(r"^count=(\d+)\b(.*)$")
_KV = re.compile(r"\b(first|curr|min|max|avg|std|p5|median|p95)=(" + _NUM + r")")
_SUMMARY = re.compile(
    r"Inference timings in us:\s*Init:\s*(" + _NUM + r"),\s*First inference:\s*(" + _NUM
    + r"),\s*Warmup \(avg\):\s*(" + _NUM + r"|-?nan|-?inf),\s*Inference \(avg\):\s*(" + _NUM + r"|-?nan|-?inf)",
    re.IGNORECASE)
_INIT = re.compile(r"Initialized session in\s*(" + _NUM + r")\s*ms", re.IGNORECASE)
_MEM_NEW = re.compile(r"Memory footprint delta from the start of the tool \(MB\):\s*init=(" + _NUM
                      + r")\s+overall=(" + _NUM + r")")
_MEM_OLD = re.compile(r"^Peak memory footprint \(MB\):\s*init=(" + _NUM + r")\s+overall=(" + _NUM + r")")
_MEM_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring:\s*(" + _NUM + r")")
_SIZE = re.compile(r"The input model file size \(MB\):\s*(" + _NUM + r")")
_REPLACING = re.compile(r"Replacing\s+(\d+)\s+(?:out of\s+(\d+)\s+)?node\(s\) with delegate \(([^)]*)\) node,"
                        r"\s*yielding\s+(\d+)\s+partitions?")
_APPLIED_FULL = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be completely executed")
_APPLIED_PART = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be partially executed"
                           r"(?: by the delegate w/ (\d+) delegate kernels)?")
_APPLIED_NONE = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed")
_APPLIED_OLD = re.compile(r"^Applied (\S+) delegate\.?$")
_UNSUPPORTED = re.compile(r"Following operations are not supported by GPU delegate:\s*(.*)$")
_PRECISION = re.compile(r"Allow (?:lower precision in gpu|fp16)\s*:\s*\[(\d)\]", re.IGNORECASE)
_VERSION = re.compile(r"\b(?:TF ?Lite|TensorFlow Lite|LiteRT)\b[\w ]*?\bversion\b\s*[:=]?\s*\[?([0-9][\w.+-]*)",
                      re.IGNORECASE)
_LOAD_FAIL = re.compile(r"(Failed to (?:mmap|load|read) model|Could not (?:open|build|load)\b|"
                        r"not a valid Flatbuffer|Failed to (?:construct|create) interpreter|"
                        r"Failed to allocate tensors)", re.IGNORECASE)


@dataclasses.dataclass
class TimingBlock:
    """One ``count=… first=… curr=… min=… max=… avg=… std=…`` statistics line; times in µs.

    ``p5``, ``median`` and ``p95`` are only printed by newer builds (``None`` otherwise).
    """

    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (µs)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class DelegateInfo:
    """What the delegate lines say: nodes replaced, partitions, and full/partial/none coverage.

    ``coverage`` is ``"full"``, ``"partial"``, ``"none"`` or ``"unknown"`` (no delegate line seen, e.g. an
    older build that prints only ``Applied GPU delegate.``). ``nodes_total`` is ``None`` for builds whose
    ``Replacing N node(s)`` line does not give the graph's node count.
    """

    requested: bool = False
    name: str | None = None
    kernel: str | None = None
    nodes_delegated: int | None = None
    nodes_total: int | None = None
    partitions: int | None = None
    coverage: str = "unknown"
    unsupported_ops: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """Short table text: ``full 58/58``, ``PARTIAL 40/58 (3 partitions)``, ``NONE``, ``unknown``."""
        nodes = ""
        if self.nodes_delegated is not None:
            nodes = f" {self.nodes_delegated}/{self.nodes_total if self.nodes_total is not None else '?'}"
        if self.coverage == "full":
            return f"full{nodes}"
        if self.coverage == "partial":
            parts = f" ({self.partitions} partitions)" if self.partitions else ""
            return f"PARTIAL{nodes}{parts}"
        if self.coverage == "none":
            return "NONE (CPU fallback)"
        return "unknown"


@dataclasses.dataclass
class BenchmarkOutput:
    """Everything :func:`parse_benchmark_output` found in one benchmark_model run.

    ``blocks`` are the statistics lines in order: the warm-up block (when printed) and then the timed
    block, which is always the last one (:attr:`timed`). ``init_us``, ``first_us``, ``warmup_avg_us`` and
    ``inference_avg_us`` come from the ``Inference timings in us:`` line (µs); ``init_session_ms`` from
    ``Initialized session in …ms.`` (ms). Memory figures are in MB as printed. ``gpu_precision_loss`` is what
    the build says of ``--gpu_precision_loss_allowed`` (``Allow lower precision in gpu: [1]``; ``None`` if not
    printed); ``version`` the runtime version from a ``… version: X`` line, if the build prints one.
    """

    form: str
    blocks: list[TimingBlock]
    init_session_ms: float | None = None
    init_us: float | None = None
    first_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    mem_init_mb: float | None = None
    mem_overall_mb: float | None = None
    mem_peak_mb: float | None = None
    model_size_mb: float | None = None
    delegate: DelegateInfo = dataclasses.field(default_factory=DelegateInfo)
    errors: list[str] = dataclasses.field(default_factory=list)
    gpu_precision_loss: bool | None = None
    version: str | None = None
    mem_overall_is_peak: bool = False

    @property
    def peak_memory_mb(self) -> float | None:
        """Peak memory in MB: the periodic-monitoring peak (``--report_peak_memory_footprint``), else the older
        form's ``Peak memory footprint (MB): … overall=`` (the newer form's ``overall`` is a delta, not a peak)."""
        if self.mem_peak_mb is not None:
            return self.mem_peak_mb
        return self.mem_overall_mb if self.mem_overall_is_peak else None

    @property
    def timed(self) -> TimingBlock:
        """The timed-runs statistics block (the last ``count=`` line)."""
        return self.blocks[-1]

    @property
    def init_ms(self) -> float | None:
        """Initialisation time in ms (from ``Init:`` in µs, else from ``Initialized session in``)."""
        if self.init_us is not None:
            return self.init_us / 1000.0
        return self.init_session_ms

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["init_ms"] = self.init_ms
        d["peak_memory_mb"] = self.peak_memory_mb
        return d


def _f(x: str) -> float:
    return float(x)


def _strip(line: str) -> tuple[str, str]:
    m = _PREFIX.match(line)
    level = m.group(0).split(":")[0] if m else ""
    return level, line[m.end():] if m else line


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse benchmark_model's combined stdout/stderr ``text`` (either form).

    Returns a :class:`BenchmarkOutput`. Raises :class:`UnparseableOutput` when the text holds no
    ``count=`` statistics line: the runner crashed early, failed to load the model (``errors`` of the
    exception message names the ERROR lines) or printed something else entirely.
    """
    blocks: list[TimingBlock] = []
    out = BenchmarkOutput(form="older", blocks=blocks)
    newer = False
    in_unsupported = False
    delegate = out.delegate
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            in_unsupported = False
            continue
        level, body = _strip(line)
        if in_unsupported:
            # "ERROR: Following operations are not supported by GPU delegate:" is followed by
            # "OP_NAME: reason" lines and "N operations will run on the GPU, and the remaining M ..."
            mo = re.match(r"^([A-Z][A-Z0-9_]+):\s", body)
            if mo and not level:
                delegate.unsupported_ops.append(mo.group(1))
                continue
            in_unsupported = False
        if level == "ERROR" or body.startswith("ERROR"):
            out.errors.append(body)
        m = _STATS.match(body)
        if m and "=" in m.group(2):
            kv = {k: _f(v) for k, v in _KV.findall(m.group(2))}
            if "avg" in kv or "min" in kv:
                blocks.append(TimingBlock(count=int(m.group(1)), **kv))
                newer = newer or bool(level)
                continue
        m = _SUMMARY.search(body)
        if m:
            newer = newer or bool(level)
            vals = []
            for g in m.groups():
                try:
                    vals.append(float(g))
                except ValueError:
                    vals.append(None)
            out.init_us, out.first_us, out.warmup_avg_us, out.inference_avg_us = vals
            continue
        m = _INIT.search(body)
        if m:
            out.init_session_ms = _f(m.group(1))
            continue
        m = _MEM_NEW.search(body) or _MEM_OLD.search(body)
        if m:
            out.mem_init_mb, out.mem_overall_mb = _f(m.group(1)), _f(m.group(2))
            out.mem_overall_is_peak = m.re is _MEM_OLD
            continue
        m = _MEM_PEAK.search(body)
        if m:
            out.mem_peak_mb = _f(m.group(1))
            continue
        m = _SIZE.search(body)
        if m:
            out.model_size_mb = _f(m.group(1))
            continue
        if body.lower().startswith("use gpu") and "[1]" in body:
            delegate.requested = True
        m = _PRECISION.search(body)
        if m:
            out.gpu_precision_loss = m.group(1) == "1"
            continue
        m = _VERSION.search(body)
        if m and out.version is None:
            out.version = m.group(1)
            continue
        m = _REPLACING.search(body)
        if m:
            delegate.requested = True
            delegate.nodes_delegated = (delegate.nodes_delegated or 0) + int(m.group(1))
            if m.group(2) is not None:
                delegate.nodes_total = int(m.group(2))
            delegate.kernel = m.group(3)
            delegate.partitions = (delegate.partitions or 0) + int(m.group(4))
            continue
        m = _UNSUPPORTED.search(body)
        if m:
            delegate.requested = True
            delegate.unsupported_ops.extend(o.split(":")[0].strip() for o in m.group(1).split(",") if o.strip())
            in_unsupported = True
            continue
        m = _APPLIED_FULL.search(body)
        if m:
            delegate.requested, delegate.name, delegate.coverage = True, m.group(1), "full"
            continue
        m = _APPLIED_PART.search(body)
        if m:
            delegate.requested, delegate.name, delegate.coverage = True, m.group(1), "partial"
            continue
        m = _APPLIED_NONE.search(body)
        if m:
            delegate.requested, delegate.name, delegate.coverage = True, m.group(1), "none"
            continue
        m = _APPLIED_OLD.search(body)
        if m:
            delegate.requested, delegate.name = True, m.group(1)
    out.form = "newer" if newer else "older"
    # Older builds say only "Applied GPU delegate." and "Replacing N node(s) ... yielding P partitions":
    # infer the coverage from the node counts where they allow it.
    if delegate.coverage == "unknown" and delegate.nodes_delegated is not None:
        if delegate.nodes_delegated == 0:
            delegate.coverage = "none"
        elif delegate.nodes_total is not None:
            delegate.coverage = "full" if delegate.nodes_delegated >= delegate.nodes_total else "partial"
        elif delegate.partitions and delegate.partitions > 1 or delegate.unsupported_ops:
            delegate.coverage = "partial"
        elif delegate.partitions == 1:
            delegate.coverage = "full"
    if delegate.coverage == "full" and delegate.unsupported_ops:
        delegate.coverage = "partial"
    if not blocks:
        why = "; ".join(out.errors[:3]) if out.errors else "no 'count=' statistics line"
        raise UnparseableOutput(f"benchmark_model output holds no timings ({why})")
    return out


def is_load_failure(text: str) -> bool:
    """True when the runner's output says the model could not be loaded or its interpreter built."""
    return any(_LOAD_FAIL.search(line) for line in text.splitlines())
