"""Is a phone attached? The pipeline's bench stage asks the default adb server, the way ``adb devices`` does."""
from __future__ import annotations

import logging

from bench import adb_server
from bench import profiles as prof
from bench.devices import device_props
from compress.errors import InputError

LOG = logging.getLogger("coronetgan.pipeline")

DEFAULT_ADB_PORT = 5037


def detect_phone(profile: str, serial: str | None = None, port: int = DEFAULT_ADB_PORT) -> str | None:
    """Serial of the attached phone matching ``profile`` on the default adb server, else ``None``.

    Like ``adb devices``: starts the default server on ``port`` when none answers (nothing else), lists
    devices in state ``device``, skips virtual devices (``ro.coronetgan.virtual=1``) and returns the single one
    whose getprop matches the profile (``serial`` picks one of several). Any adb problem means "no phone".
    Raises :class:`InputError` for an unknown ``profile`` or when several attached phones match.
    """
    try:
        p = prof.get_profile(profile)
        order = prof.load_profiles()["match_order"]
        c = adb_server.client("127.0.0.1", port, start=True)
        found = []
        for d in c.list():
            if d.state != "device" or (serial and d.serial != serial):
                continue
            props = device_props(c.device(d.serial))
            if props.get("ro.coronetgan.virtual") == "1":
                continue
            if prof.matches(p, props, order):
                found.append(d.serial)
    except InputError:
        raise
    except Exception as e:  # no adb, no server, USB trouble: bench without a phone
        LOG.info("phone detection on adb port %d: %s", port, e)
        return None
    if len(found) > 1:
        raise InputError(f"--device {profile}: {len(found)} attached phones match ({', '.join(found)}); "
                         "pick one with --serial (make: SERIAL=...)")
    return found[0] if found else None
