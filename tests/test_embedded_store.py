"""The embedded store behaves like a small Couchbase bucket: CAS, seqnos, a deduplicated feed."""

import asyncio
import zlib
from pathlib import Path

import pytest

from connector.embedded import EmbeddedDatabase, partition_of
from connector.embedded.backend import EmbeddedBackend
from connector.errors import CasMismatch, DocumentExistsError, DocumentNotFoundError
from connector.events import ChangeKind, Keyspace, PartitionOffset
from connector.storage import SourceIdle

KS = "b.s.c"


def test_partition_is_couchbase_vbucket_hash() -> None:
    for key in ["a", "hotel_0001", "ключ", "x" * 300]:
        expected = ((zlib.crc32(key.encode()) >> 16) & 0x7FFF) % 1024
        assert partition_of(key, 1024) == expected
    assert {partition_of(f"k{i}", 64) for i in range(2000)} == set(range(64))


def test_cas_and_seqno_semantics(tmp_path: Path) -> None:
    db = EmbeddedDatabase(tmp_path / "s.db", partitions=8)
    r1 = db.upsert(KS, "k", {"v": 1})
    r2 = db.upsert(KS, "k", {"v": 2})
    assert r2.cas > r1.cas and r2.seqno == r1.seqno + 1 and r1.partition == r2.partition
    assert db.get(KS, "k").value == {"v": 2}
    with pytest.raises(CasMismatch):
        db.replace(KS, "k", {"v": 3}, cas=r1.cas)
    db.replace(KS, "k", {"v": 3}, cas=r2.cas)
    with pytest.raises(DocumentExistsError):
        db.insert(KS, "k", {})
    db.remove(KS, "k")
    with pytest.raises(DocumentNotFoundError):
        db.get(KS, "k")
    db.insert(KS, "k", {"v": "again"})  # a tombstone does not block an insert
    assert db.get(KS, "k").value == {"v": "again"}
    db.upsert(KS, "raw", b"\x00\xffbinary")
    assert db.get(KS, "raw").value == b"\x00\xffbinary"
    db.close()


def test_cas_is_monotonic_across_connections(tmp_path: Path) -> None:
    a = EmbeddedDatabase(tmp_path / "s.db")
    b = EmbeddedDatabase(tmp_path / "s.db")
    cas = [a.upsert(KS, f"k{i}", i).cas if i % 2 else b.upsert(KS, f"k{i}", i).cas
           for i in range(50)]
    assert cas == sorted(cas) and len(set(cas)) == 50


def test_partition_count_is_fixed_per_bucket(tmp_path: Path) -> None:
    EmbeddedDatabase(tmp_path / "s.db", partitions=8).upsert(KS, "k", 1)
    assert EmbeddedDatabase(tmp_path / "s.db", partitions=64).partitions("b") == 8


def collect(db: EmbeddedDatabase, offsets: dict | None = None) -> list:
    async def go() -> list:
        backend = EmbeddedBackend(db, ["b"])
        src = await backend.change_source(
            [Keyspace.parse(KS)], range(db.partitions("b")), poll_interval_s=0.01
        )
        out = []
        async for item in src.stream(offsets or {}):
            if isinstance(item, SourceIdle):
                break
            out.append(item)
        await src.close()
        await backend.close()
        return out

    return asyncio.run(go())


def test_feed_is_ordered_per_partition_and_deduplicated(tmp_path: Path) -> None:
    db = EmbeddedDatabase(tmp_path / "s.db", partitions=4)
    for i in range(40):
        db.upsert(KS, f"k{i}", {"i": i})
    db.upsert(KS, "k0", {"i": "newer"})  # k0's first version is deduplicated away
    db.remove(KS, "k1")
    db.upsert("b.s.other", "x", {})  # another collection: not streamed
    events = collect(db)
    keys = [e.key for e in events]
    assert sorted(keys) == sorted(f"k{i}" for i in range(40))
    by_key = {e.key: e for e in events}
    assert by_key["k0"].body == b'{"i":"newer"}'
    assert by_key["k1"].kind is ChangeKind.DELETION and by_key["k1"].body is None
    for vb in range(4):
        seqnos = [e.seqno for e in events if e.partition == vb]
        assert seqnos == sorted(seqnos)


def test_feed_resumes_after_offsets(tmp_path: Path) -> None:
    db = EmbeddedDatabase(tmp_path / "s.db", partitions=4)
    for i in range(20):
        db.upsert(KS, f"k{i}", i)
    first = collect(db)
    vbuuid = {vb: uuid for vb, uuid in db.query("SELECT vb, vbuuid FROM partitions")}
    offsets = {vb: PartitionOffset.at(max(e.seqno for e in first if e.partition == vb), vbuuid[vb])
               for vb in {e.partition for e in first}}
    assert collect(db, offsets) == []
    db.upsert(KS, "k3", "changed")
    assert [e.key for e in collect(db, offsets)] == ["k3"]


def test_unknown_vbuuid_rolls_back_to_zero(tmp_path: Path) -> None:
    db = EmbeddedDatabase(tmp_path / "s.db", partitions=1)
    db.upsert(KS, "k", 1)
    items = collect(db, {0: PartitionOffset.at(1, vbuuid=12345)})
    assert type(items[0]).__name__ == "PartitionRolledBack"
    assert [e.key for e in items[1:]] == ["k"]
