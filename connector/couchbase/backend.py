"""The Couchbase backend: our DCP client for the feed, the SDK (acouchbase) for write-back.

Write-back is one sub-document mutation per document, guarded by the CAS of the change it was
computed from: the vector into the body (`vector_field`), the pipeline's metadata into the
`meta_xattr` extended attribute, atomically. That write is itself a change on the feed; the
pipeline skips it because the source hash in the xattr matches. Everything runs on the
connector's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from connector.config import Settings
from connector.couchbase import sdk
from connector.couchbase.feed import DcpFeed
from connector.couchbase.metadata import MetadataStore
from connector.couchbase.xattrs import meta_path, meta_value, vector_json
from connector.dcp import DcpClient, DcpSettings
from connector.errors import ConfigError, DocumentError, StorageError
from connector.events import Keyspace
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

log = logging.getLogger("cbembed.couchbase")


def dcp_settings(settings: Settings, bucket: str) -> DcpSettings:
    c = settings.connector
    cb = settings.couchbase
    return DcpSettings(
        connection_string=settings.storage, username=cb.username,
        password=cb.password.get_secret_value(), bucket=bucket,
        connection_name=f"cbembed/{c.group}/{c.member}-of-{c.members}",
        ca_cert=str(cb.ca_cert) if cb.ca_cert else None, buffer_size=cb.dcp_buffer_bytes,
        noop_interval_s=cb.dcp_noop_interval_s, sasl_mechanism=cb.sasl_mechanism,
        connect_timeout_s=cb.timeout_s, request_timeout_s=cb.timeout_s,
    )


class CouchbaseBackend(Backend):
    vectors_in_documents = True

    def __init__(self, settings: Settings, cluster: Any, metadata: MetadataStore,
                 num_partitions: int) -> None:
        self.settings = settings
        self.cluster = cluster
        self.metadata = metadata
        self._partitions = num_partitions
        self._xattr = settings.couchbase.meta_xattr
        self._gate = asyncio.Semaphore(settings.couchbase.write_concurrency)

    @classmethod
    async def open(cls, settings: Settings) -> CouchbaseBackend:
        buckets = {p.parsed_keyspace.bucket for p in settings.pipelines}
        if len(buckets) > 1:
            raise ConfigError([("pipelines", f"one connector streams one bucket; got "
                                f"{sorted(buckets)}")])
        cluster = await sdk.connect_async(settings)
        meta_ks = sdk.metadata_keyspace(settings)
        await ensure_collection(cluster, meta_ks)
        probe = DcpClient(dcp_settings(settings, meta_ks.bucket))
        await probe.connect()
        n = probe.num_vbuckets
        await probe.close()
        metadata = MetadataStore(sdk.collection(cluster, meta_ks),
                                 settings.couchbase.write_concurrency)
        return cls(settings, cluster, metadata, n)

    @property
    def num_partitions(self) -> int:
        return self._partitions

    async def change_source(
        self, keyspaces: Sequence[Keyspace], partitions: Sequence[int], *, poll_interval_s: float
    ) -> ChangeSource:
        bucket = keyspaces[0].bucket
        client = DcpClient(dcp_settings(self.settings, bucket))
        await client.connect()
        names = sorted({f"{k.scope}.{k.collection}" for k in keyspaces})
        await client.collection_ids(names)  # a clear error now if one does not exist
        return DcpFeed(client, keyspaces, partitions, meta_xattr=self._xattr,
                       poll_interval_s=poll_interval_s,
                       queue_size=self.settings.connector.queue_size)

    # -- write-back ------------------------------------------------------------------------------
    async def _write_one(self, target: PipelineTarget, it: VectorWrite
                         ) -> WriteOutcome | DocumentError:
        import couchbase.subdocument as SD
        from couchbase.exceptions import (
            CasMismatchException,
            CouchbaseException,
            DocumentNotFoundException,
        )
        from couchbase.options import MutateInOptions

        specs = [
            SD.upsert(target.vector_field, vector_json(it.vector), create_parents=True),
            SD.upsert(meta_path(self._xattr, target.name),
                      meta_value(it.source_hash, target.model, target.dims, target.vector_field),
                      xattr=True, create_parents=True),
        ]
        coll = sdk.collection(self.cluster, it.keyspace)
        async with self._gate:
            try:
                await coll.mutate_in(it.key, specs, MutateInOptions(cas=it.cas))
            except CasMismatchException:
                return WriteOutcome.CAS_MISMATCH
            except DocumentNotFoundException:
                return WriteOutcome.NOT_FOUND
            except CouchbaseException as e:
                if sdk.is_temporary(e):
                    raise StorageError(f"write-back of {it.key!r}: {e}") from e
                return DocumentError(f"write-back refused: {type(e).__name__}: {e}",
                                     kind="write")
        return WriteOutcome.WRITTEN

    async def write_vectors(
        self, target: PipelineTarget, items: Sequence[VectorWrite]
    ) -> list[WriteOutcome | DocumentError]:
        return list(await asyncio.gather(*(self._write_one(target, it) for it in items)))

    async def _remove_one(self, target: PipelineTarget, it: Removal) -> None:
        import couchbase.subdocument as SD
        from couchbase.exceptions import (
            CasMismatchException,
            CouchbaseException,
            DocumentNotFoundException,
            PathNotFoundException,
        )
        from couchbase.options import MutateInOptions

        if it.document_deleted:
            return  # the vector was in the document's body: it went with it
        coll = sdk.collection(self.cluster, it.keyspace)
        for spec in (SD.remove(target.vector_field),
                     SD.remove(meta_path(self._xattr, target.name), xattr=True)):
            async with self._gate:
                try:
                    res = await coll.mutate_in(it.key, [spec], MutateInOptions(cas=it.cas))
                    it = Removal(it.keyspace, it.key, res.cas)  # the second op follows the first
                except (CasMismatchException, DocumentNotFoundException):
                    return  # a newer change exists: it decides
                except PathNotFoundException:
                    continue
                except CouchbaseException as e:
                    if sdk.is_temporary(e):
                        raise StorageError(f"removing the vector of {it.key!r}: {e}") from e
                    log.warning("could not remove the vector of %s: %s", it.key, e)
                    return

    async def remove_vectors(self, target: PipelineTarget, items: Sequence[Removal]) -> None:
        await asyncio.gather(*(self._remove_one(target, it) for it in items))

    # -- metadata --------------------------------------------------------------------------------
    async def load_checkpoints(self, group: str, pipeline: str) -> dict[int, Checkpoint]:
        return await self.metadata.load_checkpoints(group, pipeline, range(self._partitions))

    async def save_checkpoints(
        self, group: str, pipeline: str, checkpoints: Mapping[int, Checkpoint],
        stats: Mapping[str, int], member: int = 0,
    ) -> None:
        await self.metadata.save_checkpoints(group, pipeline, checkpoints)
        await self.metadata.save_stats(group, pipeline, member, stats)

    async def load_stats(
        self, group: str, pipeline: str, member: int | None = None
    ) -> dict[str, int]:
        return await self.metadata.load_stats(group, pipeline, member)

    async def record_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        await self.metadata.record_dead_letters(letters)

    async def clear_dead_letters(self, pipeline: str, keyspace: str, keys: Sequence[str]) -> None:
        await self.metadata.clear_dead_letters(pipeline, keys)

    async def list_dead_letters(self, pipeline: str | None = None) -> list[DeadLetter]:
        names = [pipeline] if pipeline else [p.name for p in self.settings.pipelines]
        return await self.metadata.list_dead_letters(names)

    async def close(self) -> None:
        await self.cluster.close()


async def ensure_collection(cluster: Any, ks: Keyspace) -> None:
    """Create the metadata scope/collection when missing (needs Manage Scopes); otherwise say
    exactly what to create."""
    from couchbase.exceptions import (
        CollectionAlreadyExistsException,
        CouchbaseException,
        ScopeAlreadyExistsException,
    )

    mgr = cluster.bucket(ks.bucket).collections()
    try:
        scopes = await mgr.get_all_scopes()
        if any(s.name == ks.scope and any(c.name == ks.collection for c in s.collections)
               for s in scopes):
            return
        with contextlib.suppress(ScopeAlreadyExistsException):
            await mgr.create_scope(ks.scope)
        with contextlib.suppress(CollectionAlreadyExistsException):
            await mgr.create_collection(ks.scope, ks.collection)
    except CouchbaseException as e:
        raise StorageError(
            f"the metadata collection {ks} is missing and could not be created ({e}); create "
            "it, or set couchbase.metadata_keyspace to an existing collection"
        ) from e
