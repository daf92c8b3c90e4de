"""The embedded backend: the storage seam implemented on the embedded SQLite store.

Write-back goes to the `derived` table in one transaction per batch, each row guarded by the
document's CAS; it does not touch the document, so it makes no change event of its own.
All methods are called on the connector's loop and run their SQL on one private thread.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from connector.embedded.database import EmbeddedDatabase
from connector.embedded.feed import EmbeddedFeed
from connector.errors import ConfigError, DocumentError
from connector.events import FailoverEntry, Keyspace, PartitionOffset, Snapshot
from connector.storage import (
    Backend,
    ChangeSource,
    Checkpoint,
    DeadLetter,
    PipelineTarget,
    Removal,
    VectorWrite,
    WriteOutcome,
)


class EmbeddedBackend(Backend):
    def __init__(self, db: EmbeddedDatabase, buckets: Sequence[str]) -> None:
        self.db = db
        buckets = sorted(set(buckets))
        counts = {db.partitions(b) for b in buckets}
        if len(counts) > 1:
            raise ConfigError(
                [("pipelines", f"buckets {buckets} have different partition counts {counts}")]
            )
        self._partitions = counts.pop() if counts else db.partitions("default")
        self._io = ThreadPoolExecutor(1, thread_name_prefix="cbembed-sqlite")

    @property
    def num_partitions(self) -> int:
        return self._partitions

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def change_source(
        self, keyspaces: Sequence[Keyspace], partitions: Sequence[int], *, poll_interval_s: float
    ) -> ChangeSource:
        buckets = {k.bucket for k in keyspaces}
        if len(buckets) != 1:
            raise ConfigError(
                [("pipelines", f"one connector streams one bucket; got {sorted(buckets)}")]
            )
        bucket = buckets.pop()
        self.db.partitions(bucket)  # creates the bucket (and its vbuuids) if new
        return EmbeddedFeed(
            self.db.path, bucket, keyspaces, partitions, poll_interval_s=poll_interval_s
        )

    # -- write-back ---------------------------------------------------------------------------
    def _write_sync(
        self, target: PipelineTarget, items: Sequence[VectorWrite]
    ) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome] = []
        now = time.time()
        with self.db.transaction() as c:
            for it in items:
                ks = it.keyspace
                row = c.execute(
                    "SELECT id, cas, deleted FROM docs WHERE bucket=? AND scope=? AND "
                    "collection=? AND key=?",
                    (ks.bucket, ks.scope, ks.collection, it.key),
                ).fetchone()
                if row is None or row[2]:
                    outcomes.append(WriteOutcome.NOT_FOUND)
                    continue
                if int(row[1]) != it.cas:
                    outcomes.append(WriteOutcome.CAS_MISMATCH)
                    continue
                c.execute(
                    "INSERT INTO derived(pipeline, doc_id, source_hash, model, dims, vector, text, "
                    "embedded_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(pipeline, doc_id) DO UPDATE "
                    "SET source_hash=excluded.source_hash, model=excluded.model, "
                    "dims=excluded.dims, vector=excluded.vector, text=excluded.text, "
                    "embedded_at=excluded.embedded_at",
                    (target.name, row[0], it.source_hash, target.model, target.dims,
                     it.vector.astype("<f4").tobytes(), it.text, now),
                )
                outcomes.append(WriteOutcome.WRITTEN)
            if WriteOutcome.WRITTEN in outcomes:
                self._bump_version(c, target.name)
        return outcomes

    @staticmethod
    def _bump_version(c: Any, pipeline: str) -> None:
        c.execute(
            "INSERT INTO derived_versions(pipeline, version) VALUES (?, 1) "
            "ON CONFLICT(pipeline) DO UPDATE SET version = version + 1",
            (pipeline,),
        )

    async def write_vectors(
        self, target: PipelineTarget, items: Sequence[VectorWrite]
    ) -> list[WriteOutcome | DocumentError]:
        return list(await self._run(self._write_sync, target, items))

    def _remove_sync(self, target: PipelineTarget, items: Sequence[Removal]) -> None:
        with self.db.transaction() as c:
            removed = 0
            for it in items:
                ks = it.keyspace
                # Only while the document is still the version that asked for the removal.
                removed += c.execute(
                    "DELETE FROM derived WHERE pipeline=? AND doc_id = (SELECT id FROM docs "
                    "WHERE bucket=? AND scope=? AND collection=? AND key=? AND cas=?)",
                    (target.name, ks.bucket, ks.scope, ks.collection, it.key, it.cas),
                ).rowcount
            if removed:
                self._bump_version(c, target.name)

    async def remove_vectors(self, target: PipelineTarget, items: Sequence[Removal]) -> None:
        await self._run(self._remove_sync, target, items)

    # -- checkpoints and stats ------------------------------------------------------------------
    def _load_checkpoints_sync(self, group: str, pipeline: str) -> dict[int, Checkpoint]:
        rows = self.db.query(
            "SELECT vb, vbuuid, seqno, snap_start, snap_end, failover_log, fingerprint "
            "FROM checkpoints WHERE grp=? AND pipeline=?",
            (group, pipeline),
        )
        out = {}
        for vb, vbuuid, seqno, s0, s1, flog, fp in rows:
            log = tuple(FailoverEntry(int(u), int(s)) for u, s in json.loads(flog))
            out[int(vb)] = Checkpoint(PartitionOffset(vbuuid, seqno, Snapshot(s0, s1)), log, fp)
        return out

    async def load_checkpoints(self, group: str, pipeline: str) -> dict[int, Checkpoint]:
        return dict(await self._run(self._load_checkpoints_sync, group, pipeline))

    def _save_sync(
        self, group: str, pipeline: str, cps: Mapping[int, Checkpoint], stats: Mapping[str, int],
        member: int,
    ) -> None:
        with self.db.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO checkpoints(grp, pipeline, vb, vbuuid, seqno, snap_start, "
                "snap_end, failover_log, fingerprint) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (group, pipeline, vb, cp.offset.vbuuid, cp.offset.seqno,
                     cp.offset.snapshot.start, cp.offset.snapshot.end,
                     json.dumps([[e.vbuuid, e.seqno] for e in cp.failover_log]), cp.fingerprint)
                    for vb, cp in cps.items()
                ],
            )
            c.executemany(
                "INSERT OR REPLACE INTO stats(grp, pipeline, member, name, value) "
                "VALUES (?,?,?,?,?)",
                [(group, pipeline, member, k, v) for k, v in stats.items()],
            )

    async def save_checkpoints(
        self, group: str, pipeline: str, checkpoints: Mapping[int, Checkpoint],
        stats: Mapping[str, int], member: int = 0,
    ) -> None:
        await self._run(
            self._save_sync, group, pipeline, dict(checkpoints), dict(stats), member
        )

    async def load_stats(
        self, group: str, pipeline: str, member: int | None = None
    ) -> dict[str, int]:
        sql = "SELECT name, sum(value) FROM stats WHERE grp=? AND pipeline=?"
        args: tuple[Any, ...] = (group, pipeline)
        if member is not None:
            sql += " AND member=?"
            args += (member,)
        rows = await self._run(self.db.query, sql + " GROUP BY name", args)
        return {name: int(v) for name, v in rows}

    # -- dead letters -------------------------------------------------------------------------
    def _record_sync(self, letters: Sequence[DeadLetter]) -> None:
        with self.db.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO dead_letters(pipeline, keyspace, key, seqno, cas, kind, "
                "reason, at) VALUES (?,?,?,?,?,?,?,?)",
                [(d.pipeline, d.keyspace, d.key, d.seqno, d.cas, d.kind, d.reason, d.at)
                 for d in letters],
            )

    async def record_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        if letters:
            await self._run(self._record_sync, list(letters))

    def _clear_sync(self, pipeline: str, keyspace: str, keys: Sequence[str]) -> None:
        with self.db.transaction() as c:
            c.executemany(
                "DELETE FROM dead_letters WHERE pipeline=? AND keyspace=? AND key=?",
                [(pipeline, keyspace, k) for k in keys],
            )

    async def clear_dead_letters(self, pipeline: str, keyspace: str, keys: Sequence[str]) -> None:
        if keys:
            await self._run(self._clear_sync, pipeline, keyspace, list(keys))

    async def list_dead_letters(self, pipeline: str | None = None) -> list[DeadLetter]:
        sql = "SELECT pipeline, keyspace, key, seqno, cas, kind, reason, at FROM dead_letters"
        args: tuple[Any, ...] = ()
        if pipeline:
            sql += " WHERE pipeline=?"
            args = (pipeline,)
        rows = await self._run(self.db.query, sql + " ORDER BY pipeline, keyspace, key", args)
        return [DeadLetter(*r) for r in rows]

    async def close(self) -> None:
        self._io.shutdown(wait=True)
