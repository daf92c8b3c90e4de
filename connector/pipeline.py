"""One pipeline's data flow, stage by stage:

    change event --intake--> extract (filter, template) --> skip if the source hash is unchanged
      --> batch queue (bounded) --encode stage--> encoder on the encode thread
      --> write queue (bounded) --write stage--> CAS-guarded write-back --> progress (checkpoint)

Deletions, and documents that stopped matching the filter, travel the same queues as removals,
so every write for one document happens in change order. A document that cannot be handled is
recorded as a dead letter and the stream goes on. Every method runs on the connector's event
loop; only `Encoder.encode` (and input loading) runs on the encode thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from connector.batching import backoff_delay, next_batch
from connector.config import ConnectorConfig, PipelineConfig
from connector.errors import CbembedError, DocumentError, EncoderError, StorageError
from connector.events import ChangeEvent, Keyspace, PartitionOffset
from connector.extract import Extracted, Extractor
from connector.hashing import pipeline_fingerprint
from connector.progress import PartitionProgress
from connector.storage import (
    Backend,
    Checkpoint,
    DeadLetter,
    PipelineStats,
    PipelineTarget,
    Removal,
    VectorWrite,
    WriteOutcome,
)
from connector.template import lookup
from encoders.base import Encoder

log = logging.getLogger("cbembed.pipeline")

#: turns an extracted payload into what the encoder takes (identity for text; loads images)
InputLoader = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class WorkItem:
    event: ChangeEvent
    extracted: Extracted | None  # None: remove what the pipeline derived


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    items: list[WorkItem]
    vectors: dict[int, np.ndarray]  # item index -> vector
    errors: dict[int, DocumentError]  # item index -> why it could not be encoded
    truncated: int


def _raise_if_systemic(exc: Exception) -> None:
    """An encoder failure no input explains (out of memory, device lost) must stop the run:
    dead-lettering every document would lose them. Checkpoints have not passed them, so a
    restart (by the service manager) picks them up again."""
    name = type(exc).__name__
    if isinstance(exc, MemoryError | SystemError) or name == "OutOfMemoryError" or (
        "CUDA error" in str(exc)
    ):
        raise EncoderError(f"the encoder failed ({name}: {exc}); stopping") from exc


class PipelineWorker:
    def __init__(
        self, config: PipelineConfig, encoder: Encoder, backend: Backend, group: str,
        connector: ConnectorConfig, encode_executor: Executor,
        loader: InputLoader | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.keyspace: Keyspace = config.parsed_keyspace
        self.encoder = encoder
        self.backend = backend
        self.group = group
        self.fingerprint = pipeline_fingerprint(config)
        self.extractor = Extractor(config, self.fingerprint)
        self.target = PipelineTarget(
            config.name, config.vector_field, encoder.model_name, encoder.dimension
        )
        self.stats = PipelineStats()
        self._normalize = config.similarity == "cosine"
        self._loader = loader
        self._cfg = connector
        self._encode_executor = encode_executor
        self._batch_queue: asyncio.Queue[WorkItem] = asyncio.Queue(connector.queue_size)
        self._write_queue: asyncio.Queue[EncodedBatch] = asyncio.Queue(2)
        self._progress: dict[int, PartitionProgress] = {}
        self._start: dict[int, PartitionOffset] = {}
        self._saved: dict[int, PartitionOffset] = {}
        self._dead_keys: set[str] = set()
        self._failed_hashes: dict[str, str] = {}  # key -> source hash that failed to encode
        self._vector_path = tuple(config.vector_field.split("."))
        self._tasks: list[asyncio.Task[None]] = []
        self.finished_count = 0  # changes finished since start (progress bars)
        self.stopped: str | None = None  # why the pipeline stopped (its collection dropped)

    # -- lifecycle ------------------------------------------------------------------------------
    async def load_state(self) -> dict[int, PartitionOffset]:
        """Read checkpoints, stats and dead letters; returns where each partition resumes.

        A checkpoint made with other settings (model, template...) is discarded, so every
        document is looked at again and re-embedded where its hash now differs.
        """
        cps = await self.backend.load_checkpoints(self.group, self.name)
        stale = [vb for vb, cp in cps.items() if cp.fingerprint != self.fingerprint]
        if stale:
            log.warning(
                "pipeline %s: settings changed since the last run; re-reading %d partitions "
                "from the start", self.name, len(stale),
            )
        self._start = {vb: cp.offset for vb, cp in cps.items() if vb not in stale}
        self._saved = dict(self._start)
        self.stats.add(await self.backend.load_stats(self.group, self.name, self._cfg.member))
        self._dead_keys = {
            d.key for d in await self.backend.list_dead_letters(self.name)
            if d.keyspace == str(self.keyspace)
        }
        return dict(self._start)

    def begin(self, partitions: Sequence[int], offsets: dict[int, PartitionOffset]) -> None:
        """Start the encode and write stages. `offsets`: where the feed starts per partition."""
        for vb in partitions:
            start = self._start.get(vb) or offsets[vb]
            self._start[vb] = start
            self._progress[vb] = PartitionProgress(offsets[vb])
        self._tasks = [
            asyncio.create_task(self._encode_stage(), name=f"encode:{self.name}"),
            asyncio.create_task(self._write_stage(), name=f"write:{self.name}"),
        ]

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The encode and write stages (they only end by failing or being cancelled)."""
        return list(self._tasks)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return sum(p.in_flight for p in self._progress.values())

    # -- intake -------------------------------------------------------------------------------
    async def offer(self, ev: ChangeEvent) -> None:
        """Take one change from the feed (in seqno order per partition)."""
        progress = self._progress.get(ev.partition)
        if progress is None or ev.seqno <= progress.last_received:
            return
        progress.received(ev.seqno, ev.snapshot)
        if ev.seqno <= self._start[ev.partition].seqno or ev.keyspace != self.keyspace:
            self._finish(ev)  # finished before the restart, or not our collection
            return
        if ev.is_removal:
            await self._batch_queue.put(WorkItem(ev, None))
            return
        try:
            doc = self.extractor.parse(ev.body or b"")
            if not self.extractor.matches(doc):
                self.stats.skipped_filter += 1
                if self.name in ev.meta:  # it was embedded while it matched
                    await self._batch_queue.put(WorkItem(ev, None))
                else:
                    self._finish(ev)
                return
            extracted = self.extractor.extract(doc)
        except DocumentError as e:
            await self._dead_letter(ev, e)
            self._finish(ev)
            return
        stored = ev.meta.get(self.name)
        if (stored is not None and stored.source_hash == extracted.source_hash
                and self._vector_in_place(doc)):
            self.stats.skipped_unchanged += 1
            self._finish(ev)
            return
        if self._failed_hashes.get(ev.key) == extracted.source_hash:
            # Failed to load or encode before with this very input (an unreachable URL, say):
            # its dead letter stands; try again only when the input changes.
            self.stats.skipped_known_bad += 1
            self._finish(ev)
            return
        await self._batch_queue.put(WorkItem(ev, extracted))

    def _vector_in_place(self, doc: Any) -> bool:
        """Where vectors live in the documents, the hash alone is not enough: an application
        may have rewritten the document without the vector field."""
        if not self.backend.vectors_in_documents:
            return True
        value = lookup(doc, self._vector_path)
        return isinstance(value, list) and len(value) == self.target.dims

    def rolled_back(self, partition: int, offset: PartitionOffset) -> None:
        if partition in self._progress:
            self._progress[partition].reset(offset)
            self._start[partition] = offset

    def seqno_advanced(self, partition: int, seqno: int) -> None:
        if partition in self._progress:
            self._progress[partition].advance_to(seqno)

    # -- encode stage ---------------------------------------------------------------------------
    async def _encode_stage(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await next_batch(
                self._batch_queue, self._cfg.max_batch, self._cfg.max_wait_ms / 1000
            )
            payloads = [(i, it.extracted.payload) for i, it in enumerate(items) if it.extracted]
            vectors: dict[int, np.ndarray] = {}
            errors: dict[int, DocumentError] = {}
            truncated = 0
            if payloads:
                vectors, errors, truncated = await loop.run_in_executor(
                    self._encode_executor, self._encode, payloads
                )
            await self._write_queue.put(EncodedBatch(items, vectors, errors, truncated))

    def _encode(
        self, payloads: list[tuple[int, Any]]
    ) -> tuple[dict[int, np.ndarray], dict[int, DocumentError], int]:
        """Runs on the encode thread: load inputs, encode, isolate failing items."""
        inputs: list[tuple[int, Any]] = []
        errors: dict[int, DocumentError] = {}
        for i, payload in payloads:
            try:
                inputs.append((i, self._loader(payload) if self._loader else payload))
            except DocumentError as e:
                errors[i] = e
        if not inputs:
            return {}, errors, 0
        try:
            res = self.encoder.encode([x for _, x in inputs], normalize=self._normalize)
            return {i: res.vectors[n] for n, (i, _) in enumerate(inputs)}, errors, res.truncated
        except Exception as e:
            _raise_if_systemic(e)
        # One bad input fails the whole batch: encode one by one to find it.
        vectors: dict[int, np.ndarray] = {}
        truncated = 0
        for i, x in inputs:
            try:
                res = self.encoder.encode([x], normalize=self._normalize)
                vectors[i] = res.vectors[0]
                truncated += res.truncated
            except Exception as e:
                _raise_if_systemic(e)
                errors[i] = DocumentError(f"encoder failed on this input: {e}", kind="encode")
        return vectors, errors, truncated

    # -- write stage ----------------------------------------------------------------------------
    async def _write_stage(self) -> None:
        while True:
            batch = await self._write_queue.get()
            await self._write(batch)

    async def _write(self, batch: EncodedBatch) -> None:
        writes: list[tuple[WorkItem, VectorWrite]] = []
        removals: list[Removal] = []
        for i, it in enumerate(batch.items):
            ev = it.event
            if it.extracted is None:
                removals.append(Removal(ev.keyspace, ev.key, ev.cas, ev.is_removal))
            elif i in batch.vectors:
                writes.append((it, VectorWrite(
                    ev.keyspace, ev.key, ev.cas, batch.vectors[i],
                    it.extracted.source_hash, it.extracted.text,
                )))
        outcomes: list[WriteOutcome | DocumentError] = []
        try:
            if writes:
                outcomes = await self._with_retries(
                    lambda: self.backend.write_vectors(self.target, [w for _, w in writes])
                )
            if removals:
                await self._with_retries(
                    lambda: self.backend.remove_vectors(self.target, removals)
                )
        except StorageError as e:
            for it in batch.items:
                await self._dead_letter(it.event, DocumentError(f"write-back failed: {e}",
                                                                kind="write"))
                self._finish(it.event)
            return
        for i, err in batch.errors.items():
            item = batch.items[i]
            await self._dead_letter(item.event, err)
            if item.extracted is not None:
                self._failed_hashes[item.event.key] = item.extracted.source_hash
        cleared: list[str] = []
        for (it, _), outcome in zip(writes, outcomes, strict=True):
            if outcome is WriteOutcome.WRITTEN:
                self.stats.embedded += 1
                if it.event.key in self._dead_keys:
                    cleared.append(it.event.key)
            elif outcome is WriteOutcome.CAS_MISMATCH:
                self.stats.cas_conflicts += 1
            elif isinstance(outcome, DocumentError):
                await self._dead_letter(it.event, outcome)
        self.stats.removed += len(removals)
        # A deleted document, or one that left the filter, has nothing left to fix.
        cleared += [r.key for r in removals if r.key in self._dead_keys]
        self.stats.truncated += batch.truncated
        for key in cleared:
            self._failed_hashes.pop(key, None)
        if cleared:
            await self.backend.clear_dead_letters(self.name, str(self.keyspace), cleared)
            self._dead_keys.difference_update(cleared)
        for it in batch.items:
            self._finish(it.event)

    async def _with_retries(self, op: Callable[[], Any]) -> Any:
        """Retry a temporary storage failure until it succeeds (truncated exponential backoff,
        full jitter). Meanwhile the queues fill and the feed waits: nothing is dropped and no
        checkpoint moves. A permanent failure is raised at once."""
        attempt = 0
        while True:
            try:
                return await op()
            except StorageError as e:
                if not e.retriable:
                    raise
                self.stats.write_retries += 1
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning("pipeline %s: write-back failed (%s); retry %d in <= %.1f s",
                            self.name, e, attempt, delay)
                await asyncio.sleep(random.uniform(0, delay))

    # -- bookkeeping ----------------------------------------------------------------------------
    def _finish(self, ev: ChangeEvent) -> None:
        self._progress[ev.partition].finished(ev.seqno)
        self.finished_count += 1

    async def _dead_letter(self, ev: ChangeEvent, err: CbembedError) -> None:
        self.stats.failed += 1
        kind = getattr(err, "kind", "error")
        log.info("pipeline %s: %s %s: %s", self.name, ev.keyspace, ev.key, err)
        await self.backend.record_dead_letters([DeadLetter(
            self.name, str(ev.keyspace), ev.key, ev.seqno, ev.cas, kind, str(err), time.time()
        )])
        self._dead_keys.add(ev.key)

    def checkpoints(self, failover_log: Callable[[int], tuple[Any, ...]]) -> dict[int, Checkpoint]:
        """Checkpoints of partitions that moved since the last save (dirty only)."""
        out = {}
        for vb, progress in self._progress.items():
            flog = failover_log(vb)
            offset = progress.checkpoint(flog[0].vbuuid if flog else 0)
            if offset.seqno < self._start[vb].seqno:  # the feed started below our checkpoint
                offset = self._start[vb]
            if self._saved.get(vb) != offset:
                out[vb] = Checkpoint(offset, tuple(flog), self.fingerprint)
        return out

    async def save_checkpoints(self, failover_log: Callable[[int], tuple[Any, ...]]) -> None:
        dirty = self.checkpoints(failover_log)
        await self.backend.save_checkpoints(
            self.group, self.name, dirty, self.stats.as_dict(), self._cfg.member
        )
        for vb, cp in dirty.items():
            self._saved[vb] = cp.offset

    def positions(self) -> dict[int, int]:
        return {vb: p.checkpoint(0).seqno for vb, p in self._progress.items()}
