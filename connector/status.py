"""Per-pipeline status: counters, dead letters, checkpoints and lag, read from the storage."""

from __future__ import annotations

from typing import Any

from connector.backends import open_backend
from connector.config import Settings
from connector.events import Keyspace
from connector.storage import DeadLetter


async def dead_letters(settings: Settings, pipeline: str | None = None) -> list[DeadLetter]:
    """The dead letters of one pipeline, or of all (what `cbembed deadletter` prints)."""
    backend = await open_backend(settings)
    try:
        return await backend.list_dead_letters(pipeline)
    finally:
        await backend.close()


async def pipeline_status(settings: Settings) -> list[dict[str, Any]]:
    """What `cbembed status` prints: one entry per configured pipeline.

    Counters are as of the running connector's last checkpoint flush (about every second).
    """
    backend = await open_backend(settings)
    out = []
    try:
        group = settings.connector.group
        partitions = list(range(backend.num_partitions))
        for p in settings.pipelines:
            stats = await backend.load_stats(group, p.name)
            cps = await backend.load_checkpoints(group, p.name)
            dead = await backend.list_dead_letters(p.name)
            source = await backend.change_source(
                [Keyspace.parse(p.keyspace)], partitions, poll_interval_s=1.0
            )
            try:
                lag = await source.lag({vb: cp.offset.seqno for vb, cp in cps.items()})
            finally:
                await source.close()
            out.append({
                "name": p.name,
                "keyspace": p.keyspace,
                "model": p.encoder.model,
                "embedded": stats.get("embedded", 0),
                "skipped_unchanged": stats.get("skipped_unchanged", 0),
                "skipped_filter": stats.get("skipped_filter", 0),
                "failed": stats.get("failed", 0),
                "removed": stats.get("removed", 0),
                "cas_conflicts": stats.get("cas_conflicts", 0),
                "truncated": stats.get("truncated", 0),
                "dead_letters": len(dead),
                "lag": lag,
                "checkpointed_partitions": len(cps),
            })
    finally:
        await backend.close()
    return out
