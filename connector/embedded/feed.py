"""The embedded change feed: reads the docs table in commit order, like a DCP stream.

Rows are read in CAS order (CAS grows in commit order, so each partition's rows come in seqno
order) from a cursor placed just below the oldest change any partition has not delivered. A
partition whose vbuuid differs from the resume offset's (the file was replaced) rolls back to 0,
as a DCP stream would. Reads run on the feed's own connection and thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from connector.embedded.database import connect
from connector.events import (
    ZERO_OFFSET,
    ChangeEvent,
    ChangeKind,
    FailoverEntry,
    Keyspace,
    PartitionOffset,
    PipelineMeta,
    Snapshot,
)
from connector.storage import ChangeSource, FeedItem, PartitionRolledBack, SourceIdle

PAGE = 512


class EmbeddedFeed(ChangeSource):
    """Change feed over one bucket's keyspaces, for the partitions this member owns.

    Created and iterated on the connector's event loop; SQL runs on a private thread.
    """

    def __init__(
        self, path: Path, bucket: str, keyspaces: Sequence[Keyspace], partitions: Sequence[int],
        *, poll_interval_s: float = 0.2,
    ) -> None:
        self._bucket = bucket
        self._collections = sorted({(k.scope, k.collection) for k in keyspaces})
        self._keyspaces = {(k.scope, k.collection): k for k in keyspaces}
        self._partitions = frozenset(partitions)
        self._poll = poll_interval_s
        self._io = ThreadPoolExecutor(1, thread_name_prefix="cbembed-feed")
        self._conn = connect(path)
        rows = self._conn.execute(
            "SELECT vb, vbuuid FROM partitions WHERE bucket=?", (bucket,)
        ).fetchall()
        self._vbuuids = {int(vb): int(uuid) for vb, uuid in rows}

    def failover_log(self, partition: int) -> tuple[FailoverEntry, ...]:
        return (FailoverEntry(self._vbuuids.get(partition, 0), 0),)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _collection_sql(self) -> tuple[str, list[str]]:
        clause = " OR ".join("(scope=? AND collection=?)" for _ in self._collections)
        return f"({clause})", [x for pair in self._collections for x in pair]

    def _resume_cursor(self, positions: Mapping[int, int]) -> int:
        """CAS just below the oldest undelivered change over all owned partitions."""
        coll_sql, coll_args = self._collection_sql()
        lowest: int | None = None
        for vb in self._partitions:
            row = self._conn.execute(
                f"SELECT min(cas) FROM docs WHERE bucket=? AND vb=? AND seqno>? AND {coll_sql}",
                (self._bucket, vb, positions.get(vb, 0), *coll_args),
            ).fetchone()
            if row[0] is not None and (lowest is None or row[0] < lowest):
                lowest = int(row[0])
        return 0 if lowest is None else lowest - 1

    def _page(self, cursor: int) -> list[ChangeEvent]:
        coll_sql, coll_args = self._collection_sql()
        rows = self._conn.execute(
            "SELECT id, scope, collection, key, vb, seqno, cas, body, deleted FROM docs "
            f"WHERE bucket=? AND cas>? AND {coll_sql} ORDER BY cas LIMIT {PAGE}",
            (self._bucket, cursor, *coll_args),
        ).fetchall()
        if not rows:
            return []
        meta: dict[int, dict[str, PipelineMeta]] = {}
        ids = [r[0] for r in rows if not r[8]]
        if ids:
            marks = ",".join("?" * len(ids))
            for doc_id, pipeline, h, model, dims, at in self._conn.execute(
                "SELECT doc_id, pipeline, source_hash, model, dims, embedded_at FROM derived "
                f"WHERE doc_id IN ({marks})",
                ids,
            ):
                meta.setdefault(doc_id, {})[pipeline] = PipelineMeta(h, model, dims, at)
        events = []
        for doc_id, scope, coll, key, vb, seqno, cas, body, deleted in rows:
            events.append(
                ChangeEvent(
                    kind=ChangeKind.DELETION if deleted else ChangeKind.MUTATION,
                    keyspace=self._keyspaces[(scope, coll)],
                    key=key,
                    partition=vb,
                    seqno=seqno,
                    cas=cas,
                    snapshot=Snapshot(seqno, seqno),
                    body=None if deleted else (body.encode() if isinstance(body, str) else body),
                    meta=meta.get(doc_id, {}),
                )
            )
        return events

    async def stream(self, offsets: Mapping[int, PartitionOffset]) -> AsyncIterator[FeedItem]:
        positions: dict[int, int] = {}
        for vb in self._partitions:
            off = offsets.get(vb, ZERO_OFFSET)
            if off.seqno and off.vbuuid not in (0, self._vbuuids.get(vb)):
                positions[vb] = 0
                yield PartitionRolledBack(vb, ZERO_OFFSET)
            else:
                positions[vb] = off.seqno
        cursor = await self._run(self._resume_cursor, positions)
        while True:
            events = await self._run(self._page, cursor)
            if not events:
                yield SourceIdle()
                await asyncio.sleep(self._poll)
                continue
            for ev in events:
                cursor = ev.cas
                if ev.partition in self._partitions and ev.seqno > positions[ev.partition]:
                    positions[ev.partition] = ev.seqno
                    yield ev

    async def current_positions(self, partitions: Sequence[int]) -> dict[int, PartitionOffset]:
        def read() -> dict[int, PartitionOffset]:
            rows = self._conn.execute(
                "SELECT vb, vbuuid, high_seqno FROM partitions WHERE bucket=?", (self._bucket,)
            ).fetchall()
            return {int(vb): PartitionOffset.at(int(s), int(u)) for vb, u, s in rows}

        now = await self._run(read)
        return {vb: now.get(vb, ZERO_OFFSET) for vb in partitions}

    async def lag(self, positions: Mapping[int, int]) -> int:
        def count() -> int:
            coll_sql, coll_args = self._collection_sql()
            total = 0
            for vb in self._partitions:
                total += self._conn.execute(
                    f"SELECT count(*) FROM docs WHERE bucket=? AND vb=? AND seqno>? AND {coll_sql}",
                    (self._bucket, vb, positions.get(vb, 0), *coll_args),
                ).fetchone()[0]
            return total

        return int(await self._run(count))

    async def close(self) -> None:
        await self._run(self._conn.close)
        self._io.shutdown(wait=False)
