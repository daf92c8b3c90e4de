"""Value types of the bucket store: document versions (``Item``), system events, drafts of
the next version, per-vBucket state, and the KV error carrying a protocol status.

Plain data, no locking: ``data.Store`` owns every instance and mutates ``VBucket`` only under
its lock; ``Item`` and ``SysEvent`` are immutable and safe to hand to any thread.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .protocol import Status, SystemEventType

RELATIVE_EXPIRY_LIMIT = 30 * 24 * 3600


@dataclass(frozen=True)
class Item:
    """One version of one document (a mutation, deletion or expiration)."""

    vbucket: int
    cid: int
    key: bytes
    seqno: int
    rev_seqno: int
    cas: int
    flags: int = 0
    expiry: int = 0
    body: bytes = b""
    is_json: bool = False
    user_xattrs: dict[str, Any] = field(default_factory=dict)
    system_xattrs: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False
    expired: bool = False
    delete_time: int = 0

    @property
    def xattrs(self) -> dict[str, Any]:
        """All xattrs, system first (as the server lays them out)."""
        return {**self.system_xattrs, **self.user_xattrs}


@dataclass(frozen=True)
class SysEvent:
    """A collection/scope change as recorded in every vBucket's history."""

    vbucket: int
    seqno: int
    event: SystemEventType
    manifest_uid: int
    scope_id: int
    cid: int = 0
    name: str = ""
    max_ttl: int = 0


Entry = Item | SysEvent


@dataclass
class Draft:
    """What a mutation wants the next version to be; ``Store.apply`` stamps seqno and CAS."""

    body: bytes = b""
    is_json: bool = False
    flags: int = 0
    expiry: int = 0
    user_xattrs: dict[str, Any] = field(default_factory=dict)
    system_xattrs: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False
    expired: bool = False
    #: Called with (draft, cas, seqno) just before the version is stored; subdoc uses it to
    #: expand ``${Mutation.CAS}``-style macros that need the new CAS.
    post: Callable[[Draft, int, int], None] | None = None


class KvError(Exception):
    """A KV operation failed with a protocol status."""

    def __init__(self, status: Status, message: str = "") -> None:
        super().__init__(message or status.name)
        self.status = status


@dataclass
class VBucket:
    vbid: int
    uuid: int
    failover_log: list[tuple[int, int]]
    history: list[Entry] = field(default_factory=list)
    seqnos: list[int] = field(default_factory=list)
    docs: dict[tuple[int, bytes], Item] = field(default_factory=dict)
    high_seqno: int = 0
    purge_seqno: int = 0
    collection_high: dict[int, int] = field(default_factory=dict)


def new_uuid() -> int:
    return int.from_bytes(os.urandom(8), "big") & 0x7FFF_FFFF_FFFF_FFFF or 1


def absolute_expiry(expiry: int) -> int:
    """Memcached expiry: <= 30 days is relative to now, otherwise a unix time."""
    if expiry == 0:
        return 0
    if expiry <= RELATIVE_EXPIRY_LIMIT:
        return int(time.time()) + expiry
    return expiry


def is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return True
