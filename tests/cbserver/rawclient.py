"""A tiny blocking memcached/DCP client for the server's own tests.

Frames are built and parsed here by hand, straight from kv_engine's BinaryProtocol.md and
the DCP command docs, deliberately without importing the server's codec: a bug shared by
both sides would otherwise go unnoticed. Used from the test thread against a server
started with ``CouchbaseTestServer.start()``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import time
from dataclasses import dataclass

HDR = struct.Struct(">BBHBBHIIQ")


@dataclass
class Msg:
    magic: int
    opcode: int
    datatype: int
    vb_or_status: int
    opaque: int
    cas: int
    extras: bytes
    key: bytes
    value: bytes

    @property
    def status(self) -> int:
        return self.vb_or_status

    @property
    def vbucket(self) -> int:
        return self.vb_or_status

    @property
    def size(self) -> int:
        return 24 + len(self.extras) + len(self.key) + len(self.value)


def leb128(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def split_leb128(key: bytes) -> tuple[int, bytes]:
    v = shift = 0
    for i, b in enumerate(key):
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, key[i + 1 :]
    raise ValueError("bad leb128")


def parse_xattrs(value: bytes) -> tuple[dict[str, str], bytes]:
    (total,) = struct.unpack_from(">I", value)
    pos, end, out = 4, 4 + total, {}
    while pos < end:
        (n,) = struct.unpack_from(">I", value, pos)
        k, v, _ = value[pos + 4 : pos + 4 + n].split(b"\x00")
        out[k.decode()] = v.decode()
        pos += 4 + n
    return out, value[end:]


class RawClient:
    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.opaque = 0x100
        self.pending: list[Msg] = []  # server-initiated messages seen while awaiting replies
        self.received_bytes = 0

    def close(self) -> None:
        self.sock.close()

    # -- framing -----------------------------------------------------------------------------
    def send(self, opcode: int, *, key: bytes = b"", extras: bytes = b"", value: bytes = b"",
             vbucket: int = 0, cas: int = 0, datatype: int = 0, opaque: int | None = None,
             magic: int = 0x80) -> int:
        if opaque is None:
            self.opaque += 1
            opaque = self.opaque
        body = extras + key + value
        self.sock.sendall(HDR.pack(magic, opcode, len(key), len(extras), datatype, vbucket,
                                   len(body), opaque, cas) + body)
        return opaque

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by server")
            self.buf += chunk

    def recv(self) -> Msg:
        self._fill(24)
        magic, op, klen, elen, dt, vbs, blen, opaque, cas = HDR.unpack(self.buf[:24])
        self._fill(24 + blen)
        body = self.buf[24 : 24 + blen]
        self.buf = self.buf[24 + blen :]
        self.received_bytes += 24 + blen
        return Msg(magic, op, dt, vbs, opaque, cas, body[:elen], body[elen : elen + klen],
                   body[elen + klen :])

    def request(self, opcode: int, **kw: object) -> Msg:
        opaque = self.send(opcode, **kw)  # type: ignore[arg-type]
        while True:
            msg = self.recv()
            if msg.magic == 0x81 and msg.opaque == opaque:
                return msg
            self.pending.append(msg)

    # -- handshake --------------------------------------------------------------------------
    def hello(self, *features: int) -> list[int]:
        value = b"".join(struct.pack(">H", f) for f in features)
        r = self.request(0x1F, key=b'{"a":"rawclient"}', value=value)
        return [struct.unpack_from(">H", r.value, i)[0] for i in range(0, len(r.value), 2)]

    def auth_scram(self, user: str, password: str) -> None:
        cnonce = base64.b64encode(os.urandom(12)).decode()
        first_bare = f"n={user},r={cnonce}"
        r = self.request(0x21, key=b"SCRAM-SHA512", value=("n,," + first_bare).encode())
        assert r.status == 0x21, hex(r.status)
        server_first = r.value.decode()
        attrs = dict(p.split("=", 1) for p in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        without_proof = f"c=biws,r={attrs['r']}"
        auth_msg = f"{first_bare},{server_first},{without_proof}".encode()
        client_key = hmac.new(salted, b"Client Key", "sha512").digest()
        sig = hmac.new(hashlib.sha512(client_key).digest(), auth_msg, "sha512").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig, strict=True)))
        r = self.request(0x22, key=b"SCRAM-SHA512",
                         value=f"{without_proof},p={proof.decode()}".encode())
        assert r.status == 0, hex(r.status)
        server_key = hmac.new(salted, b"Server Key", "sha512").digest()
        expected = base64.b64encode(hmac.new(server_key, auth_msg, "sha512").digest())
        assert r.value == b"v=" + expected

    def auth_plain(self, user: str, password: str) -> int:
        return self.request(0x21, key=b"PLAIN", value=f"\0{user}\0{password}".encode()).status

    def select_bucket(self, name: str) -> int:
        return self.request(0x89, key=name.encode()).status

    def dcp_open(self, name: str, flags: int) -> int:
        return self.request(0x50, key=name.encode(), extras=struct.pack(">II", 0, flags)).status

    def control(self, key: str, value: str) -> int:
        return self.request(0x5E, key=key.encode(), value=value.encode()).status

    def stream_req(self, vb: int, start: int = 0, end: int = 2**64 - 1, vbuuid: int = 0,
                   snap_start: int | None = None, snap_end: int | None = None, flags: int = 0,
                   value: bytes = b"") -> Msg:
        snap_start = start if snap_start is None else snap_start
        snap_end = start if snap_end is None else snap_end
        extras = struct.pack(">IIQQQQQ", flags, 0, start, end, vbuuid, snap_start, snap_end)
        return self.request(0x53, extras=extras, vbucket=vb, value=value)

    def buffer_ack(self, n: int) -> None:
        self.send(0x5D, extras=struct.pack(">I", n))

    # -- DCP reading -----------------------------------------------------------------------
    def next_dcp(self, timeout: float = 2.0, answer_noops: bool = True) -> Msg | None:
        """Next server-initiated message (NOOPs answered and skipped), None on timeout."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                msg = self.recv()
            except TimeoutError:
                return None
            finally:
                self.sock.settimeout(5.0)
            if msg.opcode == 0x5C and msg.magic == 0x80 and answer_noops:
                self.send(0x5C, opaque=msg.opaque, magic=0x81)
                continue
            return msg

    def expect(self, timeout: float = 2.0) -> Msg:
        """Next server-initiated message; fails the test if none arrives in time."""
        msg = self.next_dcp(timeout)
        assert msg is not None, "expected a DCP message"
        return msg

    def collect(self, count: int, timeout: float = 2.0) -> list[Msg]:
        out: list[Msg] = []
        while len(out) < count:
            msg = self.next_dcp(timeout)
            if msg is None:
                break
            out.append(msg)
        return out


def dcp_connect(port: int, name: str = "test", flags: int = 0x01, *,
                features: tuple[int, ...] = (0x12, 0x06, 0x07, 0x0B),
                controls: dict[str, str] | None = None, bucket: str = "default",
                scram: bool = False) -> RawClient:
    """HELLO + auth + SELECT_BUCKET + DCP_OPEN + DCP_CONTROLs, asserting each step."""
    c = RawClient(port)
    c.hello(*features)
    if scram:
        c.auth_scram("Administrator", "password")
    else:
        assert c.auth_plain("Administrator", "password") == 0
    assert c.select_bucket(bucket) == 0
    assert c.dcp_open(name, flags) == 0
    for k, v in (controls if controls is not None else {"enable_noop": "true"}).items():
        assert c.control(k, v) == 0, (k, v)
    return c
