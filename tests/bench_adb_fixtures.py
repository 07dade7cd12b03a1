"""Helpers for the bench tests: a private adb server (own port and HOME) and a raw adb wire client."""
from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

# The private adb server and free-port logic live in bench (the pipeline uses them too).
from bench.virtual_session import PrivateAdbServer, VirtualSession, free_port  # noqa: F401  (re-exported)


class RawHost:
    """Minimal adb *host* side speaking the wire protocol straight to a device socket (no adb server)."""

    CNXN, OPEN, OKAY, CLSE, WRTE = 0x4E584E43, 0x4E45504F, 0x59414B4F, 0x45534C43, 0x45545257

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.local = 100

    def send(self, cmd: int, a0: int, a1: int, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack("<6I", cmd, a0, a1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF) + data)

    def recv(self) -> tuple[int, int, int, bytes]:
        head = self._exact(24)
        cmd, a0, a1, n, _crc, magic = struct.unpack("<6I", head)
        assert magic == cmd ^ 0xFFFFFFFF
        return cmd, a0, a1, self._exact(n) if n else b""

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            c = self.sock.recv(n - len(buf))
            if not c:
                raise EOFError
            buf += c
        return buf

    def connect(self) -> str:
        self.send(self.CNXN, 0x01000001, 1 << 20, b"host::features=shell_v2,cmd,stat_v2\0")
        cmd, ver, maxdata, banner = self.recv()
        assert cmd == self.CNXN and ver == 0x01000001 and maxdata == 262144
        return banner.decode()

    def open(self, service: str) -> int:
        self.local += 1
        self.send(self.OPEN, self.local, 0, service.encode() + b"\0")
        cmd, remote, mine, _ = self.recv()
        assert cmd == self.OKAY and mine == self.local
        return remote

    def read_until_close(self, remote: int, deadline: float = 10.0) -> bytes:
        out = b""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            cmd, a0, a1, data = self.recv()
            if cmd == self.WRTE:
                out += data
                self.send(self.OKAY, self.local, a0)
            elif cmd == self.CLSE:
                return out
        raise TimeoutError

    def close(self) -> None:
        self.sock.close()


def sandbox_run_dirs(sandbox: Path) -> list[str]:
    """bench's per-run folders left in a virtual device's /data/local/tmp."""
    return sorted(p.name for p in (sandbox / "data/local/tmp").glob("coronetgan-bench-*"))
