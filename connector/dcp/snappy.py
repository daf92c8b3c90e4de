"""Raw Snappy decompression (the block format KV uses for datatype 0x02), pure Python.

Used by `messages.decode_change` only when the connection negotiated HELLO Snappy (off by
default: see `DcpSettings.snappy`). Format: varint uncompressed length, then elements whose tag
low bits say literal (00) or copy with a 1-, 2- or 4-byte offset (01, 10, 11).
"""

from __future__ import annotations


class SnappyError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 32:
            raise SnappyError("bad length preamble")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def decompress(buf: bytes) -> bytes:
    """Inflate one raw Snappy block."""
    expected, pos = _varint(buf, 0)
    out = bytearray()
    n = len(buf)
    while pos < n:
        tag = buf[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(buf[pos : pos + extra], "little")
                pos += extra
            length += 1
            if pos + length > n:
                raise SnappyError("literal runs past the input")
            out += buf[pos : pos + length]
            pos += length
            continue
        if kind == 1:
            length = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | buf[pos]
            pos += 1
        elif kind == 2:
            length = (tag >> 2) + 1
            offset = int.from_bytes(buf[pos : pos + 2], "little")
            pos += 2
        else:
            length = (tag >> 2) + 1
            offset = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise SnappyError(f"copy offset {offset} outside the {len(out)} bytes produced")
        start = len(out) - offset
        if length <= offset:
            out += out[start : start + length]
        else:  # overlapping copy repeats the last `offset` bytes
            pattern = bytes(out[start:])
            reps, rest = divmod(length, offset)
            out += pattern * reps + pattern[:rest]
    if len(out) != expected:
        raise SnappyError(f"inflated to {len(out)} bytes, preamble said {expected}")
    return bytes(out)
