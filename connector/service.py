"""The connector service: one change feed, one worker per pipeline, periodic checkpoints.

`Connector.run()` wires the stages together on one event loop:

    source.stream(offsets) --> PipelineWorker.offer()  (each pipeline on the bucket)
    apscheduler jobs: checkpoint flush every `checkpoint_interval_s`, status log line,
                      on Couchbase: build deferred vector indexes once there is data

It stops on `stop()` (SIGINT/SIGTERM in the CLI) or, with `until_idle`, once the feed has
delivered everything and every pipeline has finished it; both end with a checkpoint flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from connector.backends import open_backend
from connector.config import Settings
from connector.errors import ConfigError
from connector.events import ZERO_OFFSET, ChangeEvent, PartitionOffset
from connector.inputs import input_loader
from connector.pipeline import PipelineWorker
from connector.storage import (
    Backend,
    ChangeSource,
    KeyspaceDropped,
    PartitionRolledBack,
    SeqnoAdvanced,
    SourceIdle,
)
from encoders.registry import load_encoder

log = logging.getLogger("cbembed.service")


@dataclass
class RunSummary:
    #: per pipeline, the counters in total (they persist across runs, per group member)
    pipelines: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    #: per pipeline, what this run alone did
    this_run: dict[str, dict[str, int]] = field(default_factory=dict)


class Connector:
    """Runs the configured pipelines against the configured storage."""

    def __init__(self, settings: Settings, *, backend: Backend | None = None) -> None:
        if not settings.pipelines:
            raise ConfigError([("pipelines", "no pipeline is configured")])
        self.settings = settings
        self._backend = backend
        self._stop = asyncio.Event()
        self._encode_executor = ThreadPoolExecutor(1, thread_name_prefix="cbembed-encode")
        self.workers: list[PipelineWorker] = []
        self.source: ChangeSource | None = None
        self.initial_lag = 0

    def stop(self) -> None:
        """Ask the run to end (thread-unsafe: call on the connector's loop)."""
        self._stop.set()

    @property
    def owned_partitions(self) -> list[int]:
        assert self._backend is not None
        c = self.settings.connector
        return [vb for vb in range(self._backend.num_partitions) if vb % c.members == c.member]

    async def _prepare(self) -> dict[int, PartitionOffset]:
        s = self.settings
        if self._backend is None:
            self._backend = await open_backend(s)
        loop = asyncio.get_running_loop()
        partitions = self.owned_partitions
        for p in s.pipelines:
            # Models load on the encode thread: torch stays on that one thread.
            encoder = await loop.run_in_executor(self._encode_executor, load_encoder, p.encoder)
            self.workers.append(PipelineWorker(
                p, encoder, self._backend, s.connector.group, s.connector,
                self._encode_executor, input_loader(p, encoder),
            ))
        self.source = await self._backend.change_source(
            [w.keyspace for w in self.workers], partitions,
            poll_interval_s=s.connector.poll_interval_s,
        )
        now = await self.source.current_positions(partitions)
        starts: dict[int, PartitionOffset] = {}
        for w in self.workers:
            saved = await w.load_state()
            for vb in partitions:
                if vb not in saved and s.connector.start_from == "now":
                    saved[vb] = now[vb]
                off = saved.get(vb, ZERO_OFFSET)
                if vb not in starts or off.seqno < starts[vb].seqno:
                    starts[vb] = off
        for w in self.workers:
            w.begin(partitions, starts)
        self.initial_lag = await self.source.lag({vb: o.seqno for vb, o in starts.items()})
        return starts

    async def flush(self) -> None:
        """Save every pipeline's checkpoints and counters (dirty partitions only)."""
        assert self.source is not None
        for w in self.workers:
            await w.save_checkpoints(self.source.failover_log)

    def _log_status(self) -> None:
        for w in self.workers:
            log.info("pipeline %s: %s in flight, %s", w.name, w.in_flight, w.stats.as_dict())

    @property
    def stopped(self) -> dict[str, str]:
        return {w.name: w.stopped for w in self.workers if w.stopped}

    @property
    def finished(self) -> int:
        return sum(w.finished_count for w in self.workers)

    async def _intake(self, until_idle: bool, offsets: dict[int, PartitionOffset]) -> None:
        assert self.source is not None
        changes_since_idle = 0
        async for item in self.source.stream(offsets):
            if isinstance(item, ChangeEvent):
                changes_since_idle += 1
                for w in self.workers:
                    await w.offer(item)
            elif isinstance(item, SourceIdle):
                if not until_idle:
                    continue
                if changes_since_idle == 0 and not any(w.in_flight for w in self.workers):
                    return  # drained, and the source found nothing new after that
                # Finish what is in flight, then let the source look once more: finishing
                # may have raced with new writes (a CAS conflict means a newer change exists).
                while any(w.in_flight for w in self.workers):
                    await asyncio.sleep(0.01)
                changes_since_idle = 0
            elif isinstance(item, PartitionRolledBack):
                log.warning("partition %d rolled back to %s", item.partition,
                            item.offset.describe())
                for w in self.workers:
                    w.rolled_back(item.partition, item.offset)
            elif isinstance(item, SeqnoAdvanced):
                for w in self.workers:
                    w.seqno_advanced(item.partition, item.seqno)
            elif isinstance(item, KeyspaceDropped):
                for w in self.workers:
                    if w.keyspace == item.keyspace and w.stopped is None:
                        w.stopped = "collection dropped"
                        log.error("pipeline %s stops: its collection %s was dropped",
                                  w.name, item.keyspace)
                if all(w.stopped for w in self.workers):
                    return

    async def run(
        self, *, until_idle: bool = False, on_progress: Callable[[Connector], None] | None = None
    ) -> RunSummary:
        loop = asyncio.get_running_loop()
        started = loop.time()
        offsets = await self._prepare()
        before = {w.name: w.stats.as_dict() for w in self.workers}
        c = self.settings.connector
        scheduler = AsyncIOScheduler(event_loop=loop)
        scheduler.add_job(self.flush, "interval", seconds=c.checkpoint_interval_s,
                          max_instances=1, coalesce=True, id="checkpoint-flush")
        scheduler.add_job(self._log_status, "interval", seconds=c.status_interval_s,
                          id="status")
        if on_progress is not None:
            scheduler.add_job(on_progress, "interval", seconds=0.2, args=[self], id="progress")
        if not self.settings.is_embedded:
            self._add_index_build_job(scheduler)
        scheduler.start()
        intake = asyncio.create_task(self._intake(until_idle, offsets), name="intake")
        stopper = asyncio.create_task(self._stop.wait(), name="stop")
        try:
            stages = {t for w in self.workers for t in w.tasks}
            done, _ = await asyncio.wait(
                {intake, stopper, *stages}, return_when=asyncio.FIRST_COMPLETED
            )
            for t in done & ({intake} | stages):
                t.result()  # re-raise a failure of the feed or of a stage (a bug: fail fast)
        finally:
            scheduler.shutdown(wait=False)
            for t in (intake, stopper):
                t.cancel()
            await asyncio.gather(intake, stopper, return_exceptions=True)
            for w in self.workers:
                await w.stop()
            if self.source is not None:
                await self.flush()
                await self.source.close()
            if on_progress is not None:
                on_progress(self)
        totals = {w.name: w.stats.as_dict() for w in self.workers}
        this_run = {
            name: {k: v - before[name].get(k, 0) for k, v in counters.items()}
            for name, counters in totals.items()
        }
        return RunSummary(totals, loop.time() - started, this_run)

    def _add_index_build_job(self, scheduler: AsyncIOScheduler) -> None:
        """Couchbase only: build deferred GSI vector indexes once their collection holds enough
        documents to train on (connector.couchbase.index_manager)."""
        cluster = getattr(self._backend, "cluster", None)
        if cluster is None or all(p.index.gsi == "none" for p in self.settings.pipelines):
            return
        from connector.couchbase.index_manager import (
            BUILD_CHECK_INTERVAL_S,
            build_deferred_indexes,
        )

        dims = {w.name: w.encoder.dimension for w in self.workers}
        scheduler.add_job(build_deferred_indexes, "interval", seconds=BUILD_CHECK_INTERVAL_S,
                          args=[cluster, self.settings.pipelines, dims, set()],
                          max_instances=1, coalesce=True, id="vector-index-build")

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()
        self._encode_executor.shutdown(wait=True)


def run_until_idle(settings: Settings, *, backend: Backend | None = None) -> RunSummary:
    """Run the connector until every existing change is embedded, then return (a 'once' mode
    for scripts and tests; not for use inside a running event loop)."""

    async def go() -> RunSummary:
        connector = Connector(settings, backend=backend)
        try:
            return await connector.run(until_idle=True)
        finally:
            await connector.close()

    return asyncio.run(go())
