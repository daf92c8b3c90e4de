"""Per-vbucket resume state, after java-dcp-client's PartitionState/SessionState. Pure.

Who calls what: the stream multiplexer (`stream.py`) owns one `PartitionState` per streamed
vbucket and mutates it on the consumer's event loop *as it hands messages to the consumer*
(delivery order), so the state always describes what was delivered, never what was merely
received. That is the state a reconnect resumes from and what `offset()` exports.

Snapshots: a marker is kept as `pending` and becomes `snapshot` only when the first item of
that snapshot is delivered. Until then the last delivered item still belongs to the previous
snapshot, and a resume must describe that one: claiming the new snapshot without any of its
items would tell the server we hold a consistent view of a range we never saw.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from connector.events import FailoverEntry, PartitionOffset, Snapshot


class StreamStatus(enum.Enum):
    IDLE = "idle"
    """No stream requested yet."""
    OPENING = "opening"
    """STREAM_REQ sent, reply not yet delivered."""
    STREAMING = "streaming"
    REOPENING = "reopening"
    """Ended for a transient reason (moved, too slow, connection lost); will be requested again."""
    ENDED = "ended"
    """Terminal: closed, filter empty, lost privileges, or a non-retriable error."""


@dataclass
class PartitionState:
    vb: int
    failover_log: list[FailoverEntry] = field(default_factory=list)
    """Newest first, as the server sends it."""
    seqno: int = 0
    snapshot: Snapshot = field(default_factory=lambda: Snapshot(0, 0))
    pending: Snapshot | None = None
    manifest_uid: int = 0
    status: StreamStatus = StreamStatus.IDLE
    opaque: int = -1
    """Opaque of the live STREAM_REQ: messages carrying another one are from a dead stream."""

    @classmethod
    def from_offset(cls, vb: int, offset: PartitionOffset) -> PartitionState:
        """Start from a checkpoint. The vbuuid becomes a one-entry failover log at seqno 0 (the
        branch start is unknown), so a rollback never trims it away; the server's real log
        replaces it as soon as a stream opens."""
        log = [FailoverEntry(offset.vbuuid, 0)] if offset.vbuuid else []
        return cls(vb, log, offset.seqno, offset.snapshot)

    @property
    def vbuuid(self) -> int:
        return self.failover_log[0].vbuuid if self.failover_log else 0

    # -- mutators, called by the multiplexer in delivery order --------------------------------

    def on_failover_log(self, entries: list[FailoverEntry]) -> None:
        """A stream opened (or GET_FAILOVER_LOG answered): adopt the server's branch history."""
        self.failover_log = list(entries)

    def on_snapshot_marker(self, start: int, end: int) -> None:
        """Remember the marker; it takes effect with the first item (see module doc)."""
        self.pending = Snapshot(start, end)

    def _promote(self) -> None:
        if self.pending is not None:
            self.snapshot = self.pending
            self.pending = None

    def on_item(self, seqno: int) -> Snapshot:
        """A mutation, deletion, expiration or system event was delivered; returns its snapshot."""
        self._promote()
        snap = self.snapshot
        if not snap.start <= seqno <= snap.end:
            # The producer broke its own marker (should not happen): keep the offset valid.
            snap = self.snapshot = Snapshot(min(snap.start, seqno), max(snap.end, seqno))
        self.seqno = seqno
        return snap

    def on_seqno_advanced(self, seqno: int) -> Snapshot:
        """The vbucket reached `seqno` with nothing for us (filtered collection, prepare...).

        It may be the only message of a snapshot, so it promotes a pending marker. If `seqno`
        lies in the current snapshot that snapshot stays; otherwise the position is (s, s)."""
        self._promote()
        if not self.snapshot.start <= seqno <= self.snapshot.end:
            self.snapshot = Snapshot(seqno, seqno)
        self.seqno = seqno
        return self.snapshot

    def on_manifest(self, manifest_uid: int) -> None:
        if manifest_uid > self.manifest_uid:
            self.manifest_uid = manifest_uid

    def rollback(self, to_seqno: int) -> PartitionOffset:
        """The server said Rollback(R): position at R, snapshot (R, R), drop failover entries
        newer than R (their branch is gone) and continue on the newest remaining one."""
        self.seqno = to_seqno
        self.snapshot = Snapshot(to_seqno, to_seqno)
        self.pending = None
        self.failover_log = [e for e in self.failover_log if e.seqno <= to_seqno]
        return self.offset()

    # -- readers ------------------------------------------------------------------------------

    def offset(self) -> PartitionOffset:
        """Where a resume starts: last delivered seqno in its (promoted) snapshot."""
        return PartitionOffset(self.vbuuid, self.seqno, self.snapshot)

    def stream_request_params(self) -> tuple[int, int, int, int]:
        """(start_seqno, vbuuid, snap_start, snap_end) for the next STREAM_REQ."""
        o = self.offset()
        return o.seqno, o.vbuuid, o.snapshot.start, o.snapshot.end
