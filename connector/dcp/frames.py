"""The 24-byte memcached binary header: encode one packet, split a byte stream into frames.

Pure, no I/O. `connection.py` feeds socket bytes to `split_frames` on its reader task;
`messages.py` builds request packets with `encode_request` and decodes `Frame` bodies.

Layout (big-endian), classic framing (magic 0x80/0x81)::

    magic u8 | opcode u8 | keylen u16 | extlen u8 | datatype u8 | vbucket/status u16 |
    bodylen u32 | opaque u32 | cas u64          then framing-extras, extras, key, value

Alternate framing (magic 0x08/0x18) uses byte 2 as the framing-extras length and byte 3 as a
one-byte key length; `bodylen` always counts framing extras + extras + key + value.
"""

from __future__ import annotations

import struct

from connector.dcp.opcodes import ALT_MAGICS, Magic

HEADER_LEN = 24
HEADER = struct.Struct(">BBHBBHIIQ")
ALT_HEADER = struct.Struct(">BBBBBBHIIQ")
_BODYLEN = struct.Struct(">I")
_VALID_MAGICS = frozenset(int(m) for m in Magic)
_ALT = frozenset(int(m) for m in ALT_MAGICS)


class FrameError(ValueError):
    """Bytes that cannot be a memcached binary packet (bad magic, inconsistent lengths)."""


class Frame:
    """One complete packet. `data` is the whole packet (header included); fields are parsed.

    For responses `vbucket` holds the status; `status` is the readable alias.
    Offsets: framing extras start at 24, extras at `ext_off`, key at `key_off`, value at
    `value_off` up to `len(data)`.
    """

    __slots__ = (
        "magic",
        "opcode",
        "keylen",
        "extlen",
        "datatype",
        "vbucket",
        "bodylen",
        "opaque",
        "cas",
        "felen",
        "data",
    )

    def __init__(
        self,
        magic: int,
        opcode: int,
        keylen: int,
        extlen: int,
        datatype: int,
        vbucket: int,
        bodylen: int,
        opaque: int,
        cas: int,
        felen: int,
        data: bytes,
    ) -> None:
        self.magic = magic
        self.opcode = opcode
        self.keylen = keylen
        self.extlen = extlen
        self.datatype = datatype
        self.vbucket = vbucket
        self.bodylen = bodylen
        self.opaque = opaque
        self.cas = cas
        self.felen = felen
        self.data = data

    @property
    def status(self) -> int:
        return self.vbucket

    @property
    def nbytes(self) -> int:
        """Size on the wire (what flow control counts)."""
        return HEADER_LEN + self.bodylen

    @property
    def ext_off(self) -> int:
        return HEADER_LEN + self.felen

    @property
    def key_off(self) -> int:
        return HEADER_LEN + self.felen + self.extlen

    @property
    def value_off(self) -> int:
        return HEADER_LEN + self.felen + self.extlen + self.keylen

    @property
    def framing_extras(self) -> bytes:
        return self.data[HEADER_LEN : HEADER_LEN + self.felen]

    @property
    def extras(self) -> bytes:
        o = self.ext_off
        return self.data[o : o + self.extlen]

    @property
    def key(self) -> bytes:
        o = self.key_off
        return self.data[o : o + self.keylen]

    @property
    def value(self) -> bytes:
        return self.data[self.value_off :]

    def __repr__(self) -> str:
        return (
            f"Frame(magic=0x{self.magic:02x}, opcode=0x{self.opcode:02x}, "
            f"vb/status={self.vbucket}, "
            f"opaque={self.opaque}, extlen={self.extlen}, keylen={self.keylen}, "
            f"bodylen={self.bodylen})"
        )


def parse_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, ...]:
    """Decode one header at `offset`: (magic, opcode, keylen, extlen, datatype, vbucket/status,
    bodylen, opaque, cas, framing_extras_len). Raises FrameError on an unknown magic."""
    magic = buf[offset]
    if magic in _ALT:
        m, op, felen, keylen, extlen, dt, vb, bodylen, opaque, cas = ALT_HEADER.unpack_from(
            buf, offset
        )
    elif magic in _VALID_MAGICS:
        m, op, keylen, extlen, dt, vb, bodylen, opaque, cas = HEADER.unpack_from(buf, offset)
        felen = 0
    else:
        raise FrameError(f"bad magic 0x{magic:02x} at offset {offset}")
    if felen + extlen + keylen > bodylen:
        raise FrameError(
            f"framing extras {felen} + extras {extlen} + key {keylen} exceed body {bodylen}"
        )
    return m, op, keylen, extlen, dt, vb, bodylen, opaque, cas, felen


def packet_body_len(buf: bytes, offset: int = 0) -> int:
    """`bodylen` of the header at `offset` (bytes 8-11 in both framings)."""
    return int(_BODYLEN.unpack_from(buf, offset + 8)[0])


def split_frames(buf: bytes | bytearray, offset: int = 0) -> tuple[list[Frame], int]:
    """Cut every complete packet out of `buf` starting at `offset`.

    Returns the frames and the offset just past the last complete one; a partial packet at the
    end stays for the next call. Called by the connection reader task for every chunk read
    (and by the decode bench). Each frame's `data` is one copy of its bytes; passing `bytes`
    (not a bytearray) makes that copy a plain slice, the fastest path.
    """
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    frames: list[Frame] = []
    end = len(buf)
    unpack = HEADER.unpack_from
    append = frames.append
    while end - offset >= HEADER_LEN:
        magic = buf[offset]
        if magic == 0x80 or magic == 0x81:
            m, op, keylen, extlen, dt, vb, bodylen, opaque, cas = unpack(buf, offset)
            felen = 0
            if extlen + keylen > bodylen:
                raise FrameError(f"extras {extlen} + key {keylen} exceed body {bodylen}")
        else:
            m, op, keylen, extlen, dt, vb, bodylen, opaque, cas, felen = parse_header(buf, offset)
        nxt = offset + HEADER_LEN + bodylen
        if nxt > end:
            break
        append(Frame(m, op, keylen, extlen, dt, vb, bodylen, opaque, cas, felen, buf[offset:nxt]))
        offset = nxt
    return frames, offset


def encode_packet(
    magic: int,
    opcode: int,
    *,
    vbucket_or_status: int = 0,
    opaque: int = 0,
    cas: int = 0,
    extras: bytes = b"",
    key: bytes = b"",
    value: bytes = b"",
    datatype: int = 0,
    framing_extras: bytes = b"",
) -> bytes:
    """Build one packet. With `framing_extras` the alternate magic (0x08/0x18) is used."""
    bodylen = len(framing_extras) + len(extras) + len(key) + len(value)
    if framing_extras:
        if magic == Magic.REQUEST:
            magic = Magic.ALT_REQUEST
        elif magic == Magic.RESPONSE:
            magic = Magic.ALT_RESPONSE
        if len(key) > 0xFF or len(framing_extras) > 0xFF:
            raise FrameError("alternate framing allows at most 255 bytes of key and framing extras")
        header = ALT_HEADER.pack(
            magic,
            opcode,
            len(framing_extras),
            len(key),
            len(extras),
            datatype,
            vbucket_or_status,
            bodylen,
            opaque,
            cas,
        )
    else:
        if len(key) > 0xFFFF or len(extras) > 0xFF:
            raise FrameError("key longer than 65535 bytes or extras longer than 255 bytes")
        header = HEADER.pack(
            magic,
            opcode,
            len(key),
            len(extras),
            datatype,
            vbucket_or_status,
            bodylen,
            opaque,
            cas,
        )
    return b"".join((header, framing_extras, extras, key, value))


def encode_request(
    opcode: int,
    *,
    vbucket: int = 0,
    opaque: int = 0,
    cas: int = 0,
    extras: bytes = b"",
    key: bytes = b"",
    value: bytes = b"",
    datatype: int = 0,
    framing_extras: bytes = b"",
) -> bytes:
    """A client request (magic 0x80, or 0x08 with framing extras)."""
    return encode_packet(
        Magic.REQUEST,
        opcode,
        vbucket_or_status=vbucket,
        opaque=opaque,
        cas=cas,
        extras=extras,
        key=key,
        value=value,
        datatype=datatype,
        framing_extras=framing_extras,
    )


def encode_response(
    opcode: int,
    *,
    status: int = 0,
    opaque: int = 0,
    cas: int = 0,
    extras: bytes = b"",
    key: bytes = b"",
    value: bytes = b"",
    datatype: int = 0,
) -> bytes:
    """A response (magic 0x81): used to answer the producer's DCP_NOOP."""
    return encode_packet(
        Magic.RESPONSE,
        opcode,
        vbucket_or_status=status,
        opaque=opaque,
        cas=cas,
        extras=extras,
        key=key,
        value=value,
        datatype=datatype,
    )
