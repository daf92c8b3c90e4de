"""Protocol constants of the memcached binary protocol as DCP uses them.

Pure data: opcodes, response statuses, HELLO features, datatypes, DCP_OPEN and STREAM_REQ flags,
snapshot-marker flags, StreamEnd reasons and system-event types. Values checked against
kv_engine `include/mcbp/protocol/*.h` and `docs/dcp/documentation/commands/*.md`.
Everything here is an `IntEnum`/`IntFlag` so it compares equal to the raw wire integer.
"""

from __future__ import annotations

import enum


class Magic(enum.IntEnum):
    REQUEST = 0x80
    RESPONSE = 0x81
    SERVER_REQUEST = 0x82
    SERVER_RESPONSE = 0x83
    ALT_REQUEST = 0x08
    """Request with flexible framing extras (byte 2: framing-extras length, byte 3: key length)."""
    ALT_RESPONSE = 0x18


REQUEST_MAGICS = frozenset({Magic.REQUEST, Magic.ALT_REQUEST})
RESPONSE_MAGICS = frozenset({Magic.RESPONSE, Magic.ALT_RESPONSE})
ALT_MAGICS = frozenset({Magic.ALT_REQUEST, Magic.ALT_RESPONSE})


class Opcode(enum.IntEnum):
    NOOP = 0x0A
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
    DCP_SET_VBUCKET_STATE = 0x5B
    DCP_NOOP = 0x5C
    DCP_BUFFER_ACK = 0x5D
    DCP_CONTROL = 0x5E
    DCP_SYSTEM_EVENT = 0x5F
    DCP_PREPARE = 0x60
    DCP_SEQNO_ACKNOWLEDGED = 0x61
    DCP_COMMIT = 0x62
    DCP_ABORT = 0x63
    DCP_SEQNO_ADVANCED = 0x64
    DCP_OSO_SNAPSHOT = 0x65
    SELECT_BUCKET = 0x89
    GET_CLUSTER_CONFIG = 0xB5
    GET_COLLECTIONS_MANIFEST = 0xBA
    GET_COLLECTION_ID = 0xBB
    GET_ERROR_MAP = 0xFE


DCP_MESSAGE_OPCODES = frozenset(
    {
        Opcode.DCP_STREAM_END,
        Opcode.DCP_SNAPSHOT_MARKER,
        Opcode.DCP_MUTATION,
        Opcode.DCP_DELETION,
        Opcode.DCP_EXPIRATION,
        Opcode.DCP_SET_VBUCKET_STATE,
        Opcode.DCP_SYSTEM_EVENT,
        Opcode.DCP_PREPARE,
        Opcode.DCP_COMMIT,
        Opcode.DCP_ABORT,
        Opcode.DCP_SEQNO_ADVANCED,
        Opcode.DCP_OSO_SNAPSHOT,
    }
)
"""Producer -> consumer messages that count against the flow-control buffer (NOOP does not)."""


class Status(enum.IntEnum):
    SUCCESS = 0x00
    KEY_ENOENT = 0x01
    KEY_EEXISTS = 0x02
    E2BIG = 0x03
    EINVAL = 0x04
    NOT_STORED = 0x05
    DELTA_BADVAL = 0x06
    NOT_MY_VBUCKET = 0x07
    NO_BUCKET = 0x08
    LOCKED = 0x09
    AUTH_STALE = 0x1F
    AUTH_ERROR = 0x20
    AUTH_CONTINUE = 0x21
    ERANGE = 0x22
    ROLLBACK = 0x23
    EACCESS = 0x24
    NOT_INITIALIZED = 0x25
    UNKNOWN_FRAME_INFO = 0x80
    UNKNOWN_COMMAND = 0x81
    ENOMEM = 0x82
    NOT_SUPPORTED = 0x83
    EINTERNAL = 0x84
    EBUSY = 0x85
    ETMPFAIL = 0x86
    XATTR_EINVAL = 0x87
    UNKNOWN_COLLECTION = 0x88
    NO_COLLECTIONS_MANIFEST = 0x89
    CANNOT_APPLY_COLLECTIONS_MANIFEST = 0x8A
    COLLECTIONS_MANIFEST_IS_AHEAD = 0x8B
    UNKNOWN_SCOPE = 0x8C
    DCP_STREAMID_INVALID = 0x8D

    @classmethod
    def describe(cls, value: int) -> str:
        try:
            return f"{cls(value).name} (0x{value:02x})"
        except ValueError:
            return f"status 0x{value:02x}"


class Feature(enum.IntEnum):
    """HELLO feature codes (u16 each in the HELLO value)."""

    TCP_NODELAY = 0x03
    MUTATION_SEQNO = 0x04
    XATTR = 0x06
    XERROR = 0x07
    SELECT_BUCKET = 0x08
    SNAPPY = 0x0A
    JSON = 0x0B
    DUPLEX = 0x0C
    CLUSTERMAP_CHANGE_NOTIFICATION = 0x0D
    ALT_REQUEST_SUPPORT = 0x10
    COLLECTIONS = 0x12


class Datatype(enum.IntFlag):
    RAW = 0x00
    JSON = 0x01
    SNAPPY = 0x02
    XATTR = 0x04


class DcpOpenFlag(enum.IntFlag):
    PRODUCER = 0x01
    NOTIFIER = 0x02
    INCLUDE_XATTRS = 0x04
    NO_VALUE = 0x08
    INCLUDE_DELETE_TIMES = 0x20
    INCLUDE_DELETED_USER_XATTRS = 0x100
    SKIP_DELETES_IN_INITIAL_BACKFILL = 0x200


class StreamRequestFlag(enum.IntFlag):
    NONE = 0x00
    TO_LATEST = 0x04
    NO_VALUE = 0x08
    ACTIVE_VB_ONLY = 0x10
    STRICT_VBUUID = 0x20
    FROM_LATEST = 0x40
    IGNORE_PURGED_TOMBSTONES = 0x80


class SnapshotFlag(enum.IntFlag):
    MEMORY = 0x01
    DISK = 0x02
    CHECKPOINT = 0x04
    ACK = 0x08
    HISTORY = 0x10
    MAY_CONTAIN_DUPLICATES = 0x20


class StreamEndReason(enum.IntEnum):
    """Why the producer ended a stream (`DcpStreamEndStatus`)."""

    OK = 0
    CLOSED = 1
    STATE_CHANGED = 2
    DISCONNECTED = 3
    TOO_SLOW = 4
    BACKFILL_FAILED = 5
    ROLLBACK = 6
    FILTER_EMPTY = 7
    LOST_PRIVILEGES = 8

    @classmethod
    def of(cls, value: int) -> StreamEndReason | int:
        try:
            return cls(value)
        except ValueError:
            return value


REOPEN_REASONS = frozenset(
    {
        StreamEndReason.STATE_CHANGED,
        StreamEndReason.DISCONNECTED,
        StreamEndReason.TOO_SLOW,
        StreamEndReason.BACKFILL_FAILED,
        StreamEndReason.ROLLBACK,
    }
)
"""StreamEnd reasons after which the client refreshes the config and reopens the stream."""


class SystemEventType(enum.IntEnum):
    COLLECTION_CREATED = 0
    COLLECTION_DROPPED = 1
    COLLECTION_FLUSHED = 2
    SCOPE_CREATED = 3
    SCOPE_DROPPED = 4
    COLLECTION_MODIFIED = 5


class VBucketState(enum.IntEnum):
    """GET_ALL_VB_SEQNOS optional filter."""

    ALIVE = 0
    ACTIVE = 1
    REPLICA = 2
    PENDING = 3
    DEAD = 4


NO_END_SEQNO = 0xFFFF_FFFF_FFFF_FFFF
"""STREAM_REQ end seqno meaning 'stream forever'."""
