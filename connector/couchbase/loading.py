"""`cbembed load` against Couchbase: upsert JSON documents through the SDK, concurrently."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

from connector.config import Settings
from connector.couchbase import sdk
from connector.errors import StorageError
from connector.events import Keyspace


def load_documents(
    settings: Settings, ks: Keyspace, docs: Iterable[tuple[str, Any]], *, progress: bool = True,
    chunk: int = 500,
) -> int:
    from couchbase.exceptions import CouchbaseException

    cluster = sdk.connect_sync(settings)
    coll = sdk.collection(cluster, ks)
    n = 0
    batch: dict[str, Any] = {}
    bar = tqdm(desc=f"loading into {ks}", unit="doc", disable=not progress)

    def flush() -> None:
        res = coll.upsert_multi(batch)
        if not res.all_ok:
            first = next(iter(res.exceptions.items()))
            raise StorageError(f"{len(res.exceptions)} upserts failed, e.g. {first[0]}: "
                               f"{first[1]}")
        bar.update(len(batch))
        batch.clear()

    try:
        for key, doc in docs:
            batch[key] = doc
            n += 1
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
    except CouchbaseException as e:
        raise StorageError(f"loading into {ks}: {e}") from e
    finally:
        bar.close()
        cluster.close()
    return n
