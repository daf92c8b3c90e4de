"""The embedded store's SQLite schema (WAL, one file).

docs        one row per document and key, tombstones kept (deleted=1): (bucket, vb, seqno) is the
            change log, deduplicated like DCP; `cas` grows strictly in commit order per bucket.
buckets     per bucket: the CAS clock.      partitions  per vbucket: vbuuid and high seqno.
derived     what pipelines wrote: vector, source hash, the extracted text (FTS5 content).
checkpoints per (group, pipeline, vbucket).  stats  per (group, pipeline, member, counter).
dead_letters the documents a pipeline could not handle, with the reason.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

STATEMENTS = [
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS buckets (
        name TEXT PRIMARY KEY, last_cas INTEGER NOT NULL, partitions INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS partitions (
        bucket TEXT NOT NULL, vb INTEGER NOT NULL, vbuuid INTEGER NOT NULL,
        high_seqno INTEGER NOT NULL, PRIMARY KEY (bucket, vb)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS docs (
        id INTEGER PRIMARY KEY, bucket TEXT NOT NULL, scope TEXT NOT NULL,
        collection TEXT NOT NULL, key TEXT NOT NULL, vb INTEGER NOT NULL,
        seqno INTEGER NOT NULL, cas INTEGER NOT NULL, body, is_json INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        UNIQUE (bucket, scope, collection, key))""",
    "CREATE INDEX IF NOT EXISTS docs_by_seqno ON docs (bucket, vb, seqno)",
    "CREATE INDEX IF NOT EXISTS docs_by_cas ON docs (bucket, cas)",
    """CREATE TABLE IF NOT EXISTS derived (
        id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL, doc_id INTEGER NOT NULL,
        source_hash TEXT NOT NULL, model TEXT NOT NULL, dims INTEGER NOT NULL,
        vector BLOB NOT NULL, text TEXT, embedded_at REAL NOT NULL,
        UNIQUE (pipeline, doc_id))""",
    "CREATE INDEX IF NOT EXISTS derived_by_doc ON derived (doc_id)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS derived_fts USING fts5(
        text, content='derived', content_rowid='id', tokenize='porter unicode61')""",
    """CREATE TRIGGER IF NOT EXISTS derived_ai AFTER INSERT ON derived BEGIN
        INSERT INTO derived_fts(rowid, text) VALUES (new.id, new.text); END""",
    """CREATE TRIGGER IF NOT EXISTS derived_ad AFTER DELETE ON derived BEGIN
        INSERT INTO derived_fts(derived_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END""",
    """CREATE TRIGGER IF NOT EXISTS derived_au AFTER UPDATE ON derived BEGIN
        INSERT INTO derived_fts(derived_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO derived_fts(rowid, text) VALUES (new.id, new.text); END""",
    """CREATE TABLE IF NOT EXISTS derived_versions (
        pipeline TEXT PRIMARY KEY, version INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        grp TEXT NOT NULL, pipeline TEXT NOT NULL, vb INTEGER NOT NULL,
        vbuuid INTEGER NOT NULL, seqno INTEGER NOT NULL, snap_start INTEGER NOT NULL,
        snap_end INTEGER NOT NULL, failover_log TEXT NOT NULL, fingerprint TEXT NOT NULL,
        PRIMARY KEY (grp, pipeline, vb)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS stats (
        grp TEXT NOT NULL, pipeline TEXT NOT NULL, member INTEGER NOT NULL, name TEXT NOT NULL,
        value INTEGER NOT NULL, PRIMARY KEY (grp, pipeline, member, name)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        pipeline TEXT NOT NULL, keyspace TEXT NOT NULL, key TEXT NOT NULL,
        seqno INTEGER NOT NULL, cas INTEGER NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL,
        at REAL NOT NULL, PRIMARY KEY (pipeline, keyspace, key)) WITHOUT ROWID""",
]
