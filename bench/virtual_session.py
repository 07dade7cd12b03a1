"""A private adb server (own port and HOME) and a virtual device connected to it, on 127.0.0.1 only.

Used by the bench tests (``tests/bench_adb_fixtures.py``) and by the pipeline (:mod:`bench.pipeline.stages`) when no
phone is attached: nothing touches the default adb server on port 5037 or the user's ``~/.android``.

    with VirtualSession("sm8450") as vs:
        cli.main(["--device", "sm8450", "--adb-port", str(vs.port), "--serial", vs.serial, ...])
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from typing import Any

from bench.adb_server import adb_binary, adb_connect
from bench.results import BenchError


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateAdbServer:
    """``adb -P PORT start-server`` with HOME in a temp folder; :meth:`stop` kills it and removes the HOME."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.home = tempfile.mkdtemp(prefix="coronetgan-adbhome-")
        self.env = {**os.environ, "HOME": self.home, "ANDROID_ADB_SERVER_PORT": str(self.port),
                    "ADB_MDNS": "0", "ADB_MDNS_AUTO_CONNECT": "0"}

    def adb(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run the real adb client against this server (``timeout`` in s: subprocess.TimeoutExpired after it)."""
        return subprocess.run([adb_binary(), "-P", str(self.port), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def start(self) -> "PrivateAdbServer":
        """Start the server; raises :class:`BenchError` when adb fails."""
        r = self.adb("start-server", timeout=60)
        if r.returncode != 0:
            shutil.rmtree(self.home, ignore_errors=True)
            raise BenchError(f"could not start a private adb server on port {self.port}: {r.stderr.strip()}")
        return self

    @property
    def key_path(self) -> str:
        """The server's public key (``HOME/.android/adbkey.pub``, written by adb at its first start)."""
        return os.path.join(self.home, ".android", "adbkey.pub")

    def stop(self) -> None:
        """Kill the server and remove its HOME."""
        try:
            self.adb("kill-server")
        except (OSError, subprocess.SubprocessError):
            pass
        shutil.rmtree(self.home, ignore_errors=True)

    def client(self):
        """An ``adbutils.AdbClient`` of this server."""
        import adbutils

        return adbutils.AdbClient(host="127.0.0.1", port=self.port)


class VirtualSession:
    """A private adb server plus a virtual device of ``profile`` connected to it (state ``device``).

    Attributes after :meth:`start`: ``server`` (:class:`PrivateAdbServer`), ``device``
    (:class:`bench.virtual_device.VirtualDevice`), ``port`` (the adb server port) and ``serial``
    (``127.0.0.1:N``). :meth:`stop` disconnects, stops the device and the server; also on errors in start.
    """

    def __init__(self, profile: str = "sm8450", faults: str | dict[str, str] | None = None) -> None:
        self.profile, self.faults = profile, faults
        self.server: PrivateAdbServer | None = None
        self.device: Any = None

    @property
    def port(self) -> int:
        assert self.server is not None, "VirtualSession not started"
        return self.server.port

    @property
    def serial(self) -> str:
        assert self.device is not None, "VirtualSession not started"
        return self.device.serial

    def start(self) -> "VirtualSession":
        """Start the private adb server and the virtual device, and connect them; returns ``self``. Everything
        started is stopped again when a step fails.

        Raises:
            BenchError: the adb server or the device cannot be started, or adb cannot connect to the device.
        """
        from bench.virtual_device import VirtualDevice

        try:
            self.server = PrivateAdbServer().start()
            self.device = VirtualDevice(self.profile, faults=self.faults or "", adb_key=self.server.key_path).start()
            adb_connect(self.device.serial, adb_client=self.server.client())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Disconnect and stop the device and the server (whatever was started); never raises for a part that
        is already gone."""
        if self.device is not None and self.server is not None:
            try:
                self.server.client().disconnect(self.device.serial)
            except Exception:
                pass
        if self.device is not None:
            self.device.stop()
            self.device = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> "VirtualSession":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
