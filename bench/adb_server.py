"""The adb server on this machine: its executable, starting it, a client of it, and ``adb connect``.

Its own module (it needs only :mod:`bench.results`) so that ``python -m bench.virtual_device --connect`` uses it
without importing :mod:`bench.adb_backend`, which imports the virtual device's runner: no import cycle.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time

from bench.results import BenchError


def adb_binary() -> str:
    """The adb executable: ``$ADB`` if set, else the one bundled with adbutils."""
    import adbutils

    return os.environ.get("ADB") or adbutils.adb_path()


def start_server(port: int = 5037, env: dict[str, str] | None = None) -> None:
    """Start an adb server on ``port`` unless one answers there. Raises :class:`BenchError` on failure."""
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return
    r = subprocess.run([adb_binary(), "-P", str(port), "start-server"], env=env, capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise BenchError(f"could not start the adb server on port {port}: {r.stderr.strip()}")


def client(host: str = "127.0.0.1", port: int = 5037, start: bool = True):
    """An ``adbutils.AdbClient`` for the adb server at host:port (started first if local and ``start``)."""
    import adbutils

    if start and host in ("127.0.0.1", "localhost"):
        start_server(port)
    return adbutils.AdbClient(host=host, port=port)


def adb_connect(serial: str, adb_port: int = 5037, timeout: float = 20.0, adb_client=None):
    """``adb connect serial`` and wait until the server reports it in state ``device``.

    ``adb connect`` returns before the handshake, so this polls. Returns the client. Raises
    :class:`BenchError` when the device is not ready within ``timeout`` s (naming its state and what to do).
    """
    from bench.devices import state_advice

    c = adb_client or client(port=adb_port)
    c.connect(serial, timeout=timeout)
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        for d in c.list():
            if d.serial == serial:
                state = d.state
                if state == "device":
                    return c
        time.sleep(0.05)
    where = f"it is {state_advice(serial, state)}" if state else "the adb server does not list it"
    raise BenchError(f"adb connect {serial}: the device did not reach state 'device' in {timeout:g} s; {where}")
