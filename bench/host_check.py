"""Load each .tflite on the host, in a child process, before it is timed anywhere.

A truncated or corrupt flatbuffer can make LiteRT crash the process that loads it (SIGSEGV) instead of
raising. Loading in a child process turns that into a message about one file: bench flags that model's row
(``load-failed``) and does not time it. The child also reports the graph's op types and node counts (the
CPU-fallback column names the ops with their counts), its tensor types (dtype of an unnamed file) and its input
shape (the input size column of the tables).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from typing import Sequence

from bench.diagnose import exit_text

log = logging.getLogger(__name__)

# Runs in the child (python -I: no PYTHONPATH, no user site); one JSON line before and after each file, so
# a crash while loading a file names that file.
_CHILD = r"""
import json, sys
from ai_edge_litert.interpreter import Interpreter, OpResolverType
for path in sys.argv[1:]:
    print(json.dumps({"start": path}), flush=True)
    try:
        # without XNNPACK, which would replace nodes by DELEGATE ones: the op list is the graph's own
        it = Interpreter(model_path=path,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    except Exception as e:
        msg = str(e).strip().splitlines()
        print(json.dumps({"path": path, "error": type(e).__name__ + (": " + msg[0] if msg else "")}), flush=True)
        continue
    ops = {}
    try:
        for op in it._get_ops_details():
            ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
    except Exception:
        ops = None
    types = sorted({getattr(t["dtype"], "__name__", str(t["dtype"])) for t in it.get_tensor_details()})
    inputs = it.get_input_details()
    shape = [int(x) for x in inputs[0]["shape"]] if inputs else None
    print(json.dumps({"path": path, "ops": ops, "tensor_types": types, "input_shape": shape}), flush=True)
"""


@dataclasses.dataclass
class HostCheck:
    """What loading one file on the host showed: ``ok`` (``None`` when the check could not run), the
    ``error`` when it did not load, the graph's ``ops`` (op type -> node count), ``tensor_types`` and the
    first input's ``input_shape`` (e.g. [1, 256, 256, 3])."""

    ok: bool | None
    error: str | None = None
    ops: dict[str, int] | None = None
    tensor_types: list[str] = dataclasses.field(default_factory=list)
    input_shape: list[int] | None = None


def check_models(paths: Sequence[str], timeout_s: float = 300.0) -> dict[str, HostCheck]:
    """Load every file of ``paths`` with LiteRT in a child process; returns ``{path: HostCheck}``.

    A file whose loading kills the child (a signal) or raises gets ``ok=False`` and the reason; the other
    files are still checked (a new child starts after a crash). When LiteRT is not importable or the
    child cannot start, the files get ``ok=None`` (unchecked) and a warning is logged. ``timeout_s`` bounds
    each child (a file still loading then is reported as not loading in time).
    """
    results: dict[str, HostCheck] = {}
    remaining = list(dict.fromkeys(str(p) for p in paths))
    while remaining:
        current: str | None = None
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", _CHILD, *remaining], capture_output=True,
                                  text=True, timeout=timeout_s)
            stdout, rc, timed_out = proc.stdout, proc.returncode, False
        except subprocess.TimeoutExpired as e:
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            proc, rc, timed_out = None, None, True
        except OSError as e:
            log.warning("host load check could not start (%s); models are not checked on the host", e)
            break
        for line in stdout.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "start" in rec:
                current = rec["start"]
            elif rec.get("path"):
                p = rec["path"]
                results[p] = (HostCheck(False, rec["error"]) if rec.get("error")
                              else HostCheck(True, None, rec.get("ops"), rec.get("tensor_types") or [],
                                             rec.get("input_shape")))
                current = None
        if current is not None:
            if timed_out:
                why = f"still loading after {timeout_s:g} s"
            elif rc is not None and rc < 0:
                why = f"LiteRT was killed by {exit_text(128 - rc)} while loading it (a truncated or corrupt file)"
            else:
                why = f"LiteRT exited {rc} while loading it"
            results[current] = HostCheck(False, why)
        elif not any(p in results for p in remaining):
            # the child died before its first file: LiteRT missing or broken, not a bad model
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1] if proc is not None else "timed out"
            log.warning("host load check unavailable (%s); models are not checked on the host", err)
            break
        remaining = [p for p in remaining if p not in results]
    for p in remaining:
        results.setdefault(p, HostCheck(None))
    return results
