"""Helpers for the bench tests: fixtures (tiny models, a private adb server with a virtual SM8450), the bench
CLI run against them, and a raw adb wire client.

Test modules import the fixtures by name (``from bench_adb_fixtures import adb_server, vdev, ...``).
"""
from __future__ import annotations

import base64
import json
import socket
import struct
import time
from pathlib import Path

import pytest

import bench_models
from bench import cli
from bench.adb_server import adb_connect
from bench.virtual_device import VirtualDevice
# The private adb server and free-port logic live in bench (the pipeline uses them too).
from bench.virtual_session import PrivateAdbServer, VirtualSession, free_port  # noqa: F401  (re-exported)

REPO = Path(__file__).resolve().parents[1]
FAST = ["--warmup", "1", "--runs", "5", "--repeats", "1", "--cooldown", "0", "--threads", "1",
        "--runner-arg=--warmup_min_secs=0"]


@pytest.fixture(scope="session")
def tiny_models(request) -> dict:
    """{label: {dtype: path}} of the tiny test models (built once, kept in pytest's cache folder)."""
    return bench_models.make_models(request.config.cache.mkdir("bench_tflite_models"))


@pytest.fixture(scope="session")
def adb_key(tmp_path_factory) -> str:
    """An adb public key made for the tests (``adb keygen``), for virtual devices that need one to trust but no
    server: the default key (``~/.android/adbkey.pub``) exists only where an adb server once ran."""
    import subprocess

    from bench.adb_server import adb_binary

    path = tmp_path_factory.mktemp("adbkey") / "adbkey"
    subprocess.run([adb_binary(), "keygen", str(path)], check=True, capture_output=True, timeout=60)
    return f"{path}.pub"


@pytest.fixture(scope="module")
def adb_server():
    """A private adb server (own port and HOME) for the module's tests."""
    srv = PrivateAdbServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def vdev_module(adb_server):
    """A virtual SM8450 trusting the module's adb server, connected to it."""
    dev = VirtualDevice("sm8450", adb_key=adb_server.key_path).start()
    adb_connect(dev.serial, adb_client=adb_server.client())
    yield dev
    adb_server.client().disconnect(dev.serial)
    dev.stop()


@pytest.fixture
def vdev(vdev_module, adb_server):
    """The module's virtual SM8450, reset to no faults and connected."""
    vdev_module.set_faults(None)
    if vdev_module.vanished:
        vdev_module.revive()
        adb_connect(vdev_module.serial, adb_client=adb_server.client())
    return vdev_module


def run_cli(adb_server, out: Path, models: list[str], *extra: str, device: str = "sm8450") -> int:
    """``bench.cli.main`` on the module's adb server with the fast protocol; returns the exit status."""
    return cli.main(["--device", device, "--adb-port", str(adb_server.port), "--models", *models,
                     "--out", str(out), *FAST, *extra])


def report(out: Path) -> dict:
    """The ``latency.json`` in ``out``."""
    return json.loads((out / "latency.json").read_text())


def _der(data: bytes, i: int) -> tuple[int, bytes, int]:
    """One DER element at ``i``: (tag, contents, index after it)."""
    tag, n = data[i], data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[i:i + k], "big")
        i += k
    return tag, data[i:i + n], i + n


def private_key(path: str | Path) -> tuple[int, int]:
    """``(n, d)`` of an adb private key file (``adbkey``: PEM PKCS#8 RSA, RFC 5208 / RFC 8017 A.1.2)."""
    der = base64.b64decode("".join(ln for ln in Path(path).read_text().splitlines() if not ln.startswith("-----")))
    _, info, _ = _der(der, 0)
    _, _, i = _der(info, 0)      # version
    _, _, i = _der(info, i)      # algorithm identifier
    _, octets, _ = _der(info, i)
    _, rsa, _ = _der(octets, 0)
    ints, i = [], 0
    while i < len(rsa):
        _, v, i = _der(rsa, i)
        ints.append(int.from_bytes(v, "big"))
    return ints[1], ints[3]


def sign_token(token: bytes, key: tuple[int, int]) -> bytes:
    """adb's signature of an AUTH token: RSA PKCS#1 v1.5 over the token taken as a SHA-1 digest."""
    n, d = key
    digest_info = bytes.fromhex("3021300906052b0e03021a05000414") + token
    m = b"\x00\x01" + b"\xff" * (256 - 3 - len(digest_info)) + b"\x00" + digest_info
    return pow(int.from_bytes(m, "big"), d, n).to_bytes(256, "big")


class RawHost:
    """Minimal adb *host* side speaking the wire protocol straight to a device socket (no adb server)."""

    CNXN, OPEN, OKAY, CLSE, WRTE, AUTH = 0x4E584E43, 0x4E45504F, 0x59414B4F, 0x45534C43, 0x45545257, 0x48545541

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

    def hello(self) -> bytes:
        """Send CNXN; returns the device's AUTH token."""
        self.send(self.CNXN, 0x01000001, 1 << 20, b"host::features=shell_v2,cmd,stat_v2\0")
        cmd, kind, _, token = self.recv()
        assert (cmd, kind, len(token)) == (self.AUTH, 1, 20)
        return token

    def connect(self, key: str | Path) -> str:
        """CNXN and the AUTH handshake with the private key file ``key``; returns the device's banner."""
        token = self.hello()
        self.send(self.AUTH, 2, 0, sign_token(token, private_key(key)))
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
