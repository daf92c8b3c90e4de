"""The storage seam: the handful of operations the pipeline needs from a backend.

Two implementations: `connector.embedded` (SQLite, the default) and `connector.couchbase`
(the SDK for writes + our DCP client for the feed). Everything is called from the connector's
event loop; implementations move blocking work off it themselves.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from connector.errors import DocumentError
from connector.events import ChangeEvent, FailoverEntry, Keyspace, PartitionOffset


@dataclass(frozen=True, slots=True)
class VectorWrite:
    """One vector to write back, guarded by the CAS of the change it was computed from."""

    keyspace: Keyspace
    key: str
    cas: int
    vector: np.ndarray
    source_hash: str
    text: str | None  # the extracted text (kept for keyword search where the backend needs it)


@dataclass(frozen=True, slots=True)
class Removal:
    """Remove what a pipeline derived from a document (deleted, or no longer matching)."""

    keyspace: Keyspace
    key: str
    cas: int  # CAS of the change that asked for removal; a newer document is left alone
    document_deleted: bool = False  # the document itself is gone (not just out of the filter)


class WriteOutcome(enum.Enum):
    WRITTEN = "written"
    CAS_MISMATCH = "cas_mismatch"  # the document changed since: the newer change will come
    NOT_FOUND = "not_found"  # the document is gone: its deletion will come


@dataclass(frozen=True, slots=True)
class PipelineTarget:
    """What a backend needs to know about the pipeline it writes for."""

    name: str
    vector_field: str
    model: str
    dims: int


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A pipeline's resume point on one partition, plus the settings it was reached with."""

    offset: PartitionOffset
    failover_log: tuple[FailoverEntry, ...] = ()
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    pipeline: str
    keyspace: str
    key: str
    seqno: int
    cas: int
    kind: str
    reason: str
    at: float


@dataclass(slots=True)
class PipelineStats:
    embedded: int = 0
    skipped_unchanged: int = 0
    skipped_filter: int = 0
    failed: int = 0
    removed: int = 0
    cas_conflicts: int = 0
    truncated: int = 0
    write_retries: int = 0
    skipped_known_bad: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {
            "embedded": self.embedded,
            "skipped_unchanged": self.skipped_unchanged,
            "skipped_filter": self.skipped_filter,
            "failed": self.failed,
            "removed": self.removed,
            "cas_conflicts": self.cas_conflicts,
            "truncated": self.truncated,
            "write_retries": self.write_retries,
            "skipped_known_bad": self.skipped_known_bad,
            **self.extra,
        }

    def add(self, other: Mapping[str, int]) -> None:
        for k, v in other.items():
            if hasattr(self, k) and k != "extra":
                setattr(self, k, getattr(self, k) + v)
            else:
                self.extra[k] = self.extra.get(k, 0) + v


@dataclass(frozen=True, slots=True)
class SourceIdle:
    """The source looked and found nothing new (sent after every such look)."""


@dataclass(frozen=True, slots=True)
class PartitionRolledBack:
    """The source resumed partition `partition` from `offset` (lower than delivered before)."""

    partition: int
    offset: PartitionOffset


@dataclass(frozen=True, slots=True)
class SeqnoAdvanced:
    """No data for a pipeline's collections up to `seqno`: checkpoints may move there."""

    partition: int
    seqno: int


@dataclass(frozen=True, slots=True)
class KeyspaceDropped:
    """A watched collection was dropped: pipelines on it stop."""

    keyspace: Keyspace


FeedItem = ChangeEvent | SourceIdle | PartitionRolledBack | SeqnoAdvanced | KeyspaceDropped


class ChangeSource(abc.ABC):
    """A change feed over some keyspaces and partitions, resumable from offsets."""

    @abc.abstractmethod
    def stream(self, offsets: Mapping[int, PartitionOffset]) -> AsyncIterator[FeedItem]:
        """Yield changes in seqno order per partition, starting after each offset."""

    @abc.abstractmethod
    def failover_log(self, partition: int) -> tuple[FailoverEntry, ...]:
        """The partition's failover log, newest first, as last seen by the source."""

    @abc.abstractmethod
    async def current_positions(self, partitions: Sequence[int]) -> dict[int, PartitionOffset]:
        """Each partition's newest position ("start from now")."""

    async def lag(self, positions: Mapping[int, int]) -> int:
        """How many changes lie beyond `positions` (partition -> seqno); -1 if unknown."""
        return -1

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class Backend(abc.ABC):
    """Storage for one connector: its feed, vector write-back and bookkeeping."""

    #: True where vectors live inside the documents (Couchbase): an application can then drop a
    #: vector by rewriting the document, and the loop guard must check it is still there.
    vectors_in_documents = False

    @property
    @abc.abstractmethod
    def num_partitions(self) -> int: ...

    @abc.abstractmethod
    async def change_source(
        self, keyspaces: Sequence[Keyspace], partitions: Sequence[int], *, poll_interval_s: float
    ) -> ChangeSource: ...

    @abc.abstractmethod
    async def write_vectors(
        self, target: PipelineTarget, items: Sequence[VectorWrite]
    ) -> list[WriteOutcome | DocumentError]:
        """One result per item; a DocumentError says why that write was refused for good."""

    @abc.abstractmethod
    async def remove_vectors(self, target: PipelineTarget, items: Sequence[Removal]) -> None: ...

    @abc.abstractmethod
    async def load_checkpoints(self, group: str, pipeline: str) -> dict[int, Checkpoint]: ...

    @abc.abstractmethod
    async def save_checkpoints(
        self, group: str, pipeline: str, checkpoints: Mapping[int, Checkpoint],
        stats: Mapping[str, int], member: int = 0,
    ) -> None:
        """Save checkpoints and the member's stats counters (absolute values) in one step."""

    @abc.abstractmethod
    async def load_stats(
        self, group: str, pipeline: str, member: int | None = None
    ) -> dict[str, int]:
        """One member's counters, or (member=None) the sum over the group's members."""

    @abc.abstractmethod
    async def record_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...

    @abc.abstractmethod
    async def clear_dead_letters(self, pipeline: str, keyspace: str, keys: Sequence[str]) -> None:
        """Forget dead letters of documents that have since been handled."""

    @abc.abstractmethod
    async def list_dead_letters(self, pipeline: str | None = None) -> list[DeadLetter]: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass
