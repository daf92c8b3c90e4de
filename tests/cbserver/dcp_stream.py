"""One DCP stream (one vBucket on one producer connection) and the DCP message encoders.

Runs on the server loop only: ``DcpProducer``'s pump calls ``next_frame()`` and writes what
it returns. Frames are built lazily, one snapshot at a time, from the store:

* first a disk snapshot (flags DISK|CHECKPOINT) of (start, end-or-high] de-duplicated, whose
  marker start is min(requested snap_start, start), as kv_engine's ActiveStream does;
* then, as the store changes, memory snapshots (flag MEMORY) of the new history entries,
  de-duplicated per key, whose marker start is the first seqno that follows.

A snapshot whose last entry is filtered out ends with SeqnoAdvanced (collections only).
Message layouts follow kv_engine ``docs/dcp/documentation/commands/*.md``.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from dataclasses import dataclass, field

from .data import Entry, Item, Store, SysEvent
from .protocol import (
    Datatype,
    DcpOpenFlag,
    Opcode,
    SnapshotFlag,
    StreamEndReason,
    SystemEventType,
    leb128_encode,
    server_request,
)

MAX_SEQNO = 2**64 - 1


def xattr_blob(xattrs: dict[str, object]) -> bytes:
    """XATTR section: u32 total length, then (u32 len, key NUL value NUL) pairs."""
    pairs = b""
    for k, v in xattrs.items():
        kv = k.encode() + b"\x00" + json.dumps(v, separators=(",", ":")).encode() + b"\x00"
        pairs += struct.pack(">I", len(kv)) + kv
    return struct.pack(">I", len(pairs)) + pairs


@dataclass
class StreamOptions:
    """Per-connection settings a stream needs to encode messages."""

    open_flags: int
    collections: bool
    json: bool
    expiry_opcode: bool


@dataclass
class Filter:
    """Which collections a stream carries; ``cids is None`` means all (pass-through)."""

    cids: set[int] | None = None
    scope_id: int | None = None
    legacy: bool = False  # no Collections HELLO: default collection only, no system events

    def wants_item(self, cid: int) -> bool:
        if self.legacy:
            return cid == 0
        return self.cids is None or cid in self.cids

    def wants_event(self, ev: SysEvent) -> bool:
        if self.legacy:
            return False
        if self.scope_id is not None:
            return ev.scope_id == self.scope_id
        if self.cids is None:
            return True
        return ev.event in (SystemEventType.CREATE_COLLECTION,
                            SystemEventType.DROP_COLLECTION,
                            SystemEventType.MODIFY_COLLECTION) and ev.cid in self.cids

    def observe(self, ev: SysEvent) -> bool:
        """Follow an event this filter carries; True when the filter became empty (the
        stream then ends with FilterEmpty). A scope filter follows its scope's collections
        and empties only when the scope is dropped."""
        if self.scope_id is not None and self.cids is not None:
            if ev.event == SystemEventType.CREATE_COLLECTION:
                self.cids.add(ev.cid)
            elif ev.event == SystemEventType.DROP_COLLECTION:
                self.cids.discard(ev.cid)
            return ev.event == SystemEventType.DROP_SCOPE
        if self.cids is not None and ev.event == SystemEventType.DROP_COLLECTION:
            self.cids.discard(ev.cid)
            return not self.cids
        return False


@dataclass
class DcpStream:
    store: Store
    opts: StreamOptions
    vbucket: int
    opaque: int
    start: int
    end: int
    filter: Filter
    flags: int = 0
    snap_start: int = 0  # the client's snapshot start: the first marker starts there
    cursor: int = 0
    ended: bool = False
    initial: bool = True
    marked: bool = False  # a snapshot marker was queued already
    queue: deque[tuple[bytes, bool]] = field(default_factory=deque)

    # -- public (called by the producer pump / request handlers on the loop) ----------------
    def next_frame(self) -> tuple[bytes, bool] | None:
        """Next (frame bytes, is_item) to send, or None if nothing is ready now."""
        if not self.queue and not self.ended:
            self._refill()
        return self.queue.popleft() if self.queue else None

    def end_now(self, reason: StreamEndReason) -> None:
        """Drop anything unsent and end the stream with ``reason`` (failover, close)."""
        self.queue.clear()
        self._finish(reason)

    # -- snapshot building ---------------------------------------------------------------
    def _finish(self, reason: StreamEndReason) -> None:
        if not self.ended:
            self.queue.append((self._stream_end(reason), False))
            self.ended = True

    def _refill(self) -> None:
        if self.initial:
            self.initial = False
            high = self.store.vb_state(self.vbucket)[0]
            self.cursor = self.start
            if self.end <= self.start:
                self._finish(StreamEndReason.OK)
                return
            stop = min(high, self.end)
            if stop > self.start:
                entries = self.store.backfill(self.vbucket, self.start, stop)
                self._snapshot(min(self.snap_start, self.start), stop,
                               SnapshotFlag.DISK | SnapshotFlag.CHECKPOINT, entries, backfill=True)
        else:
            entries = self.store.entries_after(self.vbucket, self.cursor)
            entries = [e for e in entries if e.seqno <= self.end]
            if entries:
                newest: dict[tuple[int, bytes], int] = {}
                for e in entries:
                    if isinstance(e, Item):
                        newest[(e.cid, e.key)] = e.seqno
                deduped = [e for e in entries
                           if not isinstance(e, Item) or newest[(e.cid, e.key)] == e.seqno]
                # The stream's first marker starts at the requested snapshot start.
                first = entries[0].seqno if self.marked else min(self.snap_start, self.start)
                self._snapshot(first, entries[-1].seqno, SnapshotFlag.MEMORY, deduped,
                               backfill=False)
        if not self.ended and self.cursor >= self.end:
            self._finish(StreamEndReason.OK)

    def _snapshot(self, start: int, end: int, flags: int, entries: list[Entry],
                  backfill: bool) -> None:
        frames: list[tuple[bytes, bool]] = []
        last_sent = 0
        skip_deletes = (backfill and self.start == 0
                        and self.opts.open_flags & DcpOpenFlag.SKIP_DELETES_IN_INITIAL_BACKFILL)
        filter_emptied = False
        for e in entries:
            if isinstance(e, SysEvent):
                if not self.filter.wants_event(e):
                    continue
                frames.append((self._system_event(e), True))
                last_sent = e.seqno
                if self.filter.observe(e):
                    filter_emptied = True
                    break
            elif self.filter.wants_item(e.cid) and not (skip_deletes and e.deleted):
                frames.append((self._item(e), True))
                last_sent = e.seqno
        self.cursor = end
        if not frames and not backfill:
            return  # nothing this stream cares about: no empty memory snapshot
        self.queue.append((self._marker(start, end, flags), False))
        self.marked = True
        self.queue.extend(frames)
        if filter_emptied:
            self._finish(StreamEndReason.FILTER_EMPTY)
            return
        if last_sent < end and self.opts.collections:
            self.queue.append((self._seqno_advanced(end), False))

    # -- encoders --------------------------------------------------------------------------
    def _key(self, cid: int, key: bytes) -> bytes:
        return leb128_encode(cid) + key if self.opts.collections else key

    def _req(self, opcode: int, **kw: object) -> bytes:
        return server_request(opcode, vbucket=self.vbucket, opaque=self.opaque, **kw)  # type: ignore[arg-type]

    def _marker(self, start: int, end: int, flags: int) -> bytes:
        return self._req(Opcode.DCP_SNAPSHOT_MARKER, extras=struct.pack(">QQI", start, end, flags))

    def _seqno_advanced(self, seqno: int) -> bytes:
        return self._req(Opcode.DCP_SEQNO_ADVANCED, extras=struct.pack(">Q", seqno))

    def _stream_end(self, reason: StreamEndReason) -> bytes:
        return self._req(Opcode.DCP_STREAM_END, extras=struct.pack(">I", reason))

    def _item(self, it: Item) -> bytes:
        flags = self.opts.open_flags
        include_xattrs = bool(flags & DcpOpenFlag.INCLUDE_XATTRS)
        no_value = bool(flags & DcpOpenFlag.NO_VALUE)
        datatype = 0
        value = b""
        if it.deleted:
            xattrs = it.system_xattrs
            if include_xattrs and xattrs:
                value, datatype = xattr_blob(xattrs), Datatype.XATTR
            if it.expired and self.opts.expiry_opcode:
                extras = struct.pack(">QQI", it.seqno, it.rev_seqno, it.delete_time)
                return self._req(Opcode.DCP_EXPIRATION, extras=extras,
                                 key=self._key(it.cid, it.key), value=value, datatype=datatype,
                                 cas=it.cas)
            if flags & DcpOpenFlag.INCLUDE_DELETE_TIMES:
                extras = struct.pack(">QQIB", it.seqno, it.rev_seqno, it.delete_time, 0)
            else:
                extras = struct.pack(">QQH", it.seqno, it.rev_seqno, 0)
            return self._req(Opcode.DCP_DELETION, extras=extras, key=self._key(it.cid, it.key),
                             value=value, datatype=datatype, cas=it.cas)
        if include_xattrs and it.xattrs:
            value, datatype = xattr_blob(it.xattrs), Datatype.XATTR
        if not no_value:
            value += it.body
            if it.is_json and self.opts.json:
                datatype |= Datatype.JSON
        extras = struct.pack(">QQIIIHB", it.seqno, it.rev_seqno, it.flags, it.expiry, 0, 0, 0)
        return self._req(Opcode.DCP_MUTATION, extras=extras, key=self._key(it.cid, it.key),
                         value=value, datatype=datatype, cas=it.cas)

    def _system_event(self, ev: SysEvent) -> bytes:
        key = b""
        version = 0
        if ev.event == SystemEventType.CREATE_COLLECTION:
            key = ev.name.encode()
            value = struct.pack(">QII", ev.manifest_uid, ev.scope_id, ev.cid)
            if ev.max_ttl:
                value += struct.pack(">I", ev.max_ttl)
                version = 1
        elif ev.event == SystemEventType.DROP_COLLECTION:
            value = struct.pack(">QII", ev.manifest_uid, ev.scope_id, ev.cid)
        elif ev.event == SystemEventType.CREATE_SCOPE:
            key = ev.name.encode()
            value = struct.pack(">QI", ev.manifest_uid, ev.scope_id)
        else:
            value = struct.pack(">QI", ev.manifest_uid, ev.scope_id)
        extras = struct.pack(">QIB", ev.seqno, ev.event, version)
        return self._req(Opcode.DCP_SYSTEM_EVENT, extras=extras, key=key, value=value)
