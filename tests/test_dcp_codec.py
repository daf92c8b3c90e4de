"""Codec tests: expected bytes are built by hand with `struct` from the documented layouts
(kv_engine docs/BinaryProtocol.md, docs/dcp/documentation/commands/*.md) and the errata in
/work/shared/docs/couchbase-wire.md; where a doc gives a worked example, its bytes are used."""

from __future__ import annotations

import json
import struct

import pytest

from connector.dcp import requests
from connector.dcp.frames import (
    HEADER_LEN,
    Frame,
    FrameError,
    encode_request,
    encode_response,
    parse_header,
    split_frames,
)
from connector.dcp.messages import (
    DecodeError,
    decode_change,
    decode_collection_id,
    decode_failover_log,
    decode_hello_features,
    decode_item_meta,
    decode_leb128,
    decode_rollback_seqno,
    decode_seqno_advanced,
    decode_snapshot_marker,
    decode_stream_end,
    decode_system_event,
    decode_vb_seqnos,
    encode_leb128,
    encode_xattrs,
    parse_xattrs,
)
from connector.dcp.opcodes import NO_END_SEQNO, StreamEndReason
from connector.dcp.snappy import SnappyError, decompress
from connector.events import ChangeKind, FailoverEntry, Keyspace, Snapshot

HDR = ">BBHBBHIIQ"


def req(opcode, *, extras=b"", key=b"", value=b"", vb=0, opaque=0, cas=0, datatype=0):
    """A producer->consumer request packet written straight from the header table."""
    body = extras + key + value
    head = struct.pack(
        HDR, 0x80, opcode, len(key), len(extras), datatype, vb, len(body), opaque, cas
    )
    return head + body


def one_frame(packet: bytes) -> Frame:
    frames, used = split_frames(packet)
    assert used == len(packet) and len(frames) == 1
    return frames[0]


# --- header -----------------------------------------------------------------------------------


def test_header_roundtrip_classic():
    pkt = encode_request(
        0x57,
        vbucket=3,
        opaque=0xDEADBEEF,
        cas=42,
        extras=b"E" * 4,
        key=b"key",
        value=b"value",
        datatype=1,
    )
    assert pkt[:24] == struct.pack(HDR, 0x80, 0x57, 3, 4, 1, 3, 12, 0xDEADBEEF, 42)
    f = one_frame(pkt)
    assert (f.opcode, f.vbucket, f.opaque, f.cas, f.datatype) == (0x57, 3, 0xDEADBEEF, 42, 1)
    assert (f.extras, f.key, f.value) == (b"EEEE", b"key", b"value")
    assert f.nbytes == 24 + 12


def test_alternate_framing_layout():
    # magic 0x08: byte 2 = framing extras length, byte 3 = key length
    pkt = encode_request(0x53, framing_extras=b"\x22\x00\x07", key=b"k", extras=b"x", vbucket=9)
    assert pkt[:24] == struct.pack(">BBBBBBHIIQ", 0x08, 0x53, 3, 1, 1, 0, 9, 5, 0, 0)
    f = one_frame(pkt)
    assert f.magic == 0x08 and f.felen == 3
    assert (f.framing_extras, f.extras, f.key, f.value) == (b"\x22\x00\x07", b"x", b"k", b"")
    hdr = parse_header(pkt)
    assert hdr[2] == 1 and hdr[-1] == 3  # keylen, framing extras length


def test_alt_response_status():
    pkt = struct.pack(">BBBBBBHIIQ", 0x18, 0x53, 2, 0, 0, 0, 0x23, 10, 7, 0)
    pkt += b"\x00\x01" + struct.pack(">Q", 5)
    f = one_frame(pkt)
    assert f.status == 0x23 and f.value == struct.pack(">Q", 5)


def test_response_encoding_for_noop():
    assert requests.noop_response(77) == struct.pack(HDR, 0x81, 0x5C, 0, 0, 0, 0, 0, 77, 0)
    assert encode_response(0x5C, status=4, opaque=1)[6:8] == b"\x00\x04"


def test_split_frames_keeps_partial_tail():
    a = req(0x5C, opaque=1)
    b = req(0x57, extras=b"x" * 31, key=b"\x00k", value=b"v", vb=2)
    stream = a + b
    for cut in range(len(stream) + 1):
        frames, used = split_frames(stream[:cut])
        whole = [p for p, end in ((a, len(a)), (b, len(stream))) if end <= cut]
        assert [f.data for f in frames] == whole
        assert used == sum(len(p) for p in whole)
    frames, used = split_frames(bytearray(stream))
    assert [f.opcode for f in frames] == [0x5C, 0x57] and used == len(stream)


@pytest.mark.parametrize(
    "bad",
    [
        b"\x42" + b"\x00" * 23,  # unknown magic
        struct.pack(HDR, 0x80, 0x57, 10, 4, 0, 0, 8, 0, 0) + b"\x00" * 8,  # key+extras > body
    ],
)
def test_split_frames_rejects_garbage(bad):
    with pytest.raises(FrameError):
        split_frames(bad)


# --- requests ---------------------------------------------------------------------------------


def test_hello_value_is_u16_features():
    pkt = requests.hello("agent", [0x12, 0x06, 0x07, 0x0B], opaque=5)
    f = one_frame(pkt)
    assert f.opcode == 0x1F and json.loads(f.key) == {"a": "agent"}
    assert f.value == struct.pack(">4H", 0x12, 0x06, 0x07, 0x0B)
    assert decode_hello_features(f.value) == [0x12, 0x06, 0x07, 0x0B]


def test_dcp_open_layout():
    pkt = requests.dcp_open("cbembed/g/m-0", 0x25, opaque=9)
    expected = struct.pack(HDR, 0x80, 0x50, 13, 8, 0, 0, 21, 9, 0) + struct.pack(">II", 0, 0x25)
    assert pkt == expected + b"cbembed/g/m-0"
    assert requests.DEFAULT_OPEN_FLAGS == 0x01 | 0x04 | 0x20
    with pytest.raises(ValueError):
        requests.dcp_open("x" * 201, 1)


def test_dcp_control_is_key_and_value_without_extras():
    # erratum: the doc's example shows keylen 0, extlen 4; the validator wants key + value.
    pkt = requests.dcp_control("enable_noop", "true", opaque=3)
    assert pkt == struct.pack(HDR, 0x80, 0x5E, 11, 0, 0, 0, 15, 3, 0) + b"enable_nooptrue"


@pytest.mark.parametrize(
    ("start", "uuid", "ss", "se", "flags"),
    [(0, 0, 0, 0, 0), (10, 0xABCDEF, 5, 12, 0x10), (2**63, 1, 2**63, 2**63, 0x20)],
)
def test_stream_request_extras(start, uuid, ss, se, flags):
    pkt = requests.stream_request(
        7,
        start_seqno=start,
        vbuuid=uuid,
        snap_start=ss,
        snap_end=se,
        flags=flags,
        opaque=11,
        filter_json=b'{"collections":["8"]}',
    )
    extras = struct.pack(">IIQQQQQ", flags, 0, start, NO_END_SEQNO, uuid, ss, se)
    value = b'{"collections":["8"]}'
    head = struct.pack(HDR, 0x80, 0x53, 0, 48, 0, 7, 48 + len(value), 11, 0)
    assert pkt == head + extras + value


def test_stream_request_refuses_start_outside_snapshot():
    with pytest.raises(ValueError):
        requests.stream_request(0, start_seqno=9, vbuuid=0, snap_start=10, snap_end=12)


def test_collection_filter_uses_hex_ids():
    assert json.loads(requests.collection_filter([8, 0x8A, 255])) == {
        "collections": ["8", "8a", "ff"]
    }


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: requests.buffer_ack(1234, opaque=1),
            struct.pack(HDR, 0x80, 0x5D, 0, 4, 0, 0, 4, 1, 0) + struct.pack(">I", 1234),
        ),
        (
            lambda: requests.close_stream(5, opaque=2),
            struct.pack(HDR, 0x80, 0x52, 0, 0, 0, 5, 0, 2, 0),
        ),
        (
            lambda: requests.get_failover_log(6, opaque=3),
            struct.pack(HDR, 0x80, 0x54, 0, 0, 0, 6, 0, 3, 0),
        ),
        (
            lambda: requests.select_bucket("default", opaque=4),
            struct.pack(HDR, 0x80, 0x89, 7, 0, 0, 0, 7, 4, 0) + b"default",
        ),
        (
            lambda: requests.get_cluster_config(opaque=5),
            struct.pack(HDR, 0x80, 0xB5, 0, 0, 0, 0, 0, 5, 0),
        ),
        # the path travels in the VALUE
        (
            lambda: requests.get_collection_id("inventory.hotels", opaque=6),
            struct.pack(HDR, 0x80, 0xBB, 0, 0, 0, 0, 16, 6, 0) + b"inventory.hotels",
        ),
        # doc example: state restricted to replica
        (
            lambda: requests.get_all_vb_seqnos(2, opaque=0xDEADBEEF),
            struct.pack(HDR, 0x80, 0x48, 0, 4, 0, 0, 4, 0xDEADBEEF, 0) + b"\x00\x00\x00\x02",
        ),
        (
            lambda: requests.get_all_vb_seqnos(None, opaque=0xDEADBEEF),
            struct.pack(HDR, 0x80, 0x48, 0, 0, 0, 0, 0, 0xDEADBEEF, 0),
        ),
        (
            lambda: requests.get_all_vb_seqnos(0, 0xCAFEF00D, opaque=1),
            struct.pack(HDR, 0x80, 0x48, 0, 8, 0, 0, 8, 1, 0) + struct.pack(">II", 0, 0xCAFEF00D),
        ),
        (
            lambda: requests.sasl_auth("PLAIN", b"\0u\0p", opaque=7),
            struct.pack(HDR, 0x80, 0x21, 5, 0, 0, 0, 9, 7, 0) + b"PLAIN\0u\0p",
        ),
        (
            lambda: requests.sasl_step("SCRAM-SHA512", b"c=biws", opaque=8),
            struct.pack(HDR, 0x80, 0x22, 12, 0, 0, 0, 18, 8, 0) + b"SCRAM-SHA512c=biws",
        ),
    ],
)
def test_request_layouts(build, expected):
    assert build() == expected


# --- LEB128 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (8, b"\x08"),
        (0x7F, b"\x7f"),
        (0x80, b"\x80\x01"),
        (0x3FFF, b"\xff\x7f"),
        (0x4000, b"\x80\x80\x01"),
        (624485, b"\xe5\x8e\x26"),  # the Wikipedia example
        (0xFFFFFFFF, b"\xff\xff\xff\xff\x0f"),
    ],
)
def test_leb128(value, encoded):
    assert encode_leb128(value) == encoded
    assert decode_leb128(encoded + b"key", 0, len(encoded) + 3) == (value, len(encoded))


def test_leb128_unterminated():
    with pytest.raises(DecodeError):
        decode_leb128(b"\x80\x80", 0, 2)


# --- xattrs -----------------------------------------------------------------------------------


def xattr_section(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """u32 total, then (u32 pair length, key NUL value NUL) per pair (docs/Document.md)."""
    blob = b""
    for k, v in pairs:
        body = k + b"\0" + v + b"\0"
        blob += struct.pack(">I", len(body)) + body
    return struct.pack(">I", len(blob)) + blob


def test_parse_xattrs_by_hand():
    sec = xattr_section([(b"_sync", b'{"rev":"1-a"}'), (b"cbembed", b'{"h":"x1","dims":384}')])
    body = b'{"name":"hotel"}'
    xattrs, off = parse_xattrs(sec + body)
    assert xattrs == {"_sync": {"rev": "1-a"}, "cbembed": {"h": "x1", "dims": 384}}
    assert (sec + body)[off:] == body
    assert encode_xattrs(xattrs) == sec


def test_parse_xattrs_non_json_value_kept_as_text():
    sec = xattr_section([(b"k", b"not json")])
    assert parse_xattrs(sec)[0] == {"k": "not json"}


@pytest.mark.parametrize(
    "bad",
    [b"\x00\x00", struct.pack(">I", 50) + b"x", struct.pack(">II", 8, 20) + b"k\0v\0"],
)
def test_parse_xattrs_rejects_bad_lengths(bad):
    with pytest.raises(DecodeError):
        parse_xattrs(bad)


# --- snapshot markers ---------------------------------------------------------------------------


def test_snapshot_marker_v1_doc_example():
    # docs example: start 0, end 8, type 0x01 (the doc calls 0x01 "disk": erratum, it is memory)
    pkt = bytes.fromhex(
        "805600001400000000000014deadbeef00000000000000000000000000000000000000000000000800000001"
    )
    m = decode_snapshot_marker(one_frame(pkt))
    assert (m.start, m.end, m.flags, m.max_visible) == (0, 8, 0x01, None)


def test_snapshot_marker_v2_0_from_field_table():
    # field table of the doc (its byte diagram is garbled): version 0, start 1, end 8,
    # type 2 (disk), max visible 8, high completed 7
    value = struct.pack(">QQIQQ", 1, 8, 2, 8, 7)
    pkt = req(0x56, extras=b"\x00", value=value, opaque=0xDEADBEEF)
    assert len(pkt) - HEADER_LEN == 0x25
    m = decode_snapshot_marker(one_frame(pkt))
    assert (m.start, m.end, m.flags, m.max_visible, m.high_completed) == (1, 8, 2, 8, 7)


def test_snapshot_marker_v2_2_extra_fields_ignored():
    value = struct.pack(">QQIQQQQ", 3, 9, 1, 9, 0, 2, 0)
    m = decode_snapshot_marker(one_frame(req(0x56, extras=b"\x02", value=value)))
    assert (m.start, m.end, m.flags) == (3, 9, 1)


def test_snapshot_marker_bad_extras():
    with pytest.raises(DecodeError):
        decode_snapshot_marker(one_frame(req(0x56, extras=b"\x00" * 7)))


# --- small messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(range(9)) + [42])
def test_stream_end(reason):
    f = one_frame(req(0x55, extras=struct.pack(">I", reason), opaque=0xDEADBEEF))
    got = decode_stream_end(f)
    assert got == reason
    if reason <= 8:
        assert isinstance(got, StreamEndReason)


def test_stream_end_doc_example():
    pkt = bytes.fromhex("805500000400000000000004deadbeef" + "00" * 8 + "00000000")
    assert decode_stream_end(one_frame(pkt)) is StreamEndReason.OK


def test_seqno_advanced_is_one_u64():
    # erratum: the doc's diagram shows opcode 0x65 and extlen 4; the text says 0x64 and 8
    f = one_frame(req(0x64, extras=struct.pack(">Q", 4), vb=3))
    assert decode_seqno_advanced(f) == 4
    with pytest.raises(DecodeError):
        decode_seqno_advanced(one_frame(req(0x64, extras=b"\0\0\0\4")))


def test_system_event_collection_created():
    value = struct.pack(">QIII", 2, 0, 8, 72000)  # manifest uid, scope id, collection id, ttl
    f = one_frame(
        req(
            0x5F,
            extras=struct.pack(">QIB", 4, 0, 1),
            key=b"mycollection",
            value=value,
            vb=0x210,
            opaque=0x1210,
        )
    )
    ev = decode_system_event(f)
    assert (ev.seqno, ev.event, ev.version, ev.key) == (4, 0, 1, b"mycollection")
    assert (ev.manifest_uid, ev.scope_id, ev.collection_id) == (2, 0, 8)


def test_system_event_doc_example_header():
    pkt = bytes.fromhex(
        "805f000c"
        "0d000210"
        "0000002d"
        "00001210"
        + "00" * 8
        + "0000000000000004"
        + "00000000"
        + "01"
        + b"mycollection".hex()
        + "0000000000000002"
        + "00000008"
        + "00000000"
        + "00011940"
    )
    ev = decode_system_event(one_frame(pkt))
    assert (ev.seqno, ev.event, ev.version, ev.key, ev.manifest_uid) == (
        4,
        0,
        1,
        b"mycollection",
        2,
    )


def test_system_event_collection_dropped_and_scope():
    f = one_frame(
        req(0x5F, extras=struct.pack(">QIB", 9, 1, 0), value=struct.pack(">QII", 5, 8, 0x1A))
    )
    ev = decode_system_event(f)
    assert (ev.event, ev.manifest_uid, ev.scope_id, ev.collection_id) == (1, 5, 8, 0x1A)
    f = one_frame(
        req(
            0x5F,
            extras=struct.pack(">QIB", 10, 3, 0),
            key=b"inventory",
            value=struct.pack(">QI", 6, 8),
        )
    )
    ev = decode_system_event(f)
    assert (ev.event, ev.scope_id, ev.collection_id) == (3, 8, None)


def test_failover_log_newest_first():
    value = struct.pack(">QQQQ", 0xAAAA, 100, 0xBBBB, 0)
    assert decode_failover_log(value) == [FailoverEntry(0xAAAA, 100), FailoverEntry(0xBBBB, 0)]
    with pytest.raises(DecodeError):
        decode_failover_log(b"\x00" * 15)


def test_vb_seqnos_doc_example():
    value = bytes.fromhex(
        "000a0000000000005432000d0000000001343214007f000000000000000402d00000000000006524"
    )
    assert decode_vb_seqnos(value) == {10: 21554, 13: 20197908, 127: 4, 720: 25892}


def test_rollback_and_collection_id_replies():
    assert decode_rollback_seqno(struct.pack(">Q", 77)) == 77
    reply = struct.pack(HDR, 0x81, 0xBB, 0, 12, 0, 0, 12, 1, 0) + struct.pack(">QI", 9, 0x1C)
    assert decode_collection_id(one_frame(reply)) == (9, 0x1C)


# --- document changes -------------------------------------------------------------------------

KS = {8: Keyspace("default", "inventory", "hotels"), 0: Keyspace("default", "_default", "_default")}


def unknown(cid):
    return Keyspace("default", "?", str(cid))


def mutation(seqno, key, value, *, cid=8, datatype=1, cas=99, vb=5, rev=1, expiry=0):
    extras = struct.pack(">QQIIIHB", seqno, rev, 0xF1A6, expiry, 0, 0, 0)
    assert len(extras) == 31  # erratum: no "clen" byte
    return req(
        0x57,
        extras=extras,
        key=encode_leb128(cid) + key,
        value=value,
        vb=vb,
        cas=cas,
        datatype=datatype,
    )


def test_decode_mutation_plain():
    f = one_frame(mutation(12, b"hotel::1", b'{"a":1}'))
    ev = decode_change(f, Snapshot(10, 20), KS, unknown)
    assert ev.kind is ChangeKind.MUTATION
    assert (ev.keyspace, ev.key, ev.partition, ev.seqno, ev.cas) == (KS[8], "hotel::1", 5, 12, 99)
    assert ev.body == b'{"a":1}' and ev.xattrs == {} and ev.meta == {}
    assert ev.snapshot == Snapshot(10, 20)
    meta = decode_item_meta(f)
    assert (meta.seqno, meta.rev_seqno, meta.flags) == (12, 1, 0xF1A6)


def test_decode_mutation_with_xattrs_strips_them():
    sec = xattr_section([(b"cbembed", b'{"h":"abc"}')])
    f = one_frame(mutation(3, b"k", sec + b'{"b":2}', datatype=0x05, cid=0x80))
    ev = decode_change(f, Snapshot(1, 3), KS, unknown)
    assert ev.body == b'{"b":2}' and ev.xattrs == {"cbembed": {"h": "abc"}}
    assert ev.keyspace == Keyspace("default", "?", "128")  # 2-byte LEB128 id, unknown


def test_decode_deletion_v1_doc_example():
    pkt = bytes.fromhex(
        "80580005"
        "12000210"
        "00000017"
        "00001210" + "00" * 8 + "0000000000000005" + "0000000000000001" + "0000" + b"hello".hex()
    )
    f = one_frame(pkt)
    ev = decode_change(f, Snapshot(5, 5), KS, unknown, collections=False)
    assert (ev.kind, ev.key, ev.seqno, ev.partition, ev.body) == (
        ChangeKind.DELETION,
        "hello",
        5,
        0x210,
        None,
    )
    assert decode_item_meta(f).rev_seqno == 1


def test_decode_deletion_v2_with_system_xattrs():
    sec = xattr_section([(b"_sync", b'{"deleted":true}')])
    extras = struct.pack(">QQIB", 40, 7, 1_700_000_000, 0)
    f = one_frame(req(0x58, extras=extras, key=b"\x08doc", value=sec, datatype=0x04))
    ev = decode_change(f, Snapshot(40, 41), KS, unknown)
    assert ev.kind is ChangeKind.DELETION and ev.body is None
    assert ev.xattrs == {"_sync": {"deleted": True}} and ev.is_removal
    assert decode_item_meta(f).delete_time == 1_700_000_000


def test_decode_expiration():
    extras = struct.pack(">QQI", 50, 2, 1_700_000_001)
    f = one_frame(req(0x59, extras=extras, key=b"\x08gone"))
    ev = decode_change(f, Snapshot(50, 50), KS, unknown)
    assert (ev.kind, ev.key, ev.seqno) == (ChangeKind.EXPIRATION, "gone", 50)
    assert decode_item_meta(f).delete_time == 1_700_000_001


def test_decode_snappy_value():
    # raw snappy block: varint(len=12) + literal of 4 ("abcd", tag (4-1)<<2) + copy-1 of len 8
    # at offset 4 (overlapping): tag = 0b01 | (8-4)<<2 | (4>>8)<<5, then the low offset byte.
    block = bytes([12, (4 - 1) << 2]) + b"abcd" + bytes([0x01 | (4 << 2), 4])
    assert decompress(block) == b"abcdabcdabcd"
    f = one_frame(mutation(1, b"k", block, datatype=0x03))
    assert decode_change(f, Snapshot(1, 1), KS, unknown).body == b"abcdabcdabcd"


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (bytes([0]), b""),
        (bytes([3, 2 << 2]) + b"xyz", b"xyz"),
        # literal with a 1-byte length (tag 60): 70 bytes
        (bytes([70, 60 << 2, 69]) + b"q" * 70, b"q" * 70),
        # copy with 2-byte offset (tag 0b10): len 5 at offset 3 after "abc"
        (
            bytes([8, 2 << 2]) + b"abc" + bytes([0x02 | (4 << 2)]) + struct.pack("<H", 3),
            b"abcabcab",
        ),
        # copy with 4-byte offset (tag 0b11)
        (bytes([6, 2 << 2]) + b"abc" + bytes([0x03 | (2 << 2)]) + struct.pack("<I", 3), b"abcabc"),
    ],
)
def test_snappy_table(block, expected):
    assert decompress(block) == expected


@pytest.mark.parametrize("block", [bytes([5, 2 << 2]) + b"abc", bytes([4, 0x01 | (0 << 2), 9])])
def test_snappy_rejects_bad_blocks(block):
    with pytest.raises(SnappyError):
        decompress(block)


def test_decode_change_rejects_other_opcodes():
    with pytest.raises(DecodeError):
        decode_change(one_frame(req(0x56, extras=b"\0" * 20)), Snapshot(0, 0), KS, unknown)
