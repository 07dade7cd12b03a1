"""Which attached device to bench on: adb states, getprop identity, and messages that say what to do.

:func:`select_device` picks the phone for ``--device`` / ``--serial`` from the adb server's device list. A
device that is not in state ``device`` (unauthorized, offline, recovery, sideload, ...) cannot be asked for
its SoC, so it is listed with its state and the one thing to do about it (:data:`STATE_ADVICE`); with no
usable phone the message also offers the two ways to measure without one (``--virtual``, ``--device host``).
"""
from __future__ import annotations

import re
from typing import Any

from bench import profiles as prof
from compress.errors import InputError

# adb's connection states (adb/adb.h ConnectionState, as `adb devices` prints them) -> what the user does
STATE_ADVICE = {
    "unauthorized": "unlock the phone and accept its 'Allow USB debugging?' prompt; no prompt: revoke USB "
                    "debugging authorisations in Developer options and replug",
    "offline": "replug the cable or run `adb reconnect offline`; still offline: `adb kill-server`, then replug",
    "authorizing": "the key exchange is still running: wait a few seconds and rerun",
    "connecting": "the connection is still being set up: wait a few seconds and rerun",
    "recovery": "it is in recovery mode: reboot it into Android (`adb -s {serial} reboot`)",
    "rescue": "it is in rescue mode: reboot it into Android (`adb -s {serial} reboot`)",
    "sideload": "it is in sideload mode: finish or cancel the sideload, then reboot it into Android",
    "bootloader": "it is in the bootloader: reboot it into Android",
    "host": "it is another adb host, not a phone",
    "no permissions": "this user may not open its USB device: add a udev rule for the phone's USB vendor or "
                      "join the plugdev group, then replug",
}
READY = "device"


def parse_getprop(text: str) -> dict[str, str]:
    """``[key]: [value]`` lines of ``getprop`` → dict."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.MULTILINE)}


def parse_gles(text: str) -> dict[str, str]:
    """``GLES: vendor, renderer, version/driver`` from ``dumpsys SurfaceFlinger`` → dict (empty if absent)."""
    m = re.search(r"^GLES:\s*([^,]+),\s*([^,]+),\s*(.+)$", text, re.MULTILINE)
    if not m:
        return {}
    return {"gpu_vendor": m.group(1).strip(), "gpu_renderer": m.group(2).strip(), "gpu_driver": m.group(3).strip()}


def device_props(device) -> dict[str, str]:
    """All getprop values of an adbutils device."""
    return parse_getprop(device.shell("getprop", timeout=30))


def soc_of(props: dict[str, str]) -> str:
    """The SoC a phone reports: ``ro.soc.model``, else ``ro.board.platform``, else ``ro.hardware``."""
    return (props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware")
            or "unknown SoC")


def advice_for(serial: str, state: str) -> str:
    """What to do about a device adb lists in ``state`` (not ``device``)."""
    key = next((k for k in STATE_ADVICE if state == k or state.startswith(k + " ")), None)
    return STATE_ADVICE[key].format(serial=serial) if key else "wait for it to come up, or replug it"


def state_advice(serial: str, state: str) -> str:
    """``SERIAL STATE (what to do)`` for a device adb lists in a state other than ``device``."""
    return f"{serial} {state} ({advice_for(serial, state)})"


def _adb_errors() -> tuple[type[BaseException], ...]:
    import adbutils

    return (adbutils.AdbError, adbutils.AdbTimeout, OSError, ConnectionError, EOFError)


def _server(adb_client) -> str:
    return f"{getattr(adb_client, 'host', '127.0.0.1')}:{getattr(adb_client, 'port', 5037)}"


def no_phone_hint(p: dict[str, Any]) -> str:
    """The way out when no usable phone is attached: the two runs that need none."""
    return (f"measure without a phone: --virtual (a simulated {p.get('soc') or p['key']} on this machine's CPU) "
            "or --device host")


def select_device(adb_client, profile: str | None, serial: str | None = None):
    """The attached device to use: ``serial`` if given, else the one whose getprop matches ``profile``.

    Returns ``(adbutils device, props, profile key or None)``. Raises :class:`InputError` (one line) when the
    serial is not attached or not in state ``device`` (saying what to do), when it is another SoC than
    ``profile``, or when no device or several devices match ``profile``: the message lists every device the
    adb server reports, with its state or SoC, and offers ``--virtual`` and ``--device host``.
    """
    attached = [(d.serial, d.state) for d in adb_client.list()]
    server = _server(adb_client)
    p = prof.get_profile(profile) if profile else None
    if serial:
        states = dict(attached)
        if serial not in states:
            listing = ", ".join(f"{s} {st}" for s, st in attached) or "no device"
            raise InputError(f"--serial {serial}: no such device; the adb server on {server} lists: {listing}")
        if states[serial] != READY:
            raise InputError(f"--serial {serial} is {states[serial]}: {advice_for(serial, states[serial])}")
        dev = adb_client.device(serial)
        props = device_props(dev)
        if p and not prof.matches(p, props):
            virtual = props.get("ro.coronetgan.virtual") == "1"
            raise InputError(f"the device {serial}{' (a virtual device, from its profile virtual.props)' if virtual else ''}"
                             f" is a {soc_of(props)}, not --device {p['key']} ({prof.describe(p)}); "
                             + ("give the profile 'virtual': {'props': {...}} values that its 'match' patterns accept"
                                if virtual else "expected the phone --device names (or leave out --serial)"))
        return dev, props, p["key"] if p else prof.identify(props)
    if not p:
        raise InputError("--device: give a device profile (or host), or --serial")
    found, seen = [], []
    for s, st in attached:
        if st != READY:
            seen.append(state_advice(s, st))
            continue
        dev = adb_client.device(s)
        try:
            props = device_props(dev)
        except _adb_errors() as e:
            seen.append(f"{s} device (getprop failed: {e})")
            continue
        if prof.matches(p, props):
            found.append((dev, props))
        else:
            seen.append(f"{s} device, a {soc_of(props)} (not a {p.get('soc') or p['key']})")
    if not found:
        if not attached:
            raise InputError(f"--device {p['key']}: no phone is attached (the adb server on {server} lists no "
                             f"device); connect a {prof.describe(p)} with USB debugging on, or "
                             f"{no_phone_hint(p)}")
        raise InputError(f"--device {p['key']}: no attached device is a usable {prof.describe(p)}; the adb server "
                         f"on {server} lists: {'; '.join(seen)}; or {no_phone_hint(p)}")
    if len(found) > 1:
        raise InputError(f"--device {p['key']}: {len(found)} attached devices match "
                         f"({', '.join(d.serial for d, _ in found)}); pick one with --serial")
    return found[0][0], found[0][1], p["key"]
