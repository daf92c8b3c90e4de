"""The Couchbase change feed: our DCP client's stream, as the pipeline's `ChangeSource`.

A pump task pulls the DCP stream into a bounded queue (the DCP client acknowledges bytes as they
are pulled, so a full queue stops the acks and the server stops sending: backpressure). Each
change gets its pipeline metadata from the xattrs that came with it. When nothing arrives for
`poll_interval_s`, the feed compares what it delivered with the vbuckets' high seqnos and says
`SourceIdle` once every owned vbucket is caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from connector.couchbase.xattrs import parse_meta
from connector.dcp import (
    CollectionDroppedEvent,
    DcpClient,
    RollbackEvent,
    SeqnoAdvancedEvent,
    StreamEndEvent,
    UnknownCollectionError,
)
from connector.dcp.stream import DcpStream
from connector.errors import StorageError
from connector.events import ZERO_OFFSET, ChangeEvent, FailoverEntry, Keyspace, PartitionOffset
from connector.storage import (
    ChangeSource,
    FeedItem,
    KeyspaceDropped,
    PartitionRolledBack,
    SeqnoAdvanced,
    SourceIdle,
)

log = logging.getLogger("cbembed.couchbase.feed")
_DONE = object()


class DcpFeed(ChangeSource):
    def __init__(
        self, client: DcpClient, keyspaces: Sequence[Keyspace], partitions: Sequence[int],
        *, meta_xattr: str, poll_interval_s: float, queue_size: int = 1024,
    ) -> None:
        self._client = client
        self._bucket = keyspaces[0].bucket
        self._collections = sorted({f"{k.scope}.{k.collection}" for k in keyspaces})
        self._partitions = list(partitions)
        self._xattr = meta_xattr
        self._poll = max(poll_interval_s, 0.05)
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self._stream: DcpStream | None = None
        self._pump: asyncio.Task[None] | None = None
        self._delivered: dict[int, int] = {}  # per vbucket: highest seqno seen
        self._yielded: dict[int, tuple[int, Any]] = {}  # per vbucket: (seqno, snapshot) handed on
        self.dropped: set[Keyspace] = set()

    def failover_log(self, partition: int) -> tuple[FailoverEntry, ...]:
        if self._stream is None or partition not in self._stream.states:
            return ()
        return tuple(self._stream.states[partition].failover_log)

    async def current_positions(self, partitions: Sequence[int]) -> dict[int, PartitionOffset]:
        return await self._client.current_positions(partitions)

    async def _high_seqnos(self) -> dict[int, int]:
        """Per vbucket, the high seqno of the watched collections that still exist."""
        live = [c for c in self._collections
                if Keyspace(self._bucket, *c.split(".")) not in self.dropped]
        if not live:
            return {}
        try:
            return await self._client.collection_high_seqnos(self._partitions, live)
        except UnknownCollectionError:
            return {}  # dropped just now: its CollectionDroppedEvent is on the way

    async def lag(self, positions: Mapping[int, int]) -> int:
        """Seqnos between `positions` and the watched collections' high seqnos (an upper bound
        of the changes still to look at: seqnos of other collections lie in between)."""
        high = await self._high_seqnos()
        return sum(max(0, s - positions.get(vb, 0)) for vb, s in high.items())

    async def _pump_stream(self) -> None:
        assert self._stream is not None
        queue = self._queue
        try:
            async for item in self._stream:
                try:
                    queue.put_nowait(item)
                except asyncio.QueueFull:
                    await queue.put(item)
        except BaseException as e:  # the consumer re-raises it
            if not isinstance(e, asyncio.CancelledError):
                await self._queue.put(e)
            raise
        await self._queue.put(_DONE)

    async def _caught_up(self) -> bool:
        high = await self._high_seqnos()
        return all(self._delivered.get(vb, 0) >= s for vb, s in high.items())

    async def _stop_stream(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
        if self._stream is not None:
            await self._stream.aclose()

    async def _restart(self, offsets: Mapping[int, PartitionOffset]) -> None:
        """(Re)open the DCP stream from `offsets`, dropping whatever the old one queued."""
        await self._stop_stream()
        self._queue = asyncio.Queue(self._queue.maxsize)
        self._stream = self._client.stream(self._partitions, offsets, self._collections)
        self._pump = asyncio.create_task(self._pump_stream(), name="dcp-pump")

    def _yielded_offset(self, vb: int) -> PartitionOffset:
        assert self._stream is not None
        seqno, snapshot = self._yielded.get(vb, (0, None))
        state = self._stream.states.get(vb)
        vbuuid = state.vbuuid if state is not None else 0
        return PartitionOffset.at(seqno, vbuuid, snapshot)

    async def stream(self, offsets: Mapping[int, PartitionOffset]) -> AsyncIterator[FeedItem]:
        self._delivered = {vb: offsets.get(vb, ZERO_OFFSET).seqno for vb in self._partitions}
        self._yielded = {vb: (o.seqno, o.snapshot) for vb, o in offsets.items()}
        await self._restart(offsets)
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    item = await asyncio.wait_for(self._queue.get(), self._poll)
                except TimeoutError:
                    if await self._caught_up():
                        yield SourceIdle()
                    continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise StorageError(f"the DCP stream failed: {item}") from item
            if isinstance(item, ChangeEvent):
                self._delivered[item.partition] = item.seqno
                self._yielded[item.partition] = (item.seqno, item.snapshot)
                meta = parse_meta(item.xattrs, self._xattr)
                yield replace(item, meta=meta) if meta else item
            elif isinstance(item, SeqnoAdvancedEvent):
                self._delivered[item.vb] = max(self._delivered.get(item.vb, 0), item.seqno)
                self._yielded[item.vb] = (item.seqno, item.snapshot)
                yield SeqnoAdvanced(item.vb, item.seqno)
            elif isinstance(item, RollbackEvent):
                # The server lost history above item.offset. Our own write-backs for changes
                # at or below it may have been lost with it, and nothing says which: read the
                # whole vbucket again (unchanged documents are skipped by their hash).
                log.warning("vbucket %d rolled back to %s: reading it again from the start",
                            item.vb, item.offset.describe())
                resume = {vb: self._yielded_offset(vb) for vb in self._partitions}
                resume[item.vb] = ZERO_OFFSET
                self._yielded[item.vb] = (0, None)
                self._delivered[item.vb] = 0
                yield PartitionRolledBack(item.vb, ZERO_OFFSET)
                await self._restart(resume)
            elif isinstance(item, CollectionDroppedEvent):
                if item.keyspace not in self.dropped:
                    self.dropped.add(item.keyspace)
                    yield KeyspaceDropped(item.keyspace)
                if item.offset is not None:
                    self._delivered[item.vb] = item.offset.seqno
                    yield SeqnoAdvanced(item.vb, item.offset.seqno)
            elif isinstance(item, StreamEndEvent):
                log.warning("DCP stream of vbucket %d ended: %s", item.vb, item.reason)
                if item.offset is not None:
                    self._delivered[item.vb] = max(self._delivered.get(item.vb, 0),
                                                   item.offset.seqno)

    async def close(self) -> None:
        await self._stop_stream()
        await self._client.close()
