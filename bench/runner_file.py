"""The runner bench pushes to the device: which file, and whether its figures are phone figures.

A phone figure needs TFLite's ``benchmark_model`` built for Android on the phone's CPU: an ELF binary for the
phone's ABI whose program interpreter (if any) is Android's ``/system/bin/linker64``. Anything else (a
script, a Linux/glibc build, another CPU) is refused, since whatever it runs would be reported as the phone's
latency; ``--runner-kind host`` runs it anyway and marks every figure as a host figure.
"""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

from compress.errors import InputError

RUNNER_ENV = "CORONETGAN_BENCHMARK_MODEL"
RUNNER_KINDS = ("android", "host")
# ELF e_machine of each Android ABI (ELF gABI machine numbers); linker of 64- and 32-bit Android processes
ABI_MACHINES = {"arm64-v8a": (183, "aarch64"), "x86_64": (62, "x86-64"), "armeabi-v7a": (40, "arm"),
                "armeabi": (40, "arm"), "x86": (3, "x86")}
MACHINE_NAMES = {183: "aarch64", 62: "x86-64", 40: "arm", 3: "x86", 243: "riscv"}
ANDROID_LINKERS = (b"/system/bin/linker64", b"/system/bin/linker")
PT_INTERP = 3


def _interpreter(data: bytes) -> bytes | None:
    """The PT_INTERP path of a 64-bit little-endian ELF image (``None`` when statically linked)."""
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 56 > len(data):
            break
        p_type, = struct.unpack_from("<I", data, off)
        if p_type == PT_INTERP:
            p_offset, = struct.unpack_from("<Q", data, off + 8)
            p_filesz, = struct.unpack_from("<Q", data, off + 32)
            return data[p_offset:p_offset + p_filesz].rstrip(b"\0")
    return None


def android_elf_problem(path: Path, abi: str) -> str | None:
    """Why ``path`` is not an Android ELF executable for ``abi`` (e.g. ``arm64-v8a``), or ``None`` if it is."""
    with open(path, "rb") as fh:
        data = fh.read(1 << 16)
    if data[:2] == b"#!":
        return f"it is a script ({data.splitlines()[0][:60].decode('utf-8', 'replace')})"
    if data[:4] != b"\x7fELF":
        return "it is not an ELF binary"
    want, want_name = ABI_MACHINES.get(abi, (None, abi))
    machine = int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")
    if want is not None and machine != want:
        return f"it is an ELF binary for {MACHINE_NAMES.get(machine, f'machine {machine}')}, not {want_name}"
    if data[4] == 2 and data[5] == 1 and len(data) >= 64:
        interp = _interpreter(data)
        if interp is not None and interp not in ANDROID_LINKERS:
            return (f"it is a Linux build: its interpreter is {interp.decode('utf-8', 'replace')}, Android's is "
                    "/system/bin/linker64")
    return None


def resolve_runner(runner: str | None, props: dict[str, str], workdir: str | os.PathLike | None = None,
                   kind: str = "android") -> tuple[Path, str]:
    """The local runner file and the kind of figures it gives: ``(path, "android" | "host" | "virtual")``.

    The file is ``runner`` (``--runner``), else ``$CORONETGAN_BENCHMARK_MODEL``, else, on the virtual device
    only, a freshly written virtual benchmark_model (in ``workdir/.virtual_runner``; kind ``virtual``).
    ``kind`` is ``--runner-kind``: ``android`` requires an Android ELF for the device's ABI
    (``ro.product.cpu.abi``); ``host`` accepts any file and marks its figures as host figures.

    Raises :class:`InputError` when no runner is given for a real phone, the file is missing, or (kind
    ``android``) it is not an Android ELF executable for the device's ABI.
    """
    if kind not in RUNNER_KINDS:
        raise InputError(f"--runner-kind {kind!r}: expected one of {', '.join(RUNNER_KINDS)}")
    path = runner or os.environ.get(RUNNER_ENV)
    if not path:
        if props.get("ro.coronetgan.virtual") == "1":
            from bench.virtual_device.benchmark_model import write_runner

            folder = (Path(workdir) / ".virtual_runner" if workdir
                      else Path(tempfile.mkdtemp(prefix="coronetgan-vrunner-")))
            return write_runner(folder / "benchmark_model"), "virtual"
        raise InputError(f"no runner: pass --runner PATH or set {RUNNER_ENV} to TFLite's benchmark_model for "
                         "Android arm64 (see android_harness/README.md)")
    p = Path(path)
    source = "--runner" if runner else RUNNER_ENV
    if not p.is_file():
        raise InputError(f"runner {p} (from {source}) not found")
    if kind == "android":
        abi = props.get("ro.product.cpu.abi") or "arm64-v8a"
        why = android_elf_problem(p, abi)
        if why:
            raise InputError(f"runner {p} (from {source}) is not an Android {abi} executable: {why}. Its figures "
                             "would pass for phone figures; use TFLite's benchmark_model for Android "
                             "(android_harness/README.md), or pass --runner-kind host to mark every figure as "
                             "a host figure")
    return p, kind
