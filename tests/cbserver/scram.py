"""Server side of SASL PLAIN and SCRAM-SHA1/256/512 (RFC 5802), no channel binding.

Called from a KV connection handler on the server's event loop; pure computation.
Salted passwords are cached per (mechanism, password) because PBKDF2 is the costly part.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

MECHANISMS = ("SCRAM-SHA512", "SCRAM-SHA256", "SCRAM-SHA1", "PLAIN")
_HASHES = {"SCRAM-SHA512": "sha512", "SCRAM-SHA256": "sha256", "SCRAM-SHA1": "sha1"}
ITERATIONS = 4096
_SALT = b"cbembed-test-server-salt"


class AuthError(Exception):
    """Authentication failed (bad user, bad password, malformed message)."""


@functools.lru_cache(maxsize=32)
def _salted(hash_name: str, password: str) -> bytes:
    return hashlib.pbkdf2_hmac(hash_name, password.encode(), _SALT, ITERATIONS)


def check_plain(payload: bytes, username: str, password: str) -> None:
    """Validate a PLAIN payload ``[authzid] NUL user NUL pass``."""
    parts = payload.split(b"\x00")
    if len(parts) != 3:
        raise AuthError("malformed PLAIN payload")
    if parts[1].decode() != username or parts[2].decode() != password:
        raise AuthError("invalid credentials")


def _attrs(message: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise AuthError(f"malformed SCRAM attribute {part!r}")
        out[part[0]] = part[2:]
    return out


class ScramServer:
    """One SCRAM exchange: ``first()`` answers the client-first message, ``final()`` the
    client-final message and returns the server-final message (``v=...``)."""

    def __init__(self, mechanism: str, username: str, password: str) -> None:
        if mechanism not in _HASHES:
            raise AuthError(f"unsupported mechanism {mechanism}")
        self._hash = _HASHES[mechanism]
        self._username = username
        self._password = password
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._gs2 = ""

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self._hash).digest()

    def first(self, client_first: bytes) -> bytes:
        text = client_first.decode()
        if not (text.startswith("n,") or text.startswith("y,")):
            raise AuthError("channel binding is not supported")
        gs2_end = text.index(",", 2) + 1
        self._gs2 = text[:gs2_end]
        self._client_first_bare = text[gs2_end:]
        attrs = _attrs(self._client_first_bare)
        user = attrs.get("n", "").replace("=2C", ",").replace("=3D", "=")
        if user != self._username:
            raise AuthError("unknown user")
        cnonce = attrs.get("r", "")
        if not cnonce:
            raise AuthError("missing client nonce")
        self._nonce = cnonce + base64.b64encode(os.urandom(12)).decode().rstrip("=")
        salt = base64.b64encode(_SALT).decode()
        self._server_first = f"r={self._nonce},s={salt},i={ITERATIONS}"
        return self._server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        text = client_final.decode()
        if ",p=" not in text:
            raise AuthError("missing proof")
        without_proof, proof_b64 = text.rsplit(",p=", 1)
        attrs = _attrs(without_proof)
        if attrs.get("r") != self._nonce:
            raise AuthError("nonce mismatch")
        if base64.b64decode(attrs.get("c", "")) != self._gs2.encode():
            raise AuthError("channel binding mismatch")
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        salted = _salted(self._hash, self._password)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._hash, client_key).digest()
        signature = self._hmac(stored_key, auth_message.encode())
        expected = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        if not hmac.compare_digest(expected, base64.b64decode(proof_b64)):
            raise AuthError("invalid credentials")
        server_key = self._hmac(salted, b"Server Key")
        server_sig = self._hmac(server_key, auth_message.encode())
        return b"v=" + base64.b64encode(server_sig)
