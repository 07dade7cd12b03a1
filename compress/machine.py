"""The machine a figure was measured on: one description (a dict) and its one-line text.

Every record that says where it ran (the pipeline record, the host rows of the latency tables, the release
index) uses :func:`describe_machine` and :func:`machine_text`, so that the same machine reads the same
everywhere.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Mapping


def _cpu_name() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()`` or the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    """Total memory in GB (2^30 bytes) from ``/proc/meminfo``'s first line (``MemTotal: N kB``); None elsewhere."""
    try:
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
        return round(int(mem[1]) / 1024 ** 2, 1)
    except (OSError, IndexError, ValueError):
        return None


def describe_machine(gpu: bool = True) -> dict[str, Any]:
    """This machine in a few JSON-ready facts.

    Keys: ``host`` (network name), ``cpu`` (model name), ``cores`` (logical CPUs), ``system`` (OS and
    kernel release), ``python`` (version); ``memory_gb`` (total RAM, GB = 2^30 bytes) where
    ``/proc/meminfo`` is readable; ``gpu`` (CUDA device 0's name) when ``gpu`` is true and torch sees a CUDA
    GPU. ``gpu=False`` skips importing torch (about a second), for callers that time their own start-up.
    Raises nothing: a fact that cannot be read is left out or falls back to :mod:`platform`.
    """
    info: dict[str, Any] = {"host": platform.node(), "cpu": _cpu_name(), "cores": os.cpu_count(),
                            "system": f"{platform.system()} {platform.release()}",
                            "python": platform.python_version()}
    memory = _memory_gb()
    if memory is not None:
        info["memory_gb"] = memory
    if gpu:
        try:
            import torch

            if torch.cuda.is_available():
                info["gpu"] = torch.cuda.get_device_name(0)
        except Exception:  # pragma: no cover - torch is a dependency; a broken CUDA setup means "no GPU"
            pass
    return info


def machine_text(machine: Mapping[str, Any] | str | None) -> str:
    """One line for a :func:`describe_machine` dict: ``CPU, N cores, M GB RAM, GPU G (host)``.

    A string (a description recorded by an older version) is returned as it is; ``None`` or an empty dict
    gives ``unknown machine``.
    """
    if isinstance(machine, str):
        return machine
    if not machine:
        return "unknown machine"
    text = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"
    if machine.get("memory_gb"):
        text += f", {machine['memory_gb']} GB RAM"
    if machine.get("gpu"):
        text += f", GPU {machine['gpu']}"
    return text + f" ({machine.get('host', '?')})"
