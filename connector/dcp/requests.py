"""Pure encoders for every request the DCP client sends. No I/O, no state.

Each function returns the full packet bytes; `connection.py` writes them and matches the reply
by `opaque`. Layouts follow kv_engine docs/BinaryProtocol.md and docs/dcp/documentation/commands,
with the errata noted in /work/shared/docs/couchbase-wire.md (DCP_CONTROL: key + value, no extras).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable

from connector.dcp.frames import encode_request, encode_response
from connector.dcp.opcodes import (
    NO_END_SEQNO,
    DcpOpenFlag,
    Opcode,
    StreamRequestFlag,
    VBucketState,
)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_OPEN_EXTRAS = struct.Struct(">II")
STREAM_REQ_EXTRAS = struct.Struct(">IIQQQQQ")
"""flags, reserved, start_seqno, end_seqno, vbucket_uuid, snap_start, snap_end (48 bytes)."""


def hello(agent: str, features: Iterable[int], *, opaque: int = 0) -> bytes:
    """HELLO 0x1f: key = agent name (JSON, as the SDKs send it), value = u16 feature codes."""
    key = json.dumps({"a": agent}, separators=(",", ":")).encode()
    value = b"".join(_U16.pack(int(f)) for f in features)
    return encode_request(Opcode.HELLO, key=key, value=value, opaque=opaque)


def sasl_list_mechs(*, opaque: int = 0) -> bytes:
    return encode_request(Opcode.SASL_LIST_MECHS, opaque=opaque)


def sasl_auth(mechanism: str, payload: bytes, *, opaque: int = 0) -> bytes:
    """SASL_AUTH 0x21: key = mechanism name, value = initial client message."""
    return encode_request(Opcode.SASL_AUTH, key=mechanism.encode(), value=payload, opaque=opaque)


def sasl_step(mechanism: str, payload: bytes, *, opaque: int = 0) -> bytes:
    """SASL_STEP 0x22: key = mechanism name, value = next client message."""
    return encode_request(Opcode.SASL_STEP, key=mechanism.encode(), value=payload, opaque=opaque)


def select_bucket(bucket: str, *, opaque: int = 0) -> bytes:
    return encode_request(Opcode.SELECT_BUCKET, key=bucket.encode(), opaque=opaque)


def get_cluster_config(*, opaque: int = 0) -> bytes:
    return encode_request(Opcode.GET_CLUSTER_CONFIG, opaque=opaque)


def get_collection_id(path: str, *, opaque: int = 0) -> bytes:
    """GET_COLLECTION_ID 0xbb: the path "scope.collection" travels in the VALUE."""
    return encode_request(Opcode.GET_COLLECTION_ID, value=path.encode(), opaque=opaque)


def get_collections_manifest(*, opaque: int = 0) -> bytes:
    return encode_request(Opcode.GET_COLLECTIONS_MANIFEST, opaque=opaque)


def dcp_open(name: str, flags: int, *, opaque: int = 0) -> bytes:
    """DCP_OPEN 0x50: extras (seqno 0, flags), key = connection name (<= 200 bytes)."""
    key = name.encode()
    if len(key) > 200:
        raise ValueError(f"DCP connection name is {len(key)} bytes; the limit is 200")
    return encode_request(
        Opcode.DCP_OPEN, extras=_OPEN_EXTRAS.pack(0, int(flags)), key=key, opaque=opaque
    )


DEFAULT_OPEN_FLAGS = (
    DcpOpenFlag.PRODUCER | DcpOpenFlag.INCLUDE_XATTRS | DcpOpenFlag.INCLUDE_DELETE_TIMES
)


def dcp_control(name: str, value: str, *, opaque: int = 0) -> bytes:
    """DCP_CONTROL 0x5e: no extras, key = setting name, value = setting string (RAW)."""
    return encode_request(
        Opcode.DCP_CONTROL, key=name.encode(), value=value.encode(), opaque=opaque
    )


def collection_filter(collection_ids: Iterable[int], manifest_uid: int | None = None) -> bytes:
    """The STREAM_REQ JSON value selecting collections: ids in hex without 0x."""
    doc: dict[str, object] = {"collections": [f"{cid:x}" for cid in collection_ids]}
    if manifest_uid:
        doc["uid"] = f"{manifest_uid:x}"
    return json.dumps(doc, separators=(",", ":")).encode()


def stream_request(
    vbucket: int,
    *,
    start_seqno: int,
    vbuuid: int,
    snap_start: int,
    snap_end: int,
    end_seqno: int = NO_END_SEQNO,
    flags: int = StreamRequestFlag.NONE,
    filter_json: bytes = b"",
    opaque: int = 0,
) -> bytes:
    """DCP_STREAM_REQ 0x53 on `vbucket`; requires snap_start <= start_seqno <= snap_end."""
    if not snap_start <= start_seqno <= snap_end:
        raise ValueError(
            f"stream request for vb {vbucket}: start {start_seqno} outside snapshot "
            f"[{snap_start}, {snap_end}]"
        )
    extras = STREAM_REQ_EXTRAS.pack(
        int(flags), 0, start_seqno, end_seqno, vbuuid, snap_start, snap_end
    )
    return encode_request(
        Opcode.DCP_STREAM_REQ, vbucket=vbucket, extras=extras, value=filter_json, opaque=opaque
    )


def close_stream(vbucket: int, *, opaque: int = 0) -> bytes:
    return encode_request(Opcode.DCP_CLOSE_STREAM, vbucket=vbucket, opaque=opaque)


def buffer_ack(nbytes: int, *, opaque: int = 0) -> bytes:
    """DCP_BUFFER_ACK 0x5d: extras = u32 bytes consumed. The producer does not reply."""
    return encode_request(Opcode.DCP_BUFFER_ACK, extras=_U32.pack(nbytes), opaque=opaque)


def noop_response(opaque: int) -> bytes:
    """Answer to the producer's DCP_NOOP: a success response with the same opaque."""
    return encode_response(Opcode.DCP_NOOP, opaque=opaque)


def get_failover_log(vbucket: int, *, opaque: int = 0) -> bytes:
    return encode_request(Opcode.DCP_GET_FAILOVER_LOG, vbucket=vbucket, opaque=opaque)


def get_all_vb_seqnos(
    state: VBucketState | int | None = VBucketState.ACTIVE,
    collection_id: int | None = None,
    *,
    opaque: int = 0,
) -> bytes:
    """GET_ALL_VB_SEQNOS 0x48: optional extras u32 vbucket state, then optional u32 collection."""
    extras = b""
    if state is not None or collection_id is not None:
        extras = _U32.pack(int(state or 0))
        if collection_id is not None:
            extras += _U32.pack(collection_id)
    return encode_request(Opcode.GET_ALL_VB_SEQNOS, extras=extras, opaque=opaque)
