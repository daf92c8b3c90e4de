"""Memcached binary protocol (MCBP) codec for the test server.

Pure functions and constants only; no I/O. Written from kv_engine's
``docs/BinaryProtocol.md`` and ``include/mcbp/protocol/*.h`` (read as a spec).

Header, big-endian, 24 bytes:
  classic  (magic 0x80 request / 0x81 response): ``>BBHBBHIIQ``
           magic, opcode, keylen, extlen, datatype, vbucket|status, bodylen, opaque, cas
  flexible (magic 0x08 request / 0x18 response): ``>BBBBBBHIIQ``
           magic, opcode, framing-extras length, keylen, extlen, datatype, ...
Body = framing extras, extras, key, value.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from enum import IntEnum

HEADER_LEN = 24
_CLASSIC = struct.Struct(">BBHBBHIIQ")
_FLEX = struct.Struct(">BBBBBBHIIQ")


class Magic(IntEnum):
    CLIENT_REQUEST = 0x80
    CLIENT_RESPONSE = 0x81
    ALT_CLIENT_REQUEST = 0x08
    ALT_CLIENT_RESPONSE = 0x18
    SERVER_REQUEST = 0x82
    SERVER_RESPONSE = 0x83


class Opcode(IntEnum):
    GET = 0x00
    SET = 0x01
    ADD = 0x02
    REPLACE = 0x03
    DELETE = 0x04
    NOOP = 0x0A
    VERSION = 0x0B
    TOUCH = 0x1C
    GAT = 0x1D
    HELLO = 0x1F
    SASL_LIST_MECHS = 0x20
    SASL_AUTH = 0x21
    SASL_STEP = 0x22
    GET_ALL_VB_SEQNOS = 0x48
    DCP_OPEN = 0x50
    DCP_ADD_STREAM = 0x51
    DCP_CLOSE_STREAM = 0x52
    DCP_STREAM_REQ = 0x53
    DCP_GET_FAILOVER_LOG = 0x54
    DCP_STREAM_END = 0x55
    DCP_SNAPSHOT_MARKER = 0x56
    DCP_MUTATION = 0x57
    DCP_DELETION = 0x58
    DCP_EXPIRATION = 0x59
    DCP_NOOP = 0x5C
    DCP_BUFFER_ACK = 0x5D
    DCP_CONTROL = 0x5E
    DCP_SYSTEM_EVENT = 0x5F
    DCP_SEQNO_ADVANCED = 0x64
    DCP_OSO_SNAPSHOT = 0x65
    SELECT_BUCKET = 0x89
    GET_FAILOVER_LOG = 0x96
    GET_META = 0xA0
    GET_CLUSTER_CONFIG = 0xB5
    GET_COLLECTIONS_MANIFEST = 0xBA
    GET_COLLECTION_ID = 0xBB
    GET_SCOPE_ID = 0xBC
    SUBDOC_GET = 0xC5
    SUBDOC_EXISTS = 0xC6
    SUBDOC_DICT_ADD = 0xC7
    SUBDOC_DICT_UPSERT = 0xC8
    SUBDOC_DELETE = 0xC9
    SUBDOC_REPLACE = 0xCA
    SUBDOC_ARRAY_PUSH_LAST = 0xCB
    SUBDOC_ARRAY_PUSH_FIRST = 0xCC
    SUBDOC_ARRAY_INSERT = 0xCD
    SUBDOC_ARRAY_ADD_UNIQUE = 0xCE
    SUBDOC_COUNTER = 0xCF
    SUBDOC_MULTI_LOOKUP = 0xD0
    SUBDOC_MULTI_MUTATION = 0xD1
    SUBDOC_GET_COUNT = 0xD2
    GET_ERROR_MAP = 0xFE


class Status(IntEnum):
    SUCCESS = 0x00
    KEY_ENOENT = 0x01
    KEY_EEXISTS = 0x02
    E2BIG = 0x03
    EINVAL = 0x04
    NOT_STORED = 0x05
    NOT_MY_VBUCKET = 0x07
    NO_BUCKET = 0x08
    DCP_STREAM_NOT_FOUND = 0x0A
    AUTH_ERROR = 0x20
    AUTH_CONTINUE = 0x21
    ERANGE = 0x22
    ROLLBACK = 0x23
    EACCESS = 0x24
    UNKNOWN_COMMAND = 0x81
    ENOMEM = 0x82
    NOT_SUPPORTED = 0x83
    EINTERNAL = 0x84
    EBUSY = 0x85
    ETMPFAIL = 0x86
    XATTR_EINVAL = 0x87
    UNKNOWN_COLLECTION = 0x88
    UNKNOWN_SCOPE = 0x8C
    DCP_STREAMID_INVALID = 0x8D
    SUBDOC_PATH_ENOENT = 0xC0
    SUBDOC_PATH_MISMATCH = 0xC1
    SUBDOC_PATH_EINVAL = 0xC2
    SUBDOC_PATH_E2BIG = 0xC3
    SUBDOC_DOC_E2DEEP = 0xC4
    SUBDOC_VALUE_CANTINSERT = 0xC5
    SUBDOC_DOC_NOT_JSON = 0xC6
    SUBDOC_NUM_ERANGE = 0xC7
    SUBDOC_DELTA_EINVAL = 0xC8
    SUBDOC_PATH_EEXISTS = 0xC9
    SUBDOC_VALUE_ETOODEEP = 0xCA
    SUBDOC_INVALID_COMBO = 0xCB
    SUBDOC_MULTI_PATH_FAILURE = 0xCC
    SUBDOC_SUCCESS_DELETED = 0xCD
    SUBDOC_XATTR_INVALID_FLAG_COMBO = 0xCE
    SUBDOC_XATTR_INVALID_KEY_COMBO = 0xCF
    SUBDOC_XATTR_UNKNOWN_MACRO = 0xD0
    SUBDOC_XATTR_UNKNOWN_VATTR = 0xD1
    SUBDOC_XATTR_CANT_MODIFY_VATTR = 0xD2
    SUBDOC_MULTI_PATH_FAILURE_DELETED = 0xD3
    SUBDOC_INVALID_XATTR_ORDER = 0xD4


class Feature(IntEnum):
    TCP_NODELAY = 0x03
    MUTATION_SEQNO = 0x04
    XATTR = 0x06
    XERROR = 0x07
    SELECT_BUCKET = 0x08
    SNAPPY = 0x0A
    JSON = 0x0B
    DUPLEX = 0x0C
    CLUSTERMAP_CHANGE_NOTIFICATION = 0x0D
    UNORDERED_EXECUTION = 0x0E
    TRACING = 0x0F
    ALT_REQUEST = 0x10
    SYNC_REPLICATION = 0x11
    COLLECTIONS = 0x12
    PRESERVE_TTL = 0x14
    VATTR = 0x15


#: Features this server agrees to when a client asks for them.  Snappy, Duplex,
#: cluster-map notifications, unordered execution and tracing are never granted,
#: so the server never has to compress, push, reorder or add response frames.
SUPPORTED_FEATURES = frozenset(
    {
        Feature.TCP_NODELAY,
        Feature.MUTATION_SEQNO,
        Feature.XATTR,
        Feature.XERROR,
        Feature.SELECT_BUCKET,
        Feature.JSON,
        Feature.ALT_REQUEST,
        Feature.SYNC_REPLICATION,
        Feature.COLLECTIONS,
        Feature.PRESERVE_TTL,
        Feature.VATTR,
    }
)


class Datatype(IntEnum):
    RAW = 0x00
    JSON = 0x01
    SNAPPY = 0x02
    XATTR = 0x04


class StreamEndReason(IntEnum):
    OK = 0
    CLOSED = 1
    STATE_CHANGED = 2
    DISCONNECTED = 3
    TOO_SLOW = 4
    BACKFILL_FAILED = 5
    ROLLBACK = 6
    FILTER_EMPTY = 7
    LOST_PRIVILEGES = 8


class DcpOpenFlag:
    PRODUCER = 0x01
    INVALID = 0x02
    INCLUDE_XATTRS = 0x04
    NO_VALUE = 0x08
    INCLUDE_DELETE_TIMES = 0x20
    NO_VALUE_WITH_UNDERLYING_DATATYPE = 0x40
    INCLUDE_DELETED_USER_XATTRS = 0x100
    SKIP_DELETES_IN_INITIAL_BACKFILL = 0x200


class StreamFlag:
    TAKEOVER = 0x01
    DISK_ONLY = 0x02
    TO_LATEST = 0x04
    NO_VALUE = 0x08
    ACTIVE_VB_ONLY = 0x10
    STRICT_VBUUID = 0x20
    FROM_LATEST = 0x40
    IGNORE_PURGED_TOMBSTONES = 0x80


class SnapshotFlag:
    MEMORY = 0x01
    DISK = 0x02
    CHECKPOINT = 0x04
    ACK = 0x08
    HISTORY = 0x10
    MAY_CONTAIN_DUPLICATES = 0x20


class SystemEventType(IntEnum):
    CREATE_COLLECTION = 0
    DROP_COLLECTION = 1
    CREATE_SCOPE = 3
    DROP_SCOPE = 4
    MODIFY_COLLECTION = 5


@dataclass
class Frame:
    """One decoded packet (request or response)."""

    magic: int
    opcode: int
    datatype: int
    vbucket_or_status: int
    opaque: int
    cas: int
    framing_extras: bytes
    extras: bytes
    key: bytes
    value: bytes

    @property
    def is_request(self) -> bool:
        return self.magic in (Magic.CLIENT_REQUEST, Magic.ALT_CLIENT_REQUEST)

    @property
    def is_response(self) -> bool:
        return self.magic in (Magic.CLIENT_RESPONSE, Magic.ALT_CLIENT_RESPONSE)

    @property
    def vbucket(self) -> int:
        return self.vbucket_or_status

    @property
    def status(self) -> int:
        return self.vbucket_or_status

    @property
    def wire_size(self) -> int:
        return HEADER_LEN + len(self.framing_extras) + len(self.extras) + len(self.key) + len(
            self.value
        )


class ProtocolError(Exception):
    """The peer sent bytes that do not form a valid packet; the connection is closed."""


def parse_header(header: bytes) -> tuple[int, int, int, int, int, int, int, int, int, int]:
    """(magic, opcode, framelen, keylen, extlen, datatype, vb/status, bodylen, opaque, cas)."""
    magic = header[0]
    if magic in (Magic.ALT_CLIENT_REQUEST, Magic.ALT_CLIENT_RESPONSE):
        m, op, flen, klen, elen, dt, vbs, blen, opaque, cas = _FLEX.unpack(header)
        return m, op, flen, klen, elen, dt, vbs, blen, opaque, cas
    if magic in (Magic.CLIENT_REQUEST, Magic.CLIENT_RESPONSE, Magic.SERVER_REQUEST,
                 Magic.SERVER_RESPONSE):
        m, op, klen, elen, dt, vbs, blen, opaque, cas = _CLASSIC.unpack(header)
        return m, op, 0, klen, elen, dt, vbs, blen, opaque, cas
    raise ProtocolError(f"invalid magic 0x{magic:02x}")


def decode(header: bytes, body: bytes) -> Frame:
    """Build a Frame from a 24-byte header and its body."""
    m, op, flen, klen, elen, dt, vbs, blen, opaque, cas = parse_header(header)
    if len(body) != blen or flen + elen + klen > blen:
        raise ProtocolError("body length does not match header")
    a = flen
    b = a + elen
    c = b + klen
    return Frame(m, op, dt, vbs, opaque, cas, body[:a], body[a:b], body[b:c], body[c:])


def encode(
    magic: int,
    opcode: int,
    *,
    vbucket_or_status: int = 0,
    opaque: int = 0,
    cas: int = 0,
    datatype: int = 0,
    extras: bytes = b"",
    key: bytes = b"",
    value: bytes = b"",
) -> bytes:
    """Encode a classic-framed packet (magic 0x80/0x81)."""
    bodylen = len(extras) + len(key) + len(value)
    header = _CLASSIC.pack(
        magic, opcode, len(key), len(extras), datatype, vbucket_or_status, bodylen, opaque, cas
    )
    return b"".join((header, extras, key, value))


def response(
    req: Frame,
    status: int = Status.SUCCESS,
    *,
    extras: bytes = b"",
    key: bytes = b"",
    value: bytes = b"",
    cas: int = 0,
    datatype: int = 0,
) -> bytes:
    """Encode the response to ``req`` (classic framing, same opcode and opaque)."""
    return encode(
        Magic.CLIENT_RESPONSE,
        req.opcode,
        vbucket_or_status=int(status),
        opaque=req.opaque,
        cas=cas,
        datatype=datatype,
        extras=extras,
        key=key,
        value=value,
    )


def server_request(
    opcode: int,
    *,
    vbucket: int = 0,
    opaque: int = 0,
    cas: int = 0,
    datatype: int = 0,
    extras: bytes = b"",
    key: bytes = b"",
    value: bytes = b"",
) -> bytes:
    """Encode a request sent BY the server (DCP messages use magic 0x80)."""
    return encode(
        Magic.CLIENT_REQUEST,
        opcode,
        vbucket_or_status=vbucket,
        opaque=opaque,
        cas=cas,
        datatype=datatype,
        extras=extras,
        key=key,
        value=value,
    )


def leb128_encode(value: int) -> bytes:
    """Unsigned LEB128, as used for collection ids in front of keys."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def leb128_decode(data: bytes) -> tuple[int, int]:
    """Return (value, bytes consumed); raises ProtocolError on a truncated/overlong value."""
    result = 0
    shift = 0
    for i, byte in enumerate(data[:5]):
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i + 1
        shift += 7
    raise ProtocolError("invalid LEB128 collection id")


def vbucket_of(key: bytes, num_vbuckets: int) -> int:
    """vBucket of a key (without collection prefix): CRC32 hash as clients compute it."""
    return ((binascii.crc32(key) >> 16) & 0x7FFF) % num_vbuckets


def parse_frame_infos(data: bytes) -> list[tuple[int, bytes]]:
    """Decode flexible framing extras into (id, payload) pairs."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        obj_id = data[i] >> 4
        length = data[i] & 0x0F
        i += 1
        if obj_id == 0x0F:
            obj_id = 15 + data[i]
            i += 1
        if length == 0x0F:
            length = 15 + data[i]
            i += 1
        out.append((obj_id, data[i : i + length]))
        i += length
    return out
