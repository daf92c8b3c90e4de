"""SCRAM client against the RFC test vectors and an independent SHA-512 computation."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from connector.dcp.scram import ScramClient, ScramError, plain_payload


@pytest.mark.parametrize(
    ("mech", "cnonce", "server_first", "client_final", "server_final"),
    [
        (  # RFC 5802 section 5
            "SCRAM-SHA1",
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ),
        (  # RFC 7677 section 3
            "SCRAM-SHA256",
            "rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,"
            "i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ),
    ],
)
def test_rfc_vectors(mech, cnonce, server_first, client_final, server_final):
    c = ScramClient("user", "pencil", mech, nonce=cnonce)
    assert c.client_first() == f"n,,n=user,r={cnonce}".encode()
    assert c.client_final(server_first.encode()) == client_final.encode()
    c.verify_server_final(server_final.encode())


def _hi(password: bytes, salt: bytes, iterations: int) -> bytes:
    """Hi() exactly as RFC 5802 section 2.2 writes it, with a plain HMAC loop."""
    u = hmac.new(password, salt + b"\x00\x00\x00\x01", "sha512").digest()
    out = bytearray(u)
    for _ in range(iterations - 1):
        u = hmac.new(password, u, "sha512").digest()
        out = bytearray(a ^ b for a, b in zip(out, u, strict=True))
    return bytes(out)


def test_sha512_against_independent_computation():
    salt, iters = b"0123456789abcdef", 64
    snonce = "CLIENTNONCEserverpart"
    c = ScramClient("Administrator", "password", "SCRAM-SHA512", nonce="CLIENTNONCE")
    first_bare = "n=Administrator,r=CLIENTNONCE"
    server_first = f"r={snonce},s={base64.b64encode(salt).decode()},i={iters}"
    final = c.client_final(server_first.encode()).decode()

    salted = _hi(b"password", salt, iters)
    client_key = hmac.new(salted, b"Client Key", "sha512").digest()
    stored = hashlib.sha512(client_key).digest()
    auth = f"{first_bare},{server_first},c=biws,r={snonce}".encode()
    sig = hmac.new(stored, auth, "sha512").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig, strict=True))
    assert final == f"c=biws,r={snonce},p={base64.b64encode(proof).decode()}"

    server_key = hmac.new(salted, b"Server Key", "sha512").digest()
    v = base64.b64encode(hmac.new(server_key, auth, "sha512").digest()).decode()
    c.verify_server_final(f"v={v}".encode())
    with pytest.raises(ScramError):
        c.verify_server_final(b"v=" + base64.b64encode(b"x" * 64))


def test_username_escaping():
    c = ScramClient("a=b,c", "p", nonce="N")
    assert c.client_first() == b"n,,n=a=3Db=2Cc,r=N"


@pytest.mark.parametrize(
    "server_first",
    [b"r=OTHER123,s=c2FsdA==,i=10", b"r=N,s=c2FsdA==,i=10", b"r=Nx,s=c2FsdA==", b"garbage"],
)
def test_rejects_bad_server_first(server_first):
    with pytest.raises(ScramError):
        ScramClient("u", "p", nonce="N").client_final(server_first)


def test_server_error_attribute():
    c = ScramClient("u", "p", nonce="N")
    c.client_final(b"r=Nx,s=c2FsdA==,i=2")
    with pytest.raises(ScramError, match="invalid-proof"):
        c.verify_server_final(b"e=invalid-proof")


def test_plain_payload():
    assert plain_payload("user", "pw") == b"\0user\0pw"
