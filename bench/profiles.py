"""Phone profiles (``bench/profiles.json`` or a profile file) and how to recognise a phone from ``getprop``.

``--device`` names a profile by its key (``sm8450``), its SoC (``SM8450``, ``MT6985``), its marketing name
(``Snapdragon 8 Gen 1``, ``Dimensity 9200``) or an alias, all compared without case, spaces, ``-`` or ``_``;
or it is the path of a ``.json`` file holding one profile (same fields as an entry of ``profiles.json``).
"""
from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any, Mapping

from compress.errors import InputError
from compress.io import is_folder_name

PROFILES_FILE = Path(__file__).with_name("profiles.json")
DEFAULT_MATCH_ORDER = ["ro.soc.model", "ro.board.platform", "ro.hardware"]
HOST = "host"


def _read_json(p: Path, what: str) -> Any:
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{what} {p} not found") from None
    except OSError as e:
        raise InputError(f"{what} {p}: cannot read it ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{what} {p} is not valid JSON: {e}") from None


def load_profiles(path: str | Path | None = None) -> dict[str, Any]:
    """Read the profile data file; returns ``{"match_order": [...], "profiles": {name: profile}}``.

    Raises :class:`InputError` if the file is missing, not JSON, has no ``profiles`` object, or a profile key is
    not a plain name (a path, ``.`` or ``..``: keys name output folders).
    """
    p = Path(path) if path else PROFILES_FILE
    data = _read_json(p, "profile file")
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
        raise InputError(f"profile file {p}: expected an object with a 'profiles' object")
    bad = [k for k in data["profiles"] if not is_folder_name(k)]
    if bad:  # keys name output folders
        raise InputError(f"profile file {p}: profile key(s) {', '.join(map(repr, bad))} are not plain names; "
                         "expected one folder name (no /, \\, . or ..)")
    data.setdefault("match_order", DEFAULT_MATCH_ORDER)
    return data


def _norm(text: str) -> str:
    return re.sub(r"[\s_-]+", "", str(text)).lower()


def _names(key: str, prof: Mapping[str, Any]) -> set[str]:
    """Every spelling ``--device`` may use for a profile (normalised)."""
    names = [key, prof.get("soc") or "", prof.get("name") or "", *(prof.get("aliases") or [])]
    return {_norm(n) for n in names if n}


def is_profile_file(value: str) -> bool:
    """Whether a ``--device`` value names a profile file rather than a profile."""
    return value.lower().endswith(".json")


def _profile_file(value: str) -> dict[str, Any]:
    """The single profile in the file ``value`` (a profile object, or ``{"profiles": {key: profile}}`` with one
    entry); its key is the entry's key or the file's stem, a plain name (it names output folders). Raises
    :class:`InputError` naming the file."""
    p = Path(value).expanduser()
    data = _read_json(p, "--device profile file")
    order = DEFAULT_MATCH_ORDER
    if isinstance(data, dict) and isinstance(data.get("profiles"), dict):
        order = data.get("match_order") or order
        if len(data["profiles"]) != 1:
            raise InputError(f"--device {value}: the file holds {len(data['profiles'])} profiles; expected one "
                             "(add phones to bench/profiles.json instead)")
        key, prof = next(iter(data["profiles"].items()))
    else:
        key, prof = p.stem, data
    if not is_folder_name(key):
        # the key names output folders (RUN/bench/<key>, bench/results/<key>/...): one plain folder name
        raise InputError(f"--device {value}: profile key {key!r} is not a plain name; expected one folder name "
                         "(no /, \\, . or ..; rename the file or its 'profiles' entry)")
    if not isinstance(prof, dict) or not isinstance(prof.get("match"), dict) or not prof["match"]:
        raise InputError(f"--device {value}: expected a profile object with a 'match' object of getprop "
                         "patterns, e.g. {\"soc\": \"SM8450\", \"match\": {\"ro.soc.model\": [\"SM8450\"]}}")
    return {"key": key, "match_order": prof.get("match_order") or order, "file": str(p), **prof}


def get_profile(name: str, path: str | Path | None = None) -> dict[str, Any]:
    """The profile that ``name`` designates (key, SoC, marketing name or alias, any case; or a profile file),
    with its ``key`` and ``match_order`` added. Raises :class:`InputError` listing the profiles otherwise."""
    if is_profile_file(name):
        return _profile_file(name)
    data = load_profiles(path)
    want = _norm(name)
    for key, prof in data["profiles"].items():
        if want and want in _names(key, prof):
            return {"key": key, "match_order": data["match_order"], **prof}
    raise _unknown_device(name, path)


def profile_names(path: str | Path | None = None) -> list[str]:
    """Keys of the profiles in the data file (``host`` excluded)."""
    return sorted(load_profiles(path)["profiles"])


def check_device(name: str, path: str | Path | None = None) -> str:
    """The canonical ``--device`` value for ``name``: ``host``, a profile key, or the profile file's path.

    Raises :class:`InputError` naming ``--device``, the value and the valid choices otherwise.
    """
    if _norm(name) == HOST:
        return HOST
    prof = get_profile(name, path)
    return prof["file"] if "file" in prof else prof["key"]


def _unknown_device(name: str, path: str | Path | None) -> InputError:
    data = load_profiles(path)["profiles"]
    listing = ", ".join(f"{k} ({v.get('soc')}, {v.get('name')})" for k, v in sorted(data.items()))
    return InputError(f"--device {name!r}: unknown device profile; expected one of {listing} (the key, SoC or name, "
                      f"any case), a profile .json file, or {HOST}")


def matches(profile: Mapping[str, Any], props: Mapping[str, str],
            match_order: list[str] | None = None) -> bool:
    """Whether a phone with getprop values ``props`` is the SoC that ``profile`` describes.

    The first key of the profile's ``match_order`` (else ``match_order``, else ``ro.soc.model``,
    ``ro.board.platform``, ``ro.hardware``) that the phone reports non-empty and the profile lists patterns
    for decides; patterns are fnmatch globs compared case-insensitively. A phone that reports none of the
    listed keys does not match.
    """
    rules = profile.get("match") or {}
    for key in profile.get("match_order") or match_order or DEFAULT_MATCH_ORDER:
        value = (props.get(key) or "").strip()
        pats = rules.get(key)
        if not value or not pats:
            continue
        return any(fnmatch.fnmatchcase(value.lower(), str(p).lower()) for p in pats)
    return False


def identify(props: Mapping[str, str], path: str | Path | None = None) -> str | None:
    """Key of the first profile that ``props`` matches, or ``None``."""
    data = load_profiles(path)
    for name, prof in data["profiles"].items():
        if matches(prof, props, data["match_order"]):
            return name
    return None


def describe(profile: Mapping[str, Any]) -> str:
    """``SM8450 (Snapdragon 8 Gen 1)``: the SoC and name of a profile, for messages."""
    soc, name = profile.get("soc") or profile.get("key"), profile.get("name")
    return f"{soc} ({name})" if name and name != soc else str(soc)
