"""Control events the DCP stream yields between `connector.events.ChangeEvent`s.

All are frozen values. For every vbucket they come in stream order with its change events, so
a consumer that processes per vbucket in order keeps the meaning of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.dcp.opcodes import StreamEndReason
from connector.events import ChangeEvent, Keyspace, PartitionOffset, Snapshot


@dataclass(frozen=True, slots=True)
class SeqnoAdvancedEvent:
    """The vbucket moved to `seqno` with nothing for this stream (a filtered collection, a
    system event, a prepare). A consumer may checkpoint `offset`."""

    vb: int
    seqno: int
    snapshot: Snapshot
    vbuuid: int = 0

    @property
    def offset(self) -> PartitionOffset:
        return PartitionOffset(self.vbuuid, self.seqno, self.snapshot)


@dataclass(frozen=True, slots=True)
class RollbackEvent:
    """The server rolled vbucket `vb` back to `offset`. The client has already requested the
    stream again from there; the consumer must forget in-flight work above `offset.seqno` and
    never checkpoint beyond it until new events arrive."""

    vb: int
    offset: PartitionOffset


@dataclass(frozen=True, slots=True)
class StreamEndEvent:
    """A terminal end of the stream of vbucket `vb` (closed, filter empty, lost privileges...).
    Transient ends (vbucket moved, too slow, disconnect) are handled inside the client."""

    vb: int
    reason: StreamEndReason | int
    offset: PartitionOffset | None = None


@dataclass(frozen=True, slots=True)
class CollectionDroppedEvent:
    """A streamed collection was dropped. Sent once per vbucket that saw the drop (the drop is
    a system event in each vbucket); `offset` is that vbucket's position after it."""

    keyspace: Keyspace
    vb: int = -1
    offset: PartitionOffset | None = None


DcpItem = ChangeEvent | SeqnoAdvancedEvent | RollbackEvent | StreamEndEvent | CollectionDroppedEvent
