"""Thread-safe bucket store: documents per vBucket with seqnos, CAS, xattrs and a history.

Every method takes ``Store.lock`` and may be called from any thread: KV and DCP handlers
call it on the server loop, tests call it (through ``CouchbaseTestServer``) from their own
thread. Listeners registered with ``subscribe`` are called *after* the lock is released, on
the thread that made the change; they must only hand work over (``call_soon_threadsafe``).

Model (per vBucket): an append-only ``history`` of ``Item`` versions and ``SysEvent``s in
seqno order (what a DCP memory snapshot streams), a ``docs`` map with the newest version of
each key (what a disk backfill streams, de-duplicated), a failover log newest first, a purge
seqno. CAS is a hybrid-logical-clock-like value: nanoseconds since the epoch, strictly
increasing across the bucket.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from typing import Literal

from .items import (
    Draft,
    Entry,
    Item,
    KvError,
    SysEvent,
    VBucket,
    absolute_expiry,
    is_json,
    new_uuid,
)
from .manifest import CollectionInfo, Manifest
from .protocol import Status, SystemEventType, vbucket_of

__all__ = ["Draft", "Entry", "Item", "KvError", "Store", "SysEvent", "VBucket", "XattrMode",
           "absolute_expiry", "is_json"]

XattrMode = Literal["preserve", "keep_system_only"]


class Store:
    """The bucket's data. See the module docstring for the threading contract."""

    def __init__(self, num_vbuckets: int, xattr_mode: XattrMode = "preserve") -> None:
        self.lock = threading.RLock()
        self.num_vbuckets = num_vbuckets
        self.xattr_mode: XattrMode = xattr_mode
        self.manifest = Manifest()
        self._last_cas = 0
        self._listeners: list[Callable[[str, int], None]] = []
        self.vbuckets = [self._fresh_vb(vb) for vb in range(num_vbuckets)]

    @staticmethod
    def _fresh_vb(vb: int) -> VBucket:
        uuid = new_uuid()
        return VBucket(vb, uuid, [(uuid, 0)])

    # -- listeners ---------------------------------------------------------------------
    def subscribe(self, fn: Callable[[str, int], None]) -> None:
        """``fn(kind, vbid)`` with kind 'data' or 'failover', called outside the lock."""
        with self.lock:
            self._listeners.append(fn)

    def unsubscribe(self, fn: Callable[[str, int], None]) -> None:
        with self.lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def _notify(self, kind: str, vbids: list[int]) -> None:
        with self.lock:
            listeners = list(self._listeners)
        for fn in listeners:
            for vb in vbids:
                fn(kind, vb)

    # -- helpers -------------------------------------------------------------------------
    def vbucket_of(self, key: bytes) -> int:
        return vbucket_of(key, self.num_vbuckets)

    def next_cas(self) -> int:
        with self.lock:
            self._last_cas = max(self._last_cas + 1, time.time_ns())
            return self._last_cas

    def resolve(self, scope: str, collection: str) -> CollectionInfo:
        with self.lock:
            return self.manifest.lookup(scope, collection)

    def _append(self, vb: VBucket, entry: Entry) -> None:
        vb.history.append(entry)
        vb.seqnos.append(entry.seqno)
        vb.high_seqno = entry.seqno
        if isinstance(entry, Item):
            vb.collection_high[entry.cid] = entry.seqno
            vb.docs[(entry.cid, entry.key)] = entry

    # -- reads ---------------------------------------------------------------------------
    def lookup(self, cid: int, key: bytes, *, include_deleted: bool = False) -> Item | None:
        """Newest version of a key; expired documents are expired on access (a new seqno)."""
        expired_vb = None
        with self.lock:
            if self.manifest.by_id(cid) is None:
                raise KvError(Status.UNKNOWN_COLLECTION)
            vb = self.vbuckets[self.vbucket_of(key)]
            item = vb.docs.get((cid, key))
            if item is not None and not item.deleted and item.expiry and time.time() >= item.expiry:
                item = self._commit(vb, item, Draft(system_xattrs=dict(item.system_xattrs),
                                                    deleted=True, expired=True))
                expired_vb = vb.vbid
        if expired_vb is not None:
            self._notify("data", [expired_vb])
        if item is None or (item.deleted and not include_deleted):
            return None
        return item

    def entries_after(self, vbid: int, seqno: int) -> list[Entry]:
        """History entries with a seqno above ``seqno`` (for live DCP snapshots)."""
        with self.lock:
            vb = self.vbuckets[vbid]
            i = bisect.bisect_right(vb.seqnos, seqno)
            return vb.history[i:]

    def backfill(self, vbid: int, start: int, end: int) -> list[Entry]:
        """A disk-snapshot view of (start, end]: the newest version (as of ``end``) of each
        key plus every system event, in seqno order. Items of dropped collections are gone."""
        with self.lock:
            vb = self.vbuckets[vbid]
            i = bisect.bisect_right(vb.seqnos, start)
            j = bisect.bisect_right(vb.seqnos, end)
            window = vb.history[i:j]
            live = {c.cid for s in self.manifest.scopes.values() for c in s.collections.values()}
        newest: dict[tuple[int, bytes], Item] = {}
        for e in window:
            if isinstance(e, Item):
                newest[(e.cid, e.key)] = e
        keep = {id(it) for it in newest.values() if it.cid in live}
        return [e for e in window if isinstance(e, SysEvent) or id(e) in keep]

    def vb_state(self, vbid: int) -> tuple[int, list[tuple[int, int]], int]:
        """(high seqno, failover log newest first, purge seqno)."""
        with self.lock:
            vb = self.vbuckets[vbid]
            return vb.high_seqno, list(vb.failover_log), vb.purge_seqno

    def collection_high_seqno(self, vbid: int, cid: int) -> int:
        with self.lock:
            return self.vbuckets[vbid].collection_high.get(cid, 0)

    # -- writes --------------------------------------------------------------------------
    def _commit(self, vb: VBucket, prev: Item | None, draft: Draft, *,
                cid: int = 0, key: bytes = b"") -> Item:
        seqno = vb.high_seqno + 1
        cas = self.next_cas()
        if draft.post is not None:
            draft.post(draft, cas, seqno)
        item = Item(
            vbucket=vb.vbid,
            cid=prev.cid if prev else cid,
            key=prev.key if prev else key,
            seqno=seqno,
            rev_seqno=(prev.rev_seqno + 1) if prev else 1,
            cas=cas,
            flags=draft.flags,
            expiry=0 if draft.deleted else draft.expiry,
            body=b"" if draft.deleted else draft.body,
            is_json=False if draft.deleted else draft.is_json,
            user_xattrs={} if draft.deleted else dict(draft.user_xattrs),
            system_xattrs=dict(draft.system_xattrs),
            deleted=draft.deleted,
            expired=draft.expired,
            delete_time=int(time.time()) if draft.deleted else 0,
        )
        self._append(vb, item)
        return item

    def apply(
        self,
        cid: int,
        key: bytes,
        build: Callable[[Item | None], Draft | None],
        *,
        cas: int = 0,
        include_deleted: bool = False,
    ) -> Item | None:
        """Read-modify-write one key atomically.

        ``build(current)`` gets the live version (or the tombstone when ``include_deleted``)
        or None, and returns the Draft to store, or None to store nothing. A non-zero ``cas``
        must match the current version (KEY_EEXISTS) and requires it to exist (KEY_ENOENT).
        """
        with self.lock:
            current = self.lookup(cid, key, include_deleted=True)
            if current is not None and current.deleted and not include_deleted:
                current = None
            if cas:
                if current is None:
                    raise KvError(Status.KEY_ENOENT)
                if current.cas != cas:
                    raise KvError(Status.KEY_EEXISTS)
            draft = build(current)
            if draft is None:
                return None
            vb = self.vbuckets[self.vbucket_of(key)]
            if current is None:
                existing = vb.docs.get((cid, key))
                item = self._commit(vb, existing, draft, cid=cid, key=key)
            else:
                item = self._commit(vb, current, draft)
        self._notify("data", [item.vbucket])
        return item

    @staticmethod
    def full_write_draft(body: bytes, flags: int, expiry: int) -> Draft:
        return Draft(body=body, is_json=is_json(body), flags=flags, expiry=absolute_expiry(expiry))

    def keep_xattrs(self, current: Item | None, draft: Draft) -> Draft:
        """Carry the xattrs of ``current`` into a full-document write (see ``store``)."""
        if current is not None:
            draft.system_xattrs = dict(current.system_xattrs)
            if self.xattr_mode == "preserve":
                draft.user_xattrs = dict(current.user_xattrs)
        return draft

    def store(self, cid: int, key: bytes, body: bytes, *, mode: str = "set", cas: int = 0,
              flags: int = 0, expiry: int = 0, preserve_expiry: bool = False) -> Item:
        """Full-document write with memcached SET/ADD/REPLACE semantics.

        Existing xattrs are kept as kv_engine's MutationCommandContext does (all of them), or
        only the system ones with ``xattr_mode='keep_system_only'``.
        """

        def build(current: Item | None) -> Draft:
            if mode == "add" and current is not None:
                raise KvError(Status.KEY_EEXISTS)
            if mode == "replace" and current is None:
                raise KvError(Status.KEY_ENOENT)
            draft = self.keep_xattrs(current, self.full_write_draft(body, flags, expiry))
            if current is not None and preserve_expiry:
                draft.expiry = current.expiry
            return draft

        if mode == "add" and cas:
            raise KvError(Status.EINVAL, "add with cas")
        item = self.apply(cid, key, build, cas=cas)
        assert item is not None
        return item

    def delete(self, cid: int, key: bytes, *, cas: int = 0) -> Item:
        """Delete: body and user xattrs go, system xattrs stay in the tombstone."""

        def build(current: Item | None) -> Draft:
            if current is None:
                raise KvError(Status.KEY_ENOENT)
            return Draft(system_xattrs=dict(current.system_xattrs), flags=current.flags,
                         deleted=True)

        item = self.apply(cid, key, build, cas=cas)
        assert item is not None
        return item

    def touch(self, cid: int, key: bytes, expiry: int) -> Item:
        def build(current: Item | None) -> Draft:
            if current is None:
                raise KvError(Status.KEY_ENOENT)
            return Draft(body=current.body, is_json=current.is_json, flags=current.flags,
                         expiry=absolute_expiry(expiry), user_xattrs=dict(current.user_xattrs),
                         system_xattrs=dict(current.system_xattrs))

        item = self.apply(cid, key, build)
        assert item is not None
        return item

    def expire_due(self) -> int:
        """Expire every document whose TTL has passed (an expiry pager run); returns count."""
        with self.lock:
            due = [
                (it.cid, it.key)
                for vb in self.vbuckets
                for it in vb.docs.values()
                if not it.deleted and it.expiry and time.time() >= it.expiry
            ]
        for cid, key in due:
            self.lookup(cid, key)
        return len(due)

    # -- collections ---------------------------------------------------------------------
    def _system_event(self, event: SystemEventType, scope_id: int, cid: int = 0,
                      name: str = "", max_ttl: int = 0) -> None:
        for vb in self.vbuckets:
            self._append(vb, SysEvent(vb.vbid, vb.high_seqno + 1, event, self.manifest.uid,
                                      scope_id, cid, name, max_ttl))

    def create_scope(self, name: str) -> int:
        with self.lock:
            scope = self.manifest.create_scope(name)
            self._system_event(SystemEventType.CREATE_SCOPE, scope.sid, name=name)
        self._notify("data", list(range(self.num_vbuckets)))
        return scope.sid

    def create_collection(self, scope: str, name: str, max_ttl: int = 0) -> int:
        with self.lock:
            info = self.manifest.create_collection(scope, name, max_ttl)
            self._system_event(SystemEventType.CREATE_COLLECTION, info.scope_id, info.cid,
                               name, max_ttl)
        self._notify("data", list(range(self.num_vbuckets)))
        return info.cid

    def _forget_collection(self, cid: int) -> None:
        for vb in self.vbuckets:
            for k in [k for k in vb.docs if k[0] == cid]:
                del vb.docs[k]

    def drop_collection(self, scope: str, name: str) -> int:
        with self.lock:
            info = self.manifest.drop_collection(scope, name)
            self._forget_collection(info.cid)
            self._system_event(SystemEventType.DROP_COLLECTION, info.scope_id, info.cid)
        self._notify("data", list(range(self.num_vbuckets)))
        return info.cid

    def drop_scope(self, name: str) -> int:
        with self.lock:
            scope = self.manifest.drop_scope(name)
            for info in scope.collections.values():
                self._forget_collection(info.cid)
                self._system_event(SystemEventType.DROP_COLLECTION, info.scope_id, info.cid)
            self._system_event(SystemEventType.DROP_SCOPE, scope.sid)
        self._notify("data", list(range(self.num_vbuckets)))
        return scope.sid

    # -- failover ------------------------------------------------------------------------
    def failover(self, vbid: int, lose_after_seqno: int | None = None) -> int:
        """Add a failover entry (new vBucket uuid); optionally lose history above a seqno.

        Losing history rebuilds the documents from the remaining history, as a promoted
        replica that never received the later mutations would have them.
        """
        with self.lock:
            vb = self.vbuckets[vbid]
            if lose_after_seqno is not None and lose_after_seqno < vb.high_seqno:
                i = bisect.bisect_right(vb.seqnos, lose_after_seqno)
                kept = vb.history[:i]
                vb.history, vb.seqnos, vb.docs = [], [], {}
                vb.high_seqno, vb.collection_high = 0, {}
                for entry in kept:
                    self._append(vb, entry)
                for cid in {k[0] for k in vb.docs}:
                    if self.manifest.by_id(cid) is None:
                        for k in [k for k in vb.docs if k[0] == cid]:
                            del vb.docs[k]
                vb.high_seqno = lose_after_seqno
                # entries that began above the kept history never reached this replica
                vb.failover_log = [(u, s) for u, s in vb.failover_log if s <= lose_after_seqno]
            vb.uuid = new_uuid()
            vb.failover_log.insert(0, (vb.uuid, vb.high_seqno))
            uuid = vb.uuid
        self._notify("failover", [vbid])
        return uuid
