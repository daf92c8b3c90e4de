"""Client side of SCRAM (RFC 5802; SHA-512 as Couchbase names it "SCRAM-SHA512") and SASL PLAIN.

Pure: the connection handshake (`connection.py`) asks for each message and sends it in
SASL_AUTH / SASL_STEP. PLAIN sends the password in clear and is only used over TLS.
Only `hashlib`/`hmac`/`secrets`: no dependency. SASLprep is not applied (passwords are used as
UTF-8 bytes, which matches it for ASCII passwords).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

MECHANISMS = {"SCRAM-SHA512": "sha512", "SCRAM-SHA256": "sha256", "SCRAM-SHA1": "sha1"}


class ScramError(Exception):
    """The server's SCRAM messages are malformed, or its signature does not verify."""


def _escape(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _attrs(msg: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in msg.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ScramError(f"malformed SCRAM attribute {part!r}")
        out[part[0]] = part[2:]
    return out


class ScramClient:
    """One SCRAM exchange: client_first() -> client_final(server_first) -> verify(server_final)."""

    def __init__(
        self,
        username: str,
        password: str,
        mechanism: str = "SCRAM-SHA512",
        nonce: str | None = None,
    ) -> None:
        if mechanism not in MECHANISMS:
            raise ValueError(f"unsupported SCRAM mechanism {mechanism!r}")
        self.mechanism = mechanism
        self._hash = MECHANISMS[mechanism]
        self._username = username
        self._password = password.encode()
        self._nonce = nonce or base64.b64encode(secrets.token_bytes(24)).decode()
        self._client_first_bare = f"n={_escape(username)},r={self._nonce}"
        self._server_signature: bytes | None = None

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self._hash).digest()

    def client_first(self) -> bytes:
        return ("n,," + self._client_first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = _attrs(text)
        try:
            nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        except (KeyError, ValueError) as e:
            raise ScramError(f"server-first-message {text!r} lacks r, s or i") from e
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise ScramError("server nonce does not extend the client nonce")
        if iterations < 1:
            raise ScramError(f"iteration count {iterations}")
        salted = hashlib.pbkdf2_hmac(self._hash, self._password, salt, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._hash, client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        client_signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
        server_key = self._hmac(salted, b"Server Key")
        self._server_signature = self._hmac(server_key, auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, server_final: bytes) -> None:
        if self._server_signature is None:
            raise ScramError("verify_server_final called before client_final")
        attrs = _attrs(server_final.decode())
        if "e" in attrs:
            raise ScramError(f"server reported SCRAM error {attrs['e']!r}")
        try:
            got = base64.b64decode(attrs["v"])
        except (KeyError, ValueError) as e:
            raise ScramError("server-final-message has no verifier") from e
        if not hmac.compare_digest(got, self._server_signature):
            raise ScramError("server signature does not verify: not the server we authenticated to")


def plain_payload(username: str, password: str) -> bytes:
    """SASL PLAIN initial response: NUL user NUL password (only ever sent over TLS)."""
    return b"\0" + username.encode() + b"\0" + password.encode()
