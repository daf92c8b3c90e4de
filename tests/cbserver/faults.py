"""Fault injection switches, set by tests from any thread and consumed by handlers on the loop.

All methods take one lock; nothing here does I/O. ``CouchbaseTestServer.faults`` is the
public instance.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Faults:
    """Faults the server applies to the next matching requests or DCP items."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drop_after: int | None = None
        self._rollback: dict[int, int] = {}
        self._nmvb: dict[int, int] = {}
        self._tmpfail: dict[int, int] = {}
        #: Set by the server: bump the config rev (any thread).
        self.on_not_my_vbucket: Callable[[], None] | None = None
        #: Set by the server: abort all DCP connections (any thread).
        self.on_drop_now: Callable[[], None] | None = None
        #: Set by the server: end open streams of some vBuckets with a reason (any thread).
        self.on_end_streams: Callable[[set[int], int], None] | None = None

    # -- called by tests ---------------------------------------------------------------
    def drop_dcp_connections(self, after_items: int) -> None:
        """Abort every DCP connection right after ``after_items`` more DCP items
        (mutations, deletions, expirations, system events) have been written, wherever that
        falls (usually mid-snapshot). ``after_items=0`` drops them now."""
        if after_items <= 0:
            if self.on_drop_now is not None:
                self.on_drop_now()
            return
        with self._lock:
            self._drop_after = after_items

    def force_rollback(self, vbucket: int, to_seqno: int) -> None:
        """The next STREAM_REQ for ``vbucket`` is answered with Rollback (0x23) to ``to_seqno``."""
        with self._lock:
            self._rollback[vbucket] = to_seqno

    def not_my_vbucket(self, vbuckets: set[int], times: int = 1) -> None:
        """The next ``times`` STREAM_REQs and KV operations on each of ``vbuckets`` answer
        NOT_MY_VBUCKET (0x07) with the cluster config (its rev bumped) in the body."""
        with self._lock:
            for vb in vbuckets:
                self._nmvb[vb] = self._nmvb.get(vb, 0) + times

    def tmpfail(self, vbuckets: set[int], times: int = 1) -> None:
        """The next ``times`` STREAM_REQs and KV operations on each of ``vbuckets`` answer
        ETMPFAIL (0x86, "retry later")."""
        with self._lock:
            for vb in vbuckets:
                self._tmpfail[vb] = self._tmpfail.get(vb, 0) + times

    def end_streams(self, vbuckets: set[int], reason: int = 4) -> None:
        """End every open DCP stream of ``vbuckets`` now with StreamEnd ``reason``
        (default 4, too slow; 2 state changed and 3 disconnected also ask for a reopen)."""
        if self.on_end_streams is not None:
            self.on_end_streams(set(vbuckets), reason)

    def clear(self) -> None:
        with self._lock:
            self._drop_after = None
            self._rollback.clear()
            self._nmvb.clear()
            self._tmpfail.clear()

    # -- called by handlers on the server loop -----------------------------------------------
    def take_rollback(self, vbucket: int) -> int | None:
        with self._lock:
            return self._rollback.pop(vbucket, None)

    def take_not_my_vbucket(self, vbucket: int) -> bool:
        with self._lock:
            left = self._nmvb.get(vbucket, 0)
            if left <= 0:
                return False
            if left == 1:
                del self._nmvb[vbucket]
            else:
                self._nmvb[vbucket] = left - 1
        if self.on_not_my_vbucket is not None:
            self.on_not_my_vbucket()
        return True

    def take_tmpfail(self, vbucket: int) -> bool:
        with self._lock:
            left = self._tmpfail.get(vbucket, 0)
            if left <= 0:
                return False
            if left == 1:
                del self._tmpfail[vbucket]
            else:
                self._tmpfail[vbucket] = left - 1
            return True

    def count_dcp_item(self) -> bool:
        """Count one DCP item written; True means: drop all DCP connections now."""
        with self._lock:
            if self._drop_after is None:
                return False
            if self._drop_after <= 1:
                self._drop_after = None
                return True
            self._drop_after -= 1
            return False
