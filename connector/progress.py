"""Per-partition progress: which delivered changes are finished, and how far a checkpoint may go.

Changes are received in seqno order and may finish in any order (batches, retries). The
checkpoint of a partition is the highest received seqno below which every change is finished,
so a restart never skips an unfinished document. Pure bookkeeping; called on the connector loop.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from connector.events import PartitionOffset, Snapshot


@dataclass(slots=True)
class _Entry:
    seqno: int
    snapshot: Snapshot
    done: bool = False


class PartitionProgress:
    def __init__(self, start: PartitionOffset) -> None:
        self._pending: deque[_Entry] = deque()
        self._by_seqno: dict[int, _Entry] = {}
        self._safe = start  # last offset below which everything is finished
        self.last_received = start.seqno

    def received(self, seqno: int, snapshot: Snapshot) -> None:
        """The pipeline took change `seqno` (in order). Called by the intake."""
        if seqno <= self.last_received:
            raise ValueError(f"seqno {seqno} received after {self.last_received}: out of order")
        entry = _Entry(seqno, snapshot)
        self._pending.append(entry)
        self._by_seqno[seqno] = entry
        self.last_received = seqno

    def finished(self, seqno: int) -> None:
        """Change `seqno` is written back, skipped or dead-lettered. Called by any stage."""
        entry = self._by_seqno.pop(seqno, None)
        if entry is None:
            return  # forgotten by a rollback
        entry.done = True
        while self._pending and self._pending[0].done:
            head = self._pending.popleft()
            self._safe = PartitionOffset(self._safe.vbuuid, head.seqno, head.snapshot)

    def advance_to(self, seqno: int) -> None:
        """Nothing for us up to `seqno` (DCP SeqnoAdvanced): move once all before are done."""
        if seqno <= self.last_received:
            return
        self.received(seqno, Snapshot(seqno, seqno))
        self.finished(seqno)

    def reset(self, offset: PartitionOffset) -> None:
        """The source rolled back to `offset`: forget in-flight changes above it."""
        self._pending.clear()
        self._by_seqno.clear()
        self._safe = offset
        self.last_received = offset.seqno

    def checkpoint(self, vbuuid: int) -> PartitionOffset:
        s = self._safe
        return PartitionOffset(vbuuid, s.seqno, s.snapshot)

    @property
    def in_flight(self) -> int:
        return len(self._by_seqno)
