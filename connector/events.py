"""Change events: what every source (embedded change log, Couchbase DCP) hands to the pipeline.

A source delivers, per partition (vbucket) and in seqno order, one `ChangeEvent` per document
change. Delivery is at-least-once: after a restart the source resumes from the last checkpoint,
so the pipeline must be idempotent (the source hash makes it so).

`PartitionOffset` is the resume point of one partition: an immutable value that refuses a seqno
outside its snapshot, modelled on java-dcp-client's StreamOffset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from connector.errors import InvalidOffsetError


class ChangeKind(enum.Enum):
    MUTATION = "mutation"
    DELETION = "deletion"
    EXPIRATION = "expiration"


@dataclass(frozen=True, slots=True)
class Keyspace:
    """`bucket.scope.collection`, parsed once."""

    bucket: str
    scope: str
    collection: str

    @classmethod
    def parse(cls, text: str) -> Keyspace:
        parts = text.split(".")
        if len(parts) != 3 or not all(parts):
            raise ValueError(
                f"keyspace {text!r} must have the form bucket.scope.collection "
                "(three non-empty names separated by dots)"
            )
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.bucket}.{self.scope}.{self.collection}"


@dataclass(frozen=True, slots=True)
class PipelineMeta:
    """What a pipeline recorded beside a vector it wrote (kept in an xattr on Couchbase)."""

    source_hash: str
    model: str
    dims: int
    embedded_at: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One document change on one partition.

    `body` is the raw document value (bytes) for a mutation and None otherwise; `meta` holds the
    pipeline metadata that travelled with the change (DCP xattrs, or the embedded store's own
    record), keyed by pipeline name, so the loop guard needs no extra read.
    """

    kind: ChangeKind
    keyspace: Keyspace
    key: str
    partition: int
    seqno: int
    cas: int
    snapshot: Snapshot
    body: bytes | None = None
    meta: dict[str, PipelineMeta] = field(default_factory=dict)
    xattrs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_removal(self) -> bool:
        return self.kind is not ChangeKind.MUTATION


@dataclass(frozen=True, slots=True)
class FailoverEntry:
    vbuuid: int
    seqno: int


@dataclass(frozen=True, slots=True)
class PartitionOffset:
    """Where to resume one partition: seqno inside its snapshot, the branch (vbuuid) it is on.

    `seqno` is the last event fully processed. `ZERO_OFFSET` means "from the beginning".
    """

    vbuuid: int
    seqno: int
    snapshot: Snapshot

    def __post_init__(self) -> None:
        if not self.snapshot.start <= self.seqno <= self.snapshot.end:
            raise InvalidOffsetError(
                f"seqno {self.seqno} lies outside its snapshot "
                f"[{self.snapshot.start}, {self.snapshot.end}]"
            )

    @classmethod
    def at(cls, seqno: int, vbuuid: int = 0, snapshot: Snapshot | None = None) -> PartitionOffset:
        return cls(vbuuid, seqno, snapshot or Snapshot(seqno, seqno))

    def describe(self) -> str:
        return (
            f"seqno={self.seqno} vbuuid={self.vbuuid} "
            f"snapshot=[{self.snapshot.start},{self.snapshot.end}]"
        )


ZERO_OFFSET = PartitionOffset(0, 0, Snapshot(0, 0))
