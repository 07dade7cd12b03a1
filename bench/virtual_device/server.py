"""A virtual Android device that speaks adb's device-side wire protocol on 127.0.0.1.

The real adb server connects to it with ``adb connect 127.0.0.1:PORT`` and then treats it like a phone
attached over TCP/IP: ``shell`` (v1 and shell_v2 with exit codes), ``exec`` and ``sync`` (STAT, STA2, LST2,
LIST, SEND, RECV, QUIT) work, so bench runs unchanged against it.

Who may use it: it listens on 127.0.0.1 only and runs adb's RSA AUTH handshake; only the adb server whose
key it was started with (:mod:`bench.virtual_device.adb_auth`) gets past it, every other client is refused
(the adb server lists the device as ``unauthorized``; a raw socket that skips AUTH is dropped).

What it is: a test double for the *transport and the device-side environment*, not an emulator. Shell
commands run with the host's ``/bin/sh -c`` in a sandbox folder, as adbd runs them with the phone's shell:
``/data/local/tmp``, ``/sdcard`` and ``/sys/class/thermal`` at the start of a path are rewritten to folders
under the sandbox (through a link whose path has only shell-safe characters, so no quoting changes), and
``getprop``, ``dumpsys`` (``thermalservice``, ``SurfaceFlinger``) and ``chmod`` come from the sandbox's
``system/bin`` and answer from the chosen profile (``bench/profiles.json``). Sync paths outside those
folders are refused. The authenticated adb server can still name other host paths in a command.

Faults (``faults=`` or :meth:`VirtualDevice.set_faults`, same syntax as ``CORONETGAN_VDEV_FAULTS``):
``vanish_on=SUBSTR`` (drop every connection and stop listening when a shell command containing SUBSTR
starts), ``noexec`` (pushed files lose their exec bit and chmod does nothing), ``drop_push=SUBSTR`` (a pushed
file whose path contains SUBSTR is accepted but not stored), ``state=unauthorized|offline|recovery|sideload|
rescue|bootloader`` (the handshake a phone in that state gives; set before ``adb connect``), and the runner
faults ``crash[=substr]``, ``garbage[=substr]``, ``throttle_after=K``, ``gpu_unsupported=OP+OP``,
``older_output``, ``delegate_fail[=substr]``, ``missing_lib``, ``oom[=substr]``, ``slow=SECONDS`` (see
:mod:`bench.virtual_device.benchmark_model`).
"""
from __future__ import annotations

import errno
import logging
import os
import posixpath
import re
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.profiles import get_profile
from bench.virtual_device.adb_auth import TOKEN_SIZE, PublicKey, load_key, user_key_path
from bench.virtual_device.benchmark_model import parse_faults
from compress.children import shell_status
from compress.errors import InputError

log = logging.getLogger(__name__)

A_SYNC, A_CNXN, A_OPEN, A_OKAY = 0x434E5953, 0x4E584E43, 0x4E45504F, 0x59414B4F
A_CLSE, A_WRTE, A_AUTH, A_STLS = 0x45534C43, 0x45545257, 0x48545541, 0x534C5453
A_VERSION = 0x01000001
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
MAX_PAYLOAD = 262144
FEATURES = "shell_v2,cmd,stat_v2,fixed_push_mkdir"
MAPPED = ("/data/local/tmp", "/sdcard", "/storage/emulated/0", "/sys/class/thermal")
SYNC_DATA_MAX = 64 * 1024
BANNER_MODES = ("recovery", "sideload", "rescue", "bootloader")
_MAPPED_RE = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, MAPPED)) + r")(?![\w.-])")
_SHELL_SAFE = re.compile(r"^[A-Za-z0-9._/-]+$")


def _shell_safe_root(sandbox: Path) -> tuple[Path, Path | None]:
    """A path to ``sandbox`` made of shell-safe characters: the sandbox itself when its path is, else a link
    in a fresh temp folder. Returns ``(path, folder to remove at stop or None)``. Raises :class:`InputError`
    when no temp folder has a shell-safe path."""
    if _SHELL_SAFE.match(str(sandbox)):
        return sandbox, None
    for base in (tempfile.gettempdir(), "/tmp"):
        if _SHELL_SAFE.match(base) and os.path.isdir(base):
            folder = Path(tempfile.mkdtemp(prefix="coronetgan-vdev-link-", dir=base))
            (folder / "root").symlink_to(sandbox, target_is_directory=True)
            return folder / "root", folder
    raise InputError(f"virtual device sandbox {sandbox}: its path has characters a shell would interpret and "
                     "no temp folder with a plain path exists for a link to it; choose another --sandbox")


def _name(cmd: int) -> str:
    return struct.pack("<I", cmd).decode("ascii", "replace")


def _pack(cmd: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return struct.pack("<6I", cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF) + data


class _Closed(Exception):
    pass


class _Stream:
    """One adb stream (an OPENed service): buffered input from WRTE packets, flow-controlled output."""

    def __init__(self, conn: "_Connection", local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.closed = False
        self.acked = threading.Event()
        self.acked.set()

    # -- input -----------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        with self.cond:
            self.buf += data
            self.cond.notify_all()

    def read_exact(self, n: int) -> bytes:
        with self.cond:
            while len(self.buf) < n:
                if self.closed:
                    raise _Closed()
                self.cond.wait(timeout=1.0)
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out

    def drain(self) -> bytes:
        with self.cond:
            out = bytes(self.buf)
            self.buf.clear()
            return out

    # -- output ----------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send ``data`` as WRTE packets of at most maxdata bytes, each after the previous one's OKAY."""
        step = self.conn.max_payload
        for i in range(0, len(data), step):
            while not self.acked.wait(timeout=1.0):
                if self.closed or self.conn.dead:
                    raise _Closed()
            if self.closed or self.conn.dead:
                raise _Closed()
            self.acked.clear()
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i:i + step])

    def close(self) -> None:
        """Close from the device side (CLSE to the host) unless the host already closed it."""
        with self.cond:
            was = self.closed
            self.closed = True
            self.cond.notify_all()
        self.acked.set()
        if not was:
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
        self.conn.streams.pop(self.local_id, None)


class _Connection:
    """One TCP connection from the adb server (one transport)."""

    def __init__(self, device: "VirtualDevice", sock: socket.socket):
        self.device, self.sock = device, sock
        self.lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.max_payload = MAX_PAYLOAD
        self.dead = False
        self.token: bytes | None = None
        self.authenticated = False

    def send(self, cmd: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        if self.dead:
            raise _Closed()
        try:
            with self.lock:
                self.sock.sendall(_pack(cmd, arg0, arg1, data))
        except OSError:
            self.kill()
            raise _Closed() from None

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise _Closed()
            buf += chunk
        return bytes(buf)

    def kill(self) -> None:
        self.dead = True
        for s in list(self.streams.values()):
            with s.cond:
                s.closed = True
                s.cond.notify_all()
            s.acked.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def serve(self) -> None:
        try:
            while not self.dead:
                cmd, arg0, arg1, length, _crc, magic = struct.unpack("<6I", self._recv_exact(24))
                data = self._recv_exact(length) if length else b""
                if magic != cmd ^ 0xFFFFFFFF:
                    log.warning("bad packet magic, dropping connection")
                    break
                self.dispatch(cmd, arg0, arg1, data)
        except (_Closed, OSError):
            pass
        finally:
            self.kill()
            self.device._forget(self)

    def dispatch(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        if cmd == A_CNXN:
            self.max_payload = max(4096, min(arg1 or MAX_PAYLOAD, MAX_PAYLOAD))
            if self.device.faults.get("state") == "offline":
                return  # never answers: the adb server keeps the transport offline
            self._send_token()
        elif cmd == A_AUTH:
            self._auth(arg0, data)
        elif not self.authenticated:
            # only an adb server that proved it holds a trusted key may open services
            log.warning("virtual device: %s before authentication, dropping the connection", _name(cmd))
            self.kill()
        elif cmd == A_OPEN:
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            local = self.next_id
            self.next_id += 1
            handler = self.device._service(service)
            if handler is None:
                log.info("virtual device: unsupported service %r", service)
                self.send(A_CLSE, 0, arg0)
                return
            stream = _Stream(self, local, arg0)
            self.streams[local] = stream
            self.send(A_OKAY, local, arg0)
            threading.Thread(target=self._run_service, args=(handler, stream), daemon=True).start()
        elif cmd == A_WRTE:
            s = self.streams.get(arg1)
            if s is None:
                self.send(A_CLSE, arg1, arg0)
                return
            s.feed(data)
            self.send(A_OKAY, arg1, arg0)
        elif cmd == A_OKAY:
            s = self.streams.get(arg1)
            if s is not None:
                s.acked.set()
        elif cmd == A_CLSE:
            s = self.streams.pop(arg1, None)
            if s is not None:
                was = s.closed
                with s.cond:
                    s.closed = True
                    s.cond.notify_all()
                s.acked.set()
                if not was:
                    self.send(A_CLSE, arg1, arg0)

    def _send_token(self) -> None:
        self.token = secrets.token_bytes(TOKEN_SIZE)
        self.send(A_AUTH, AUTH_TOKEN, 0, self.token)

    def _auth(self, kind: int, data: bytes) -> None:
        """adb's AUTH exchange (device side): accept a signature by a trusted key, else ask for another one.

        A public key offered afterwards (AUTH_RSAPUBLICKEY) is never accepted: a real phone would show its
        'Allow USB debugging?' prompt; the adb server then lists the device as unauthorized.
        """
        if kind == AUTH_SIGNATURE and self.token is not None:
            ok = self.device.faults.get("state") != "unauthorized" and any(
                k.verifies(self.token, data) for k in self.device.trusted_keys)
            if ok:
                self.authenticated = True
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner().encode())
            else:
                self._send_token()
        elif kind == AUTH_RSAPUBLICKEY:
            comment = data.rstrip(b"\0").decode("utf-8", "replace").partition(" ")[2]
            log.info("virtual device: refused the untrusted adb key %r", comment)

    def _run_service(self, handler: Callable[[_Stream], None], stream: _Stream) -> None:
        try:
            handler(stream)
        except _Closed:
            pass
        except Exception:  # pragma: no cover - a bug in a service must not kill the transport
            log.exception("virtual device service failed")
        try:
            stream.close()
        except _Closed:
            pass


class VirtualDevice:
    """Virtual Android device on ``127.0.0.1:port`` answering as the phone in profile ``profile``.

    ``sandbox``: folder that holds the device's files (a temp folder if ``None``, removed by :meth:`stop`).
    ``port`` 0 picks a free port. ``faults``: see the module docstring. ``adb_key``: the public key
    (``adbkey.pub`` path or :class:`PublicKey`, or several) of the adb server allowed to use the device;
    default the key of this user's adb server (:func:`bench.virtual_device.adb_auth.user_key_path`). Any
    other client fails adb's AUTH handshake (the server lists the device as unauthorized). Use as a context
    manager or call :meth:`start` / :meth:`stop`. :attr:`serial` is what ``adb connect`` names it
    (``127.0.0.1:PORT``). Raises :class:`InputError` for an unknown profile or an unreadable key.
    """

    def __init__(self, profile: str = "sm8450", port: int = 0, sandbox: str | os.PathLike | None = None,
                 faults: str | dict[str, str] | None = None,
                 adb_key: str | os.PathLike | PublicKey | Sequence[str | os.PathLike | PublicKey] | None = None):
        self.profile = get_profile(profile)
        self.profile_name = self.profile["key"]
        self.virtual = self.profile.get("virtual") or {}
        keys = [user_key_path()] if adb_key is None else (
            list(adb_key) if isinstance(adb_key, (list, tuple)) else [adb_key])
        self.trusted_keys = [k if isinstance(k, PublicKey) else load_key(k) for k in keys]
        self._own_sandbox = sandbox is None
        self.sandbox = Path(tempfile.mkdtemp(prefix="coronetgan-vdev-") if sandbox is None else sandbox).resolve()
        self.root, self._link_dir = _shell_safe_root(self.sandbox)
        self.port = port
        self.faults: dict[str, str] = {}
        self.set_faults(faults)
        self.shell_count = 0
        self.vanished = False
        self._listener: socket.socket | None = None
        self._conns: set[_Connection] = set()
        self._lock = threading.Lock()
        self._setup_sandbox()

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def serial(self) -> str:
        """adb serial of the device once connected (``127.0.0.1:PORT``)."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> "VirtualDevice":
        """Listen on 127.0.0.1 (only) and accept adb server connections in a background thread."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(8)
        self.port = s.getsockname()[1]
        self._listener = s
        self.vanished = False
        threading.Thread(target=self._accept_loop, args=(s,), daemon=True).start()
        return self

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)

    def vanish(self) -> None:
        """Drop every connection and stop listening: to the adb server the phone was unplugged."""
        self.vanished = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            try:
                self._listener.close()
            finally:
                self._listener = None
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.kill()

    def revive(self) -> None:
        """Listen again on the same port after :meth:`vanish` (faults ``vanish_on`` are cleared)."""
        self.faults.pop("vanish_on", None)
        if self._listener is None:
            self.start()

    def stop(self) -> None:
        """Vanish and, if the sandbox was a temp folder, delete it (and the shell-safe link to it)."""
        self.vanish()
        if self._link_dir is not None:
            shutil.rmtree(self._link_dir, ignore_errors=True)
        if self._own_sandbox:
            shutil.rmtree(self.sandbox, ignore_errors=True)

    def __enter__(self) -> "VirtualDevice":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def set_faults(self, faults: str | dict[str, str] | None) -> None:
        """Replace the active faults (string ``"crash=x,throttle_after=2"`` or dict); resets thermal state."""
        self.faults = parse_faults(faults) if isinstance(faults, str) or faults is None else dict(faults)
        state = self.sandbox / ".vdev"
        if state.is_dir():
            (state / "thermal_status").write_text("0\n")
            (state / "runner_invocations").unlink(missing_ok=True)
            for z in sorted((self.sandbox / "sys/class/thermal").glob("thermal_zone*")):
                (z / "temp").write_text("38500\n" if z.name.endswith("0") else "36200\n")

    # -- device-side environment -----------------------------------------------------------------
    def banner(self) -> str:
        """CNXN banner: ``device::ro.product.name=…;ro.product.model=…;ro.product.device=…;features=…``.

        With the fault ``state=recovery`` (``sideload``, ``rescue``, ``bootloader``) the banner starts with
        that mode instead of ``device``, as a phone booted into it does; adb lists the device in that state.
        """
        p = self.props()
        mode = self.faults.get("state")
        kind = mode if mode in BANNER_MODES else "device"
        return (f"{kind}::ro.product.name={p.get('ro.product.name', '')};"
                f"ro.product.model={p.get('ro.product.model', '')};"
                f"ro.product.device={p.get('ro.product.device', '')};features={FEATURES}")

    def props(self) -> dict[str, str]:
        """getprop values: the profile's ``virtual.props`` plus ``ro.coronetgan.virtual=1``. A key the profile
        matches phones on (``match``) and ``virtual.props`` leaves out gets the first of its patterns that is a
        plain value (no ``*?[``), so that a profile written for a real phone also makes a virtual one that
        bench recognises as that phone."""
        p = {key: str(plain[0]) for key, pats in (self.profile.get("match") or {}).items()
             if isinstance(pats, list) and (plain := [x for x in pats if not set(str(x)) & set("*?[")])}
        p.update(self.virtual.get("props") or {})
        p.setdefault("ro.product.model", f"virtual {self.profile_name}")
        p.setdefault("ro.product.name", f"virtual_{self.profile_name}")
        p.setdefault("ro.product.device", f"virtual_{self.profile_name}")
        p["ro.coronetgan.virtual"] = "1"
        p["ro.coronetgan.virtual.profile"] = self.profile_name
        p["ro.serialno"] = f"VIRTUAL-{self.profile_name.upper()}"
        return p

    def _setup_sandbox(self) -> None:
        sb = self.sandbox
        for d in ("data/local/tmp", "sdcard", "system/bin", ".vdev"):
            (sb / d).mkdir(parents=True, exist_ok=True)
        for i, kind in enumerate(("cpu-0-0-usr", "gpuss-0-usr", "skin-therm")):
            z = sb / f"sys/class/thermal/thermal_zone{i}"
            z.mkdir(parents=True, exist_ok=True)
            (z / "type").write_text(kind + "\n")
        state = sb / ".vdev"
        (state / "props").write_text("".join(f"{k}={v}\n" for k, v in sorted(self.props().items())))
        (state / "gles").write_text((self.virtual.get("gles") or "GLES: virtual, virtual GPU, OpenGL ES 3.2") + "\n")
        self.set_faults(self.faults)
        bin_ = sb / "system/bin"
        scripts = {
            "getprop": r'''#!/bin/sh
F="$CORONETGAN_VDEV_STATE/props"
if [ $# -eq 0 ]; then
  while IFS='=' read -r k v; do printf '[%s]: [%s]\n' "$k" "$v"; done < "$F"
else
  while IFS='=' read -r k v; do
    if [ "$k" = "$1" ]; then printf '%s\n' "$v"; exit 0; fi
  done < "$F"
fi
''',
            "dumpsys": r'''#!/bin/sh
S="$CORONETGAN_VDEV_STATE"
case "$1" in
  thermalservice)
    st=$(cat "$S/thermal_status" 2>/dev/null || echo 0)
    echo "IsStatusOverride: false"
    echo "ThermalEventListeners:"
    echo "	callbacks: 1"
    echo "ThermalStatusListeners:"
    echo "	callbacks: 1"
    echo "Thermal Status: $st"
    echo "Cached temperatures:"
    for z in "$THERMAL_DIR"/thermal_zone*; do
      echo "	Temperature{mValue=$(cat "$z/temp"), mType=0, mName=$(cat "$z/type"), mStatus=$st}"
    done
    echo "HAL Ready: true"
    ;;
  SurfaceFlinger)
    echo "Build configuration: [sf PRESENT_TIME_OFFSET=0 FORCE_HWC_FOR_RBG_TO_YUV=1 MAX_VIRT_DISPLAY_DIM=4096]"
    echo "Sync configuration: [using: EGL_ANDROID_native_fence_sync EGL_KHR_wait_sync]"
    cat "$S/gles"
    echo "GL_EXT_debug_marker GL_EXT_blend_minmax GL_EXT_multisampled_render_to_texture"
    ;;
  *) echo "Can't find service: $1" ;;
esac
''',
            "chmod": r'''#!/bin/sh
case ",$CORONETGAN_VDEV_FAULTS," in *,noexec,*) exit 0 ;; esac
exec /bin/chmod "$@"
''',
        }
        for name, text in scripts.items():
            (bin_ / name).write_text(text)
            (bin_ / name).chmod(0o755)

    def host_path(self, device_path: str) -> Path | None:
        """Sandbox path for an absolute device path under a mapped folder, else ``None``."""
        if not device_path.startswith("/"):
            return None
        norm = posixpath.normpath(device_path)
        for root in MAPPED:
            if norm == root or norm.startswith(root + "/"):
                if root == "/storage/emulated/0":
                    norm = "/sdcard" + norm[len(root):]
                return self.sandbox / norm.lstrip("/")
        return None

    def rewrite(self, command: str) -> str:
        """Rewrite mapped device paths in a shell command to their sandbox paths.

        The sandbox is reached through :attr:`root`, a path of shell-safe characters only (``[A-Za-z0-9._/-]``),
        so the rewritten command has the same words as the original in every quoting context; only whole
        path prefixes are rewritten (``/sdcard2`` or ``/x/data/local/tmp`` are left alone).
        """
        def repl(m: re.Match) -> str:
            target = "/sdcard" if m.group(1) == "/storage/emulated/0" else m.group(1)
            return f"{self.root}{target}"

        return _MAPPED_RE.sub(repl, command)

    def shell_env(self) -> dict[str, str]:
        """Environment of commands run by the virtual device's shell."""
        root = str(self.root)
        return {
            "PATH": f"{root}/system/bin:/usr/bin:/bin",
            "HOME": f"{root}/data/local/tmp",
            "TMPDIR": f"{root}/data/local/tmp",
            "LANG": "C", "LC_ALL": "C",
            "THERMAL_DIR": f"{root}/sys/class/thermal",
            "CORONETGAN_VDEV_STATE": f"{root}/.vdev",
            "CORONETGAN_VDEV_SANDBOX": root,
            "CORONETGAN_VDEV_FAULTS": ",".join(f"{k}={v}" if v else k for k, v in self.faults.items()),
            "ANDROID_DATA": f"{root}/data",
        }

    # -- services --------------------------------------------------------------------------------
    def _service(self, service: str) -> Callable[[_Stream], None] | None:
        if service.startswith("shell") and ":" in service:
            head, _, cmd = service.partition(":")
            opts = head.split(",")[1:]
            return lambda s: self._shell(s, cmd, v2="v2" in opts)
        if service.startswith("exec:"):
            return lambda s: self._shell(s, service[5:], v2=False, exec_=True)
        if service == "sync:":
            return self._sync
        return None

    def _shell(self, stream: _Stream, cmd: str, v2: bool, exec_: bool = False) -> None:
        self.shell_count += 1
        trigger = self.faults.get("vanish_on")
        if trigger and trigger in cmd:
            log.info("virtual device vanishes on %r", cmd)
            threading.Thread(target=self.vanish, daemon=True).start()
            raise _Closed()
        if not cmd.strip():
            cmd = "true"  # no interactive shells
        proc = subprocess.Popen(["/bin/sh", "-c", self.rewrite(cmd)], cwd=self.sandbox, env=self.shell_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE if v2 else (subprocess.DEVNULL if exec_ else subprocess.STDOUT),
                                start_new_session=True)
        out_lock = threading.Lock()

        def pump(fh, sid: int) -> None:
            try:
                while True:
                    chunk = os.read(fh.fileno(), 65536)
                    if not chunk:
                        return
                    with out_lock:
                        if v2:
                            stream.write(bytes([sid]) + struct.pack("<I", len(chunk)) + chunk)
                        else:
                            stream.write(chunk)
            except (_Closed, OSError):
                return

        pumps = [threading.Thread(target=pump, args=(proc.stdout, 1), daemon=True)]
        if v2:
            pumps.append(threading.Thread(target=pump, args=(proc.stderr, 2), daemon=True))
        for t in pumps:
            t.start()
        try:
            while proc.poll() is None:
                if stream.closed or stream.conn.dead:
                    self._kill(proc)
                    raise _Closed()
                try:
                    proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
                stream.drain()  # stdin from the host is not used
            for t in pumps:
                t.join()
        except _Closed:
            self._kill(proc)
            raise
        rc = shell_status(proc.returncode)  # what Android's sh reports for a signalled process
        if v2:
            stream.write(bytes([3]) + struct.pack("<I", 1) + bytes([rc & 0xFF]))

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            pass

    def _sync(self, stream: _Stream) -> None:
        while True:
            try:
                head = stream.read_exact(8)
            except _Closed:
                return
            rid, n = head[:4], struct.unpack("<I", head[4:])[0]
            if rid == b"QUIT":
                return
            if rid == b"DONE":
                continue
            if n > 4096 and rid != b"DATA":
                stream.write(self._fail("path too long"))
                return
            path = stream.read_exact(n).decode("utf-8", "replace")
            if rid == b"STAT":
                stream.write(b"STAT" + self._stat_v1(path))
            elif rid in (b"STA2", b"LST2"):
                stream.write(rid + self._stat_v2(path, follow=rid == b"STA2"))
            elif rid == b"LIST":
                stream.write(self._list(path))
            elif rid == b"SEND":
                self._recv_file(stream, path)
            elif rid == b"RECV":
                self._send_file(stream, path)
            else:
                stream.write(self._fail(f"unknown sync request {rid!r}"))
                return

    @staticmethod
    def _fail(msg: str) -> bytes:
        b = msg.encode()
        return b"FAIL" + struct.pack("<I", len(b)) + b

    def _stat_v1(self, path: str) -> bytes:
        hp = self.host_path(path)
        try:
            st = os.lstat(hp) if hp else None
        except OSError:
            st = None
        if st is None:
            return struct.pack("<III", 0, 0, 0)
        return struct.pack("<III", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, int(st.st_mtime))

    def _stat_v2(self, path: str, follow: bool) -> bytes:
        hp = self.host_path(path)
        err, st = 0, None
        if hp is None:
            err = errno.EACCES
        else:
            try:
                st = os.stat(hp) if follow else os.lstat(hp)
            except OSError as e:
                err = e.errno or errno.ENOENT
        if st is None:
            return struct.pack("<IQQIIIIQqqq", err, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return struct.pack("<IQQIIIIQqqq", 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink, 2000, 2000,
                           st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime))

    def _list(self, path: str) -> bytes:
        hp = self.host_path(path)
        out = bytearray()
        if hp is not None and hp.is_dir():
            for name in [".", ".."] + sorted(os.listdir(hp)):
                try:
                    st = os.lstat(hp / name)
                except OSError:
                    continue
                nb = name.encode()
                out += b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime),
                                             len(nb)) + nb
        return bytes(out) + b"DONE" + struct.pack("<IIII", 0, 0, 0, 0)

    def _recv_file(self, stream: _Stream, spec: str) -> None:
        path, _, mode_s = spec.rpartition(",")
        if not path:
            path, mode_s = spec, "33188"
        hp = self.host_path(path)
        drop = self.faults.get("drop_push")
        chunks: list[bytes] = []
        while True:
            rid = stream.read_exact(4)
            n = struct.unpack("<I", stream.read_exact(4))[0]
            if rid == b"DATA":
                chunks.append(stream.read_exact(n))
            elif rid == b"DONE":
                mtime = n
                break
            else:
                stream.write(self._fail(f"unexpected {rid!r} in SEND"))
                return
        if hp is None:
            stream.write(self._fail(f"remote secure_mkdirs failed for {path}: Permission denied (virtual device "
                                    "sandbox maps only " + ", ".join(MAPPED) + ")"))
            return
        if drop and drop in path:
            stream.write(b"OKAY" + struct.pack("<I", 0))
            return
        try:
            hp.parent.mkdir(parents=True, exist_ok=True)
            tmp = hp.with_name(f".{hp.name}.vdev-tmp")
            tmp.write_bytes(b"".join(chunks))
            mode = int(mode_s) & 0o777 if mode_s.isdigit() else 0o644
            if "noexec" in self.faults:
                mode &= 0o666
            os.chmod(tmp, mode)
            os.replace(tmp, hp)
            os.utime(hp, (mtime, mtime))
        except OSError as e:
            stream.write(self._fail(f"failed to write {path}: {e.strerror}"))
            return
        stream.write(b"OKAY" + struct.pack("<I", 0))

    def _send_file(self, stream: _Stream, path: str) -> None:
        hp = self.host_path(path)
        if hp is None or not hp.is_file():
            stream.write(self._fail(f"remote object '{path}' does not exist"))
            return
        with open(hp, "rb") as fh:
            while True:
                chunk = fh.read(SYNC_DATA_MAX)
                if not chunk:
                    break
                stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        stream.write(b"DONE" + struct.pack("<I", 0))
