"""Open the backend a storage URL names: `embedded://PATH` or a Couchbase connection string."""

from __future__ import annotations

from connector.config import Settings
from connector.embedded.backend import EmbeddedBackend
from connector.embedded.database import EmbeddedDatabase
from connector.storage import Backend


def open_embedded(settings: Settings) -> EmbeddedDatabase:
    return EmbeddedDatabase(
        settings.embedded_path,
        partitions=settings.embedded.partitions,
        synchronous=settings.embedded.synchronous,
    )


async def open_backend(settings: Settings) -> Backend:
    if settings.is_embedded:
        buckets = [p.parsed_keyspace.bucket for p in settings.pipelines]
        return EmbeddedBackend(open_embedded(settings), buckets)
    from connector.couchbase.backend import CouchbaseBackend

    return await CouchbaseBackend.open(settings)
