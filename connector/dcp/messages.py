"""Pure decoders for what the producer sends: DCP messages and the replies the client reads.

No I/O, no state. The stream multiplexer (`stream.py`) calls these on the consumer's loop when it
takes a frame off the delivery queue; the bench calls `decode_change` in a tight loop, so that path
uses precompiled `struct.Struct`s with `unpack_from` and no per-byte loops.

Extras layouts (big-endian) from kv_engine docs/dcp/documentation/commands, with the errata in
/work/shared/docs/couchbase-wire.md: the mutation extras are 31 bytes (no "clen" byte), the
SeqnoAdvanced extras are one u64 (the doc's diagram shows opcode 0x65 and extlen 4), and collection
system-event values are (manifest uid u64, scope id u32, collection id u32) as in the struct
definitions (the doc's worked example labels the two u32s the other way round).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.dcp.frames import Frame
from connector.dcp.opcodes import Opcode, StreamEndReason
from connector.dcp.snappy import decompress as snappy_decompress
from connector.events import ChangeEvent, ChangeKind, FailoverEntry, Keyspace, Snapshot

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
SNAPSHOT_V1 = struct.Struct(">QQI")
SNAPSHOT_V2 = struct.Struct(">QQIQQ")
MUTATION_EXTRAS = struct.Struct(">QQIIIHB")  # 31 bytes
DELETION_V1_EXTRAS = struct.Struct(">QQH")  # 18 bytes
DELETION_V2_EXTRAS = struct.Struct(">QQIB")  # 21 bytes
EXPIRATION_EXTRAS = struct.Struct(">QQI")  # 20 bytes
SYSTEM_EVENT_EXTRAS = struct.Struct(">QIB")  # 13 bytes
COLLECTION_EVENT_VALUE = struct.Struct(">QII")
SCOPE_EVENT_VALUE = struct.Struct(">QI")
FAILOVER_ENTRY = struct.Struct(">QQ")
VB_SEQNO = struct.Struct(">HQ")
COLLECTION_ID_EXTRAS = struct.Struct(">QI")

_JSON_DECODE = json.JSONDecoder().decode
DATATYPE_JSON = 0x01
DATATYPE_SNAPPY = 0x02
DATATYPE_XATTR = 0x04


class DecodeError(ValueError):
    """A message whose body does not match its documented layout."""


# --- LEB128 (collection-id key prefix) -------------------------------------------------------


def encode_leb128(value: int) -> bytes:
    """Unsigned LEB128, as the key prefix carries the collection id."""
    if value < 0:
        raise ValueError("LEB128 here is unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_leb128(buf: bytes, offset: int, end: int) -> tuple[int, int]:
    """(value, offset after it). A collection id is a u32, so at most 5 bytes are read."""
    b = buf[offset]
    if b < 0x80:  # ids below 128 (the default collection, most user collections)
        return b, offset + 1
    result = b & 0x7F
    shift = 7
    pos = offset + 1
    limit = min(end, offset + 5)
    while pos < limit:
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return result, pos
        shift += 7
    raise DecodeError(f"unterminated LEB128 collection id at offset {offset}")


# --- xattrs ----------------------------------------------------------------------------------


def parse_xattrs(buf: bytes, offset: int = 0) -> tuple[dict[str, Any], int]:
    """Parse the xattr section at `offset`: u32 total, then (u32 len, key NUL value NUL) pairs.

    Returns ({key: decoded JSON value}, offset of the document body). A value that is not JSON
    is kept as its string.
    """
    if len(buf) - offset < 4:
        raise DecodeError("xattr section shorter than its 4-byte length")
    (total,) = U32.unpack_from(buf, offset)
    pos = offset + 4
    end = pos + total
    if end > len(buf):
        raise DecodeError(f"xattr section claims {total} bytes, {len(buf) - pos} present")
    out: dict[str, Any] = {}
    unpack = U32.unpack_from
    loads = _JSON_DECODE
    while pos < end:
        (plen,) = unpack(buf, pos)
        pos += 4
        pair_end = pos + plen
        if pair_end > end:
            raise DecodeError("xattr pair runs past the xattr section")
        nul = buf.index(0, pos, pair_end)
        key = buf[pos:nul].decode()
        raw = buf[nul + 1 : pair_end - 1].decode("utf-8", "replace")
        try:
            out[key] = loads(raw)
        except ValueError:
            out[key] = raw
        pos = pair_end
    return out, end


def encode_xattrs(xattrs: Mapping[str, Any]) -> bytes:
    """Inverse of `parse_xattrs` (values JSON-encoded); used by tests and the bench."""
    pairs = []
    for k, v in xattrs.items():
        body = k.encode() + b"\0" + json.dumps(v, separators=(",", ":")).encode() + b"\0"
        pairs.append(U32.pack(len(body)) + body)
    blob = b"".join(pairs)
    return U32.pack(len(blob)) + blob


# --- small messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotMarker:
    start: int
    end: int
    flags: int
    max_visible: int | None = None
    high_completed: int | None = None


def decode_snapshot_marker(frame: Frame) -> SnapshotMarker:
    """v1: 20-byte extras (start, end, flags). v2.x: 1-byte extras = version, body in the value."""
    data = frame.data
    if frame.extlen == 20:
        start, end, flags = SNAPSHOT_V1.unpack_from(data, frame.ext_off)
        return SnapshotMarker(start, end, flags)
    if frame.extlen == 1:
        version = data[frame.ext_off]
        voff = frame.value_off
        if len(data) - voff < SNAPSHOT_V2.size:
            raise DecodeError(f"snapshot marker v2.{version} value is {len(data) - voff} bytes")
        start, end, flags, mvs, hcs = SNAPSHOT_V2.unpack_from(data, voff)
        return SnapshotMarker(start, end, flags, mvs, hcs)
    raise DecodeError(f"snapshot marker with {frame.extlen}-byte extras")


def decode_stream_end(frame: Frame) -> StreamEndReason | int:
    if frame.extlen < 4:
        raise DecodeError("stream end without its 4-byte reason")
    return StreamEndReason.of(U32.unpack_from(frame.data, frame.ext_off)[0])


def decode_seqno_advanced(frame: Frame) -> int:
    if frame.extlen < 8:
        raise DecodeError(f"seqno advanced with {frame.extlen}-byte extras (want 8)")
    return int(U64.unpack_from(frame.data, frame.ext_off)[0])


@dataclass(frozen=True, slots=True)
class SystemEvent:
    seqno: int
    event: int
    version: int
    key: bytes
    manifest_uid: int | None = None
    scope_id: int | None = None
    collection_id: int | None = None


def decode_system_event(frame: Frame) -> SystemEvent:
    """Extras (seqno, event, version); collection events carry (uid, scope id, cid) in the value,
    scope events (uid, scope id). FlatBuffers values (version 2) are not requested."""
    if frame.extlen < SYSTEM_EVENT_EXTRAS.size:
        raise DecodeError(f"system event with {frame.extlen}-byte extras")
    seqno, event, version = SYSTEM_EVENT_EXTRAS.unpack_from(frame.data, frame.ext_off)
    value = frame.value
    key = frame.key
    if event in (0, 1, 2, 5) and len(value) >= COLLECTION_EVENT_VALUE.size and version < 2:
        uid, sid, cid = COLLECTION_EVENT_VALUE.unpack_from(value, 0)
        return SystemEvent(seqno, event, version, key, uid, sid, cid)
    if event in (3, 4) and len(value) >= SCOPE_EVENT_VALUE.size and version < 2:
        uid, sid = SCOPE_EVENT_VALUE.unpack_from(value, 0)
        return SystemEvent(seqno, event, version, key, uid, sid, None)
    return SystemEvent(seqno, event, version, key)


def decode_failover_log(value: bytes) -> list[FailoverEntry]:
    """(vbuuid u64, seqno u64) pairs, newest first, as STREAM_REQ and GET_FAILOVER_LOG reply."""
    if len(value) % 16:
        raise DecodeError(f"failover log of {len(value)} bytes is not a multiple of 16")
    return [FailoverEntry(u, s) for u, s in FAILOVER_ENTRY.iter_unpack(value)]


def decode_vb_seqnos(value: bytes) -> dict[int, int]:
    """GET_ALL_VB_SEQNOS reply: (vbucket u16, high seqno u64) pairs."""
    if len(value) % 10:
        raise DecodeError(f"vbucket seqno list of {len(value)} bytes is not a multiple of 10")
    return dict(VB_SEQNO.iter_unpack(value))


def decode_rollback_seqno(value: bytes) -> int:
    if len(value) < 8:
        raise DecodeError("rollback reply without its u64 seqno")
    return int(U64.unpack_from(value, 0)[0])


def decode_collection_id(frame: Frame) -> tuple[int, int]:
    """GET_COLLECTION_ID reply extras: (manifest uid u64, collection id u32)."""
    if frame.extlen < COLLECTION_ID_EXTRAS.size:
        raise DecodeError(f"collection id reply with {frame.extlen}-byte extras")
    uid, cid = COLLECTION_ID_EXTRAS.unpack_from(frame.data, frame.ext_off)
    return uid, cid


def decode_hello_features(value: bytes) -> list[int]:
    return [f for (f,) in struct.iter_unpack(">H", value[: len(value) // 2 * 2])]


# --- document changes (the hot path) ---------------------------------------------------------


def item_seqno(frame: Frame) -> int:
    """by_seqno of a mutation/deletion/expiration: the first u64 of the extras."""
    return U64.unpack_from(frame.data, 24 + frame.felen)[0]  # type: ignore[no-any-return]


_KIND: dict[int, ChangeKind] = {
    Opcode.DCP_MUTATION: ChangeKind.MUTATION,
    Opcode.DCP_DELETION: ChangeKind.DELETION,
    Opcode.DCP_EXPIRATION: ChangeKind.EXPIRATION,
}
_MUTATION = ChangeKind.MUTATION
_NO_XATTRS: dict[str, Any] = {}


def decode_change(
    frame: Frame,
    snapshot: Snapshot,
    keyspaces: Mapping[int, Keyspace],
    unknown: Callable[[int], Keyspace],
    collections: bool = True,
) -> ChangeEvent:
    """Mutation 0x57 / deletion 0x58 / expiration 0x59 -> ChangeEvent.

    `keyspaces` maps collection id -> Keyspace; `unknown(cid)` names ids not in it. `body` is the
    document (xattrs stripped, Snappy inflated) for a mutation, None otherwise; `xattrs` holds the
    decoded xattr values (deletions carry only xattrs). `meta` is left empty for the pipeline.
    """
    data = frame.data
    opcode = frame.opcode
    kind = _KIND.get(opcode)
    if kind is None:
        raise DecodeError(f"opcode 0x{opcode:02x} is not a document change")
    if frame.extlen < 8:
        raise DecodeError(f"opcode 0x{opcode:02x} with {frame.extlen}-byte extras")
    ext = 24 + frame.felen
    (seqno,) = U64.unpack_from(data, ext)
    koff = ext + frame.extlen
    kend = koff + frame.keylen
    if collections and kend > koff:
        b = data[koff]
        if b < 0x80:
            cid = b
            kstart = koff + 1
        else:
            cid, kstart = decode_leb128(data, koff, kend)
    else:
        cid, kstart = 0, koff
    keyspace = keyspaces.get(cid)
    if keyspace is None:
        keyspace = unknown(cid)
    key = data[kstart:kend].decode("utf-8", "surrogateescape")
    datatype = frame.datatype
    xattrs = _NO_XATTRS
    body: bytes | None
    if datatype & (DATATYPE_XATTR | DATATYPE_SNAPPY):
        value = data[kend:]
        if datatype & DATATYPE_SNAPPY and value:
            value = snappy_decompress(value)
        if datatype & DATATYPE_XATTR and value:
            xattrs, boff = parse_xattrs(value, 0)
            value = value[boff:]
        body = value if kind is _MUTATION else None
    else:
        body = data[kend:] if kind is _MUTATION else None
    return ChangeEvent(
        kind,
        keyspace,
        key,
        frame.vbucket,
        seqno,
        frame.cas,
        snapshot,
        body,
        {},
        {} if xattrs is _NO_XATTRS else xattrs,
    )


@dataclass(frozen=True, slots=True)
class ItemMeta:
    """The rest of a change's extras, for callers that want them (not on the hot path)."""

    seqno: int
    rev_seqno: int
    flags: int | None = None
    expiry: int | None = None
    lock_time: int | None = None
    delete_time: int | None = None


def decode_item_meta(frame: Frame) -> ItemMeta:
    data, off, n = frame.data, frame.ext_off, frame.extlen
    if frame.opcode == Opcode.DCP_MUTATION and n >= MUTATION_EXTRAS.size:
        seqno, rev, flags, expiry, lock, _nmeta, _nru = MUTATION_EXTRAS.unpack_from(data, off)
        return ItemMeta(seqno, rev, flags, expiry, lock)
    if n == DELETION_V2_EXTRAS.size:
        seqno, rev, dtime, _unused = DELETION_V2_EXTRAS.unpack_from(data, off)
        return ItemMeta(seqno, rev, delete_time=dtime)
    if n == EXPIRATION_EXTRAS.size:
        seqno, rev, dtime = EXPIRATION_EXTRAS.unpack_from(data, off)
        return ItemMeta(seqno, rev, delete_time=dtime)
    if n == DELETION_V1_EXTRAS.size:
        seqno, rev, _nmeta = DELETION_V1_EXTRAS.unpack_from(data, off)
        return ItemMeta(seqno, rev)
    raise DecodeError(f"opcode 0x{frame.opcode:02x} with {n}-byte extras")
