"""The device side of adb's RSA authentication: which adb server keys a virtual device accepts.

An adb server signs the device's 20-byte AUTH token with its private key (``~/.android/adbkey``); the device
checks the signature against the public keys it trusts (``adbkey.pub`` files). The virtual device trusts only
the key of the adb server it was started for, so no other program on this machine can drive it.

Formats follow AOSP: ``adbkey.pub`` is base64 of ``android_pubkey`` (``system/core/libcrypto_utils``:
uint32 modulus words (64), uint32 n0inv, 256-byte little-endian modulus, 256-byte R², uint32 exponent)
followed by `` user@host``; the signature is RSA PKCS#1 v1.5 over the token taken as a SHA-1 digest
(``RSA_sign(NID_sha1, token, 20, ...)`` in ``adb/client/auth.cpp``).
"""
from __future__ import annotations

import base64
import binascii
import os
import struct
from pathlib import Path

from compress.errors import InputError

TOKEN_SIZE = 20
MODULUS_BYTES = 256  # RSA-2048, the only size adb uses
# DER DigestInfo prefix for SHA-1 (RFC 8017 section 9.2, note 1)
_SHA1_PREFIX = bytes.fromhex("3021300906052b0e03021a05000414")


class PublicKey:
    """An adb RSA public key: modulus ``n``, exponent ``e`` and the ``comment`` (``user@host``)."""

    def __init__(self, n: int, e: int, comment: str = ""):
        self.n, self.e, self.comment = n, e, comment

    @classmethod
    def parse(cls, text: str, source: str = "adb key") -> "PublicKey":
        """From the text of an ``adbkey.pub`` file. Raises :class:`InputError` naming ``source`` if malformed."""
        blob, _, comment = text.strip().partition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"{source}: not an adb public key (expected base64 of android_pubkey)") from None
        if len(raw) != 8 + 2 * MODULUS_BYTES + 4 or struct.unpack("<I", raw[:4])[0] != MODULUS_BYTES // 4:
            raise InputError(f"{source}: not an adb RSA-2048 public key ({len(raw)} bytes decoded, expected 524)")
        n = int.from_bytes(raw[8:8 + MODULUS_BYTES], "little")
        e = struct.unpack("<I", raw[-4:])[0]
        return cls(n, e, comment.strip())

    def verifies(self, token: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's PKCS#1 v1.5 SHA-1 signature of ``token``."""
        if len(signature) != MODULUS_BYTES:
            return False
        m = pow(int.from_bytes(signature, "big"), self.e, self.n).to_bytes(MODULUS_BYTES, "big")
        pad = MODULUS_BYTES - 3 - len(_SHA1_PREFIX) - len(token)
        return m == b"\x00\x01" + b"\xff" * pad + b"\x00" + _SHA1_PREFIX + token


def user_key_path(env: dict[str, str] | None = None) -> Path:
    """Where an adb server with environment ``env`` keeps its public key: ``$ANDROID_USER_HOME/adbkey.pub``,
    else ``$ANDROID_SDK_HOME/.android/adbkey.pub``, else ``$HOME/.android/adbkey.pub`` (adb's own order)."""
    env = os.environ if env is None else env
    if env.get("ANDROID_USER_HOME"):
        return Path(env["ANDROID_USER_HOME"]) / "adbkey.pub"
    base = env.get("ANDROID_SDK_HOME") or env.get("HOME") or str(Path.home())
    return Path(base) / ".android" / "adbkey.pub"


def load_key(path: str | os.PathLike) -> PublicKey:
    """The public key in ``path`` (an ``adbkey.pub``). Raises :class:`InputError` if missing or malformed."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise InputError(f"adb public key {p}: cannot read it ({e.strerror}); start the adb server once "
                         "(adb start-server) so that it creates its key, or pass --adb-key PATH") from None
    return PublicKey.parse(text, f"adb public key {p}")
