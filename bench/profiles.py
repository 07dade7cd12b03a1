"""Phone profiles (``bench/profiles.json``) and how to recognise a phone from its ``getprop`` values."""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any, Mapping

from compress.errors import InputError

PROFILES_FILE = Path(__file__).with_name("profiles.json")
DEFAULT_MATCH_ORDER = ["ro.soc.model", "ro.board.platform", "ro.hardware"]
HOST = "host"


def load_profiles(path: str | Path | None = None) -> dict[str, Any]:
    """Read the profile data file; returns ``{"match_order": [...], "profiles": {name: profile}}``.

    Raises :class:`InputError` if the file is missing, not JSON, or has no ``profiles`` object.
    """
    p = Path(path) if path else PROFILES_FILE
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"profile file {p} not found") from None
    except json.JSONDecodeError as e:
        raise InputError(f"profile file {p} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
        raise InputError(f"profile file {p}: expected an object with a 'profiles' object")
    data.setdefault("match_order", DEFAULT_MATCH_ORDER)
    return data


def get_profile(name: str, path: str | Path | None = None) -> dict[str, Any]:
    """The profile called ``name`` (with its ``key`` added). Raises :class:`InputError` for unknown names."""
    prof = load_profiles(path)["profiles"].get(name)
    if prof is None:
        raise _unknown_device(name, path)
    return {"key": name, **prof}


def profile_names(path: str | Path | None = None) -> list[str]:
    """Names of the profiles in the data file (``host`` excluded)."""
    return sorted(load_profiles(path)["profiles"])


def check_device(name: str, path: str | Path | None = None) -> str:
    """``name`` when it is a valid ``--device`` value: a profile of the data file or ``host``.

    Raises :class:`InputError` naming ``--device``, the value and the valid choices otherwise.
    """
    if name != HOST and name not in load_profiles(path)["profiles"]:
        raise _unknown_device(name, path)
    return name


def _unknown_device(name: str, path: str | Path | None) -> InputError:
    choices = ", ".join(profile_names(path) + [HOST])
    return InputError(f"--device {name!r}: unknown device profile; expected one of {choices}")


def matches(profile: Mapping[str, Any], props: Mapping[str, str],
            match_order: list[str] | None = None) -> bool:
    """Whether a phone with getprop values ``props`` is the SoC that ``profile`` describes.

    The first key of ``match_order`` (default ``ro.soc.model``, ``ro.board.platform``, ``ro.hardware``) that
    the phone reports non-empty and the profile lists patterns for decides; patterns are fnmatch globs
    compared case-insensitively. A phone that reports none of the listed keys does not match.
    """
    rules = profile.get("match") or {}
    for key in match_order or DEFAULT_MATCH_ORDER:
        value = (props.get(key) or "").strip()
        pats = rules.get(key)
        if not value or not pats:
            continue
        return any(fnmatch.fnmatchcase(value.lower(), str(p).lower()) for p in pats)
    return False


def identify(props: Mapping[str, str], path: str | Path | None = None) -> str | None:
    """Name of the first profile that ``props`` matches, or ``None``."""
    data = load_profiles(path)
    for name, prof in data["profiles"].items():
        if matches(prof, props, data["match_order"]):
            return name
    return None
