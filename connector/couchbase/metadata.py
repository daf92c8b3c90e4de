"""cbembed's own documents in the metadata collection (default `<bucket>.cbembed.meta`).

    ckpt::<group>::<vb>        {"group", "vb", "failover_log": [[uuid, seqno]...],
                                "pipelines": {"<name>": {"seqno", "snap_start", "snap_end",
                                                          "fingerprint"}}}
    stats::<group>::<pipeline> {"members": {"<member>": {"embedded": n, ...}}}
    dead::<pipeline>           {"letters": {"<key>": {"keyspace", "seqno", "cas", "kind",
                                                       "reason", "at"}}}

Every write is a sub-document upsert of one path, so members and pipelines never overwrite
each other's parts. These documents live outside the watched collections, so they never reach
a pipeline. Called on the connector's loop through acouchbase.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from connector.errors import StorageError
from connector.events import FailoverEntry, PartitionOffset, Snapshot
from connector.storage import Checkpoint, DeadLetter


def escape_path(segment: str) -> str:
    """A document key as one sub-document path segment (backtick-quoted)."""
    return "`" + segment.replace("`", "``") + "`"


class MetadataStore:
    def __init__(self, collection: Any, concurrency: int = 32) -> None:
        self._coll = collection
        self._gate = asyncio.Semaphore(concurrency)

    async def _get(self, key: str) -> dict[str, Any] | None:
        from couchbase.exceptions import CouchbaseException, DocumentNotFoundException

        async with self._gate:
            try:
                return dict((await self._coll.get(key)).content_as[dict])
            except DocumentNotFoundException:
                return None
            except CouchbaseException as e:
                raise StorageError(f"reading metadata document {key!r}: {e}") from e

    async def _upsert_paths(self, key: str, paths: Mapping[str, Any]) -> None:
        import couchbase.subdocument as SD
        from couchbase.exceptions import CouchbaseException
        from couchbase.options import MutateInOptions
        from couchbase.subdocument import StoreSemantics

        specs = [SD.upsert(p, v, create_parents=True) for p, v in paths.items()]
        async with self._gate:
            try:
                await self._coll.mutate_in(
                    key, specs, MutateInOptions(store_semantics=StoreSemantics.UPSERT)
                )
            except CouchbaseException as e:
                raise StorageError(f"writing metadata document {key!r}: {e}") from e

    # -- checkpoints -----------------------------------------------------------------------------
    async def load_checkpoints(
        self, group: str, pipeline: str, partitions: Sequence[int]
    ) -> dict[int, Checkpoint]:
        docs = await asyncio.gather(*(self._get(f"ckpt::{group}::{vb}") for vb in partitions))
        out = {}
        for vb, doc in zip(partitions, docs, strict=True):
            if not doc or pipeline not in doc.get("pipelines", {}):
                continue
            p = doc["pipelines"][pipeline]
            log = tuple(FailoverEntry(int(u), int(s)) for u, s in doc.get("failover_log", []))
            offset = PartitionOffset(log[0].vbuuid if log else 0, int(p["seqno"]),
                                     Snapshot(int(p["snap_start"]), int(p["snap_end"])))
            out[vb] = Checkpoint(offset, log, str(p.get("fingerprint", "")))
        return out

    async def save_checkpoints(
        self, group: str, pipeline: str, checkpoints: Mapping[int, Checkpoint]
    ) -> None:
        await asyncio.gather(*(
            self._upsert_paths(f"ckpt::{group}::{vb}", {
                "group": group, "vb": vb,
                "failover_log": [[e.vbuuid, e.seqno] for e in cp.failover_log],
                f"pipelines.{escape_path(pipeline)}": {
                    "seqno": cp.offset.seqno, "snap_start": cp.offset.snapshot.start,
                    "snap_end": cp.offset.snapshot.end, "fingerprint": cp.fingerprint,
                },
            })
            for vb, cp in checkpoints.items()
        ))

    # -- stats -----------------------------------------------------------------------------------
    async def save_stats(
        self, group: str, pipeline: str, member: int, stats: Mapping[str, int]
    ) -> None:
        await self._upsert_paths(f"stats::{group}::{pipeline}",
                                 {f"members.{escape_path(str(member))}": dict(stats)})

    async def load_stats(self, group: str, pipeline: str, member: int | None) -> dict[str, int]:
        doc = await self._get(f"stats::{group}::{pipeline}") or {}
        members: dict[str, dict[str, int]] = doc.get("members", {})
        picked = [members.get(str(member), {})] if member is not None else members.values()
        total: dict[str, int] = {}
        for counters in picked:
            for k, v in counters.items():
                total[k] = total.get(k, 0) + int(v)
        return total

    # -- dead letters ----------------------------------------------------------------------------
    async def record_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        for d in letters:
            await self._upsert_paths(f"dead::{d.pipeline}", {
                f"letters.{escape_path(d.key)}": {
                    "keyspace": d.keyspace, "seqno": d.seqno, "cas": d.cas, "kind": d.kind,
                    "reason": d.reason, "at": d.at,
                },
            })

    async def clear_dead_letters(self, pipeline: str, keys: Sequence[str]) -> None:
        import couchbase.subdocument as SD
        from couchbase.exceptions import CouchbaseException, PathNotFoundException

        for key in keys:
            async with self._gate:
                try:
                    await self._coll.mutate_in(
                        f"dead::{pipeline}", [SD.remove(f"letters.{escape_path(key)}")]
                    )
                except PathNotFoundException:
                    pass
                except CouchbaseException as e:
                    if type(e).__name__ != "DocumentNotFoundException":
                        raise StorageError(f"clearing dead letter {key!r}: {e}") from e

    async def list_dead_letters(self, pipelines: Sequence[str]) -> list[DeadLetter]:
        out = []
        for name in pipelines:
            doc = await self._get(f"dead::{name}") or {}
            for key, d in sorted(doc.get("letters", {}).items()):
                out.append(DeadLetter(name, d["keyspace"], key, int(d["seqno"]), int(d["cas"]),
                                      d["kind"], d["reason"], float(d["at"])))
        return out
