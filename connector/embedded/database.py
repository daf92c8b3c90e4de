"""The embedded document store: a durable SQLite file with keyspaces, CAS and a change log.

Every write is one SQLite transaction in WAL mode (synchronous=FULL by default), so a process
killed at any moment loses no committed write. A mutation takes the next CAS of its bucket and
the next seqno of its partition, `((crc32(key) >> 16) & 0x7fff) % partitions` as in Couchbase,
and replaces the document's row: the change log is the docs table read by (partition, seqno),
deduplicated the way DCP deduplicates.

Thread safety: one connection per object, guarded by a lock; any thread may call.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.embedded.schema import SCHEMA_VERSION, STATEMENTS
from connector.errors import (
    CasMismatch,
    DocumentExistsError,
    DocumentNotFoundError,
    StorageError,
)
from connector.events import Keyspace


def partition_of(key: str, partitions: int) -> int:
    """Couchbase's vbucket hash: CRC32 of the key, bits 16..30, modulo the partition count."""
    return ((zlib.crc32(key.encode("utf-8")) >> 16) & 0x7FFF) % partitions


@dataclass(frozen=True, slots=True)
class MutationResult:
    cas: int
    seqno: int
    partition: int


@dataclass(frozen=True, slots=True)
class GetResult:
    value: Any
    cas: int


def encode_body(value: Any) -> tuple[str | bytes, int]:
    """Documents are JSON unless given as bytes (a binary document)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), 0
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")), 1


def decode_body(body: str | bytes | None, is_json: int) -> Any:
    if body is None:
        return None
    if is_json:
        return json.loads(body)
    return body.encode() if isinstance(body, str) else bytes(body)


def connect(path: Path, *, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


class EmbeddedDatabase:
    """The embedded store's document API (what the Couchbase SDK's Collection is on a cluster)."""

    def __init__(
        self, path: str | Path, *, partitions: int = 64, synchronous: str = "FULL"
    ) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._default_partitions = partitions
        self._lock = threading.RLock()
        try:
            self._conn = connect(self.path, synchronous=synchronous)
            with self.transaction() as c:
                for stmt in STATEMENTS:
                    c.execute(stmt)
                row = c.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()
                if row is None:
                    c.execute(
                        "INSERT INTO meta(k, v) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                    )
                elif int(row[0]) != SCHEMA_VERSION:
                    raise StorageError(
                        f"{self.path} has schema version {row[0]}, this cbembed expects "
                        f"{SCHEMA_VERSION}"
                    )
        except sqlite3.DatabaseError as e:
            raise StorageError(f"cannot open embedded store {self.path}: {e}") from e
        self._partitions: dict[str, int] = {}

    # -- plumbing -------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the lock; rolls back on any error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def partitions(self, bucket: str) -> int:
        """The partition count of a bucket, fixed when the bucket was first written."""
        n = self._partitions.get(bucket)
        if n is None:
            with self.transaction() as c:
                n = self._ensure_bucket(c, bucket)
        return n

    def _ensure_bucket(self, c: sqlite3.Connection, bucket: str) -> int:
        row = c.execute("SELECT partitions FROM buckets WHERE name=?", (bucket,)).fetchone()
        if row is None:
            n = self._default_partitions
            c.execute(
                "INSERT INTO buckets(name, last_cas, partitions) VALUES (?, 0, ?)", (bucket, n)
            )
            rng = random.SystemRandom()
            c.executemany(
                "INSERT INTO partitions(bucket, vb, vbuuid, high_seqno) VALUES (?, ?, ?, 0)",
                [(bucket, vb, rng.getrandbits(63) or 1) for vb in range(n)],
            )
        else:
            n = int(row[0])
        self._partitions[bucket] = n
        return n

    def _mutate(
        self, c: sqlite3.Connection, ks: Keyspace, key: str, body: str | bytes | None,
        is_json: int, deleted: int,
    ) -> MutationResult:
        n = self._partitions.get(ks.bucket) or self._ensure_bucket(c, ks.bucket)
        vb = partition_of(key, n)
        cas = c.execute(
            "UPDATE buckets SET last_cas = max(last_cas + 1, ?) WHERE name=? RETURNING last_cas",
            (time.time_ns(), ks.bucket),
        ).fetchone()[0]
        seqno = c.execute(
            "UPDATE partitions SET high_seqno = high_seqno + 1 WHERE bucket=? AND vb=? "
            "RETURNING high_seqno",
            (ks.bucket, vb),
        ).fetchone()[0]
        c.execute(
            "INSERT INTO docs(bucket, scope, collection, key, vb, seqno, cas, body, is_json, "
            "deleted) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(bucket, scope, collection, key) "
            "DO UPDATE SET vb=excluded.vb, seqno=excluded.seqno, cas=excluded.cas, "
            "body=excluded.body, is_json=excluded.is_json, deleted=excluded.deleted",
            (ks.bucket, ks.scope, ks.collection, key, vb, seqno, cas, body, is_json, deleted),
        )
        return MutationResult(cas, seqno, vb)

    @staticmethod
    def _current(c: sqlite3.Connection, ks: Keyspace, key: str) -> tuple[int, int] | None:
        """(cas, deleted) of the document's row, None if the key never existed."""
        row = c.execute(
            "SELECT cas, deleted FROM docs WHERE bucket=? AND scope=? AND collection=? AND key=?",
            (ks.bucket, ks.scope, ks.collection, key),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    # -- the document API -------------------------------------------------------------------
    def upsert(self, keyspace: str | Keyspace, key: str, value: Any) -> MutationResult:
        ks = _ks(keyspace)
        body, is_json = encode_body(value)
        with self.transaction() as c:
            return self._mutate(c, ks, key, body, is_json, 0)

    def insert(self, keyspace: str | Keyspace, key: str, value: Any) -> MutationResult:
        ks = _ks(keyspace)
        body, is_json = encode_body(value)
        with self.transaction() as c:
            cur = self._current(c, ks, key)
            if cur is not None and not cur[1]:
                raise DocumentExistsError(f"{ks}: document {key!r} exists")
            return self._mutate(c, ks, key, body, is_json, 0)

    def replace(
        self, keyspace: str | Keyspace, key: str, value: Any, *, cas: int | None = None
    ) -> MutationResult:
        ks = _ks(keyspace)
        body, is_json = encode_body(value)
        with self.transaction() as c:
            self._check(c, ks, key, cas)
            return self._mutate(c, ks, key, body, is_json, 0)

    def remove(
        self, keyspace: str | Keyspace, key: str, *, cas: int | None = None
    ) -> MutationResult:
        ks = _ks(keyspace)
        with self.transaction() as c:
            self._check(c, ks, key, cas)
            return self._mutate(c, ks, key, None, 1, 1)

    def get(self, keyspace: str | Keyspace, key: str) -> GetResult:
        ks = _ks(keyspace)
        rows = self.query(
            "SELECT body, is_json, cas FROM docs WHERE bucket=? AND scope=? AND collection=? "
            "AND key=? AND deleted=0",
            (ks.bucket, ks.scope, ks.collection, key),
        )
        if not rows:
            raise DocumentNotFoundError(f"{ks}: no document {key!r}")
        body, is_json, cas = rows[0]
        return GetResult(decode_body(body, is_json), int(cas))

    def upsert_many(
        self, keyspace: str | Keyspace, items: Iterable[tuple[str, Any]], *, chunk: int = 1000
    ) -> int:
        """Upsert many documents, `chunk` per transaction. Returns how many were written."""
        ks = _ks(keyspace)
        count = 0
        batch: list[tuple[str, Any]] = []

        def flush() -> None:
            with self.transaction() as c:
                for key, value in batch:
                    body, is_json = encode_body(value)
                    self._mutate(c, ks, key, body, is_json, 0)
            batch.clear()

        for item in items:
            batch.append(item)
            count += 1
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
        return count

    def count(self, keyspace: str | Keyspace) -> int:
        ks = _ks(keyspace)
        return int(
            self.query(
                "SELECT count(*) FROM docs WHERE bucket=? AND scope=? AND collection=? "
                "AND deleted=0",
                (ks.bucket, ks.scope, ks.collection),
            )[0][0]
        )

    def _check(self, c: sqlite3.Connection, ks: Keyspace, key: str, cas: int | None) -> None:
        cur = self._current(c, ks, key)
        if cur is None or cur[1]:
            raise DocumentNotFoundError(f"{ks}: no document {key!r}")
        if cas is not None and cas != cur[0]:
            raise CasMismatch(f"{ks}: document {key!r} has changed (CAS {cur[0]}, given {cas})")


def _ks(keyspace: str | Keyspace) -> Keyspace:
    return keyspace if isinstance(keyspace, Keyspace) else Keyspace.parse(keyspace)
