"""``python -m bench.virtual_device --profile sm8450 --port 5585 [--connect --adb-port 5037] [--adb-key PUB]``.

Starts a virtual Android device on 127.0.0.1 and keeps it up until Ctrl-C. It accepts only the adb server
holding the private half of ``--adb-key`` (default: this user's ``~/.android/adbkey.pub``, the key of the
default adb server). With ``--connect`` it also runs ``adb connect`` on the adb server at ``--adb-port``
(starting it first if needed, which creates its key) and waits for state "device".
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.virtual_device.server import VirtualDevice  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m bench.virtual_device", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="sm8450", help="device profile from bench/profiles.json")
    ap.add_argument("--port", type=int, default=5585, help="TCP port on 127.0.0.1 (0 = any free port)")
    ap.add_argument("--sandbox", help="folder for the device's files (default: a temp folder)")
    ap.add_argument("--faults", default="", help="fault spec, e.g. 'throttle_after=2,gpu_unsupported=MIRROR_PAD'")
    ap.add_argument("--connect", action="store_true", help="adb connect to it and wait for state 'device'")
    ap.add_argument("--adb-port", type=int, default=5037, help="adb server port for --connect")
    ap.add_argument("--adb-key", help="public key (adbkey.pub) of the adb server allowed to connect "
                                      "[~/.android/adbkey.pub]")
    a = ap.parse_args(argv)
    import errno

    from bench.profiles import get_profile
    from bench.results import BenchError
    from compress.errors import InputError

    try:
        for flag, port in (("--port", a.port), ("--adb-port", a.adb_port)):
            if not 0 <= port <= 65535:
                raise InputError(f"{flag} {port}: expected a TCP port 0-65535")
        if a.sandbox and Path(a.sandbox).exists() and not Path(a.sandbox).is_dir():
            raise InputError(f"--sandbox {a.sandbox}: a file; expected a folder for the device's files")
        try:
            get_profile(a.profile)
        except InputError as e:   # its message names bench's --device; here the flag is --profile
            raise InputError(str(e).replace("--device", "--profile", 1)) from None
        if a.connect:
            from bench.adb_server import start_server

            start_server(a.adb_port)  # a first start writes the server's key, which the device must trust
        try:
            dev = VirtualDevice(a.profile, port=a.port, sandbox=a.sandbox, faults=a.faults,
                                adb_key=a.adb_key).start()
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise InputError(f"--port {a.port}: already in use on 127.0.0.1; expected a free port "
                                 "(0 = any free port)") from None
            raise
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(f"virtual device '{a.profile}' listening on {dev.serial} (sandbox {dev.sandbox})", flush=True)
    if a.connect:
        from bench.adb_server import adb_connect

        adb_connect(dev.serial, adb_port=a.adb_port)
        print(f"connected: adb -P {a.adb_port} -s {dev.serial} shell getprop ro.product.model", flush=True)
    import signal

    def _term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        dev.stop()
    return 0


if __name__ == "__main__":
    from compress.cli_errors import run_cli

    sys.exit(run_cli(main))
