"""The pipeline end to end on the embedded store, with the real MiniLM model."""

from __future__ import annotations

import numpy as np
import pytest

from connector.config import EncoderConfig
from connector.embedded import EmbeddedDatabase
from connector.errors import EncoderError
from connector.hashing import pipeline_fingerprint, source_hash
from encoders.registry import register_instance
from tests.conftest import (
    KEYSPACE,
    RacingEncoder,
    dead_letters,
    make_settings,
    run_until_idle,
    stored,
)


def vec(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4")


def test_documents_are_embedded_with_the_models_vectors(settings, db, minilm) -> None:
    docs = {f"p{i}": {"title": f"Product {i}", "body": f"A sturdy item number {i}."}
            for i in range(40)}
    db.upsert_many(KEYSPACE, docs.items())
    summary = run_until_idle(settings)
    assert summary.pipelines["products"]["embedded"] == 40
    out = stored(db)
    assert set(out) == set(docs)
    texts = [f"{d['title']}. {d['body']}" for d in docs.values()]
    expected = minilm.encode(texts, normalize=True).vectors
    for (key, _), want in zip(docs.items(), expected, strict=True):
        got = vec(out[key][1])
        assert got.shape == (384,)
        assert np.allclose(got, want, atol=1e-5)
        assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-5)


def test_unrelated_field_change_re_embeds_nothing(settings, db) -> None:
    db.upsert_many(KEYSPACE, [(f"p{i}", {"title": f"T{i}", "body": "b", "stock": 1})
                              for i in range(10)])
    run_until_idle(settings)
    before = stored(db)
    for i in range(10):
        db.upsert(KEYSPACE, f"p{i}", {"title": f"T{i}", "body": "b", "stock": 99})
    db.upsert(KEYSPACE, "p3", {"title": "T3 renamed", "body": "b", "stock": 5})
    s = run_until_idle(settings).pipelines["products"]
    assert s["skipped_unchanged"] == 9
    assert s["embedded"] == 11  # 10 from the first run (counters persist) + p3
    after = stored(db)
    assert after["p3"] != before["p3"]
    assert all(after[k] == before[k] for k in before if k != "p3")


def test_restart_resumes_without_re_reading(settings, db) -> None:
    db.upsert_many(KEYSPACE, [(f"p{i}", {"title": "t", "body": str(i)}) for i in range(20)])
    run_until_idle(settings)
    s = run_until_idle(settings).pipelines["products"]
    assert s["embedded"] == 20 and s["skipped_unchanged"] == 0  # nothing was looked at again


def test_deletion_removes_the_vector(settings, db) -> None:
    db.upsert_many(KEYSPACE, [("a", {"title": "x", "body": "y"}),
                              ("b", {"title": "z", "body": "w"})])
    run_until_idle(settings)
    db.remove(KEYSPACE, "a")
    s = run_until_idle(settings).pipelines["products"]
    assert set(stored(db)) == {"b"} and s["removed"] == 1


def test_filter_and_leaving_the_filter(tmp_path) -> None:
    settings = make_settings(tmp_path / "f.db", filter={"type": "hotel"})
    db = EmbeddedDatabase(settings.embedded_path, partitions=16)
    db.upsert(KEYSPACE, "h", {"type": "hotel", "title": "Inn", "body": "beds"})
    db.upsert(KEYSPACE, "l", {"type": "landmark", "title": "Tower", "body": "tall"})
    run_until_idle(settings)
    assert set(stored(db)) == {"h"}
    db.upsert(KEYSPACE, "h", {"type": "closed", "title": "Inn", "body": "beds"})
    run_until_idle(settings)
    assert stored(db) == {}  # no longer matching: its vector is removed


def test_bad_documents_become_dead_letters_and_the_stream_goes_on(settings, db) -> None:
    db.upsert(KEYSPACE, "ok1", {"title": "fine", "body": "good"})
    db.upsert(KEYSPACE, "nojson", b"\x89PNG not json")
    db.upsert(KEYSPACE, "missing", {"title": "no body"})
    db.upsert(KEYSPACE, "wrongtype", {"title": "x", "body": {"nested": 1}})
    db.upsert(KEYSPACE, "array", [1, 2, 3])
    db.upsert(KEYSPACE, "ok2", {"title": "also", "body": "fine"})
    s = run_until_idle(settings).pipelines["products"]
    assert set(stored(db)) == {"ok1", "ok2"}
    assert s["failed"] == 4
    letters = {d.key: d for d in dead_letters(settings, "products")}
    assert letters["nojson"].kind == "not_json"
    assert letters["missing"].kind == "missing_field"
    assert "'body' is missing" in letters["missing"].reason
    assert letters["wrongtype"].kind == "wrong_type"
    assert letters["array"].kind == "not_object"
    # Fixing the document clears its dead letter.
    db.upsert(KEYSPACE, "missing", {"title": "no body", "body": "now there is one"})
    run_until_idle(settings)
    assert "missing" in stored(db)
    assert "missing" not in {d.key for d in dead_letters(settings, "products")}
    # Deleting a document clears its dead letter too.
    db.remove(KEYSPACE, "nojson")
    run_until_idle(settings)
    assert {d.key for d in dead_letters(settings, "products")} == {"wrongtype", "array"}


def test_write_during_encoding_never_gets_the_stale_vector(tmp_path, minilm) -> None:
    cfg = EncoderConfig(kind="racing", model="sentence-transformers/all-MiniLM-L6-v2")
    settings = make_settings(tmp_path / "race.db", encoder=cfg.model_dump())
    db = EmbeddedDatabase(settings.embedded_path, partitions=16)
    register_instance(cfg, RacingEncoder(minilm, lambda: db.upsert(
        KEYSPACE, "doc", {"title": "Second version", "body": "red bicycle"})))
    db.upsert(KEYSPACE, "doc", {"title": "First version", "body": "blue kettle"})
    s = run_until_idle(settings).pipelines["products"]
    assert s["cas_conflicts"] == 1  # the first vector was dropped at write-back
    h, raw = stored(db)["doc"]
    fp = pipeline_fingerprint(settings.pipelines[0])
    assert h == source_hash(fp, b"Second version. red bicycle")
    want = minilm.encode(["Second version. red bicycle"], normalize=True).vectors[0]
    assert np.allclose(vec(raw), want, atol=1e-5)


def test_model_change_re_embeds_everything(tmp_path, db) -> None:
    settings = make_settings(tmp_path / "m.db")
    db = EmbeddedDatabase(settings.embedded_path, partitions=16)
    db.upsert_many(KEYSPACE, [(f"p{i}", {"title": "t", "body": str(i)}) for i in range(5)])
    run_until_idle(settings)
    changed = make_settings(tmp_path / "m.db", template="{title}: {body}")
    s = run_until_idle(changed).pipelines["products"]
    assert s["embedded"] == 10 and s["skipped_unchanged"] == 0


def test_group_members_split_partitions_and_together_cover_all(tmp_path) -> None:
    from connector.config import load_settings

    base = make_settings(tmp_path / "g.db")
    db = EmbeddedDatabase(base.embedded_path, partitions=16)
    db.upsert_many(KEYSPACE, [(f"p{i}", {"title": "t", "body": str(i)}) for i in range(60)])
    counts = []
    for member in range(2):
        s = load_settings(
            storage=base.storage, pipelines=[base.pipelines[0].model_dump()],
            embedded={"partitions": 16},
            connector={**base.connector.model_dump(), "group": "g", "member": member,
                       "members": 2},
        )
        counts.append(run_until_idle(s).pipelines["products"]["embedded"])
    assert sum(counts) == 60 and all(c > 0 for c in counts)
    assert len(stored(db)) == 60


class BrokenEncoder(RacingEncoder):
    """Fails in a way no document explains (e.g. the GPU is gone): not a dead letter."""

    def encode(self, inputs, *, normalize: bool):
        raise SystemError("device lost")


def test_a_failing_stage_stops_the_run_instead_of_hanging(tmp_path, minilm) -> None:
    cfg = EncoderConfig(kind="racing", model="sentence-transformers/all-MiniLM-L6-v2",
                        options={"test": "broken"})
    settings = make_settings(tmp_path / "b.db", encoder=cfg.model_dump())
    register_instance(cfg, BrokenEncoder(minilm, lambda: None))
    db = EmbeddedDatabase(settings.embedded_path, partitions=16)
    db.upsert(KEYSPACE, "a", {"title": "x", "body": "y"})
    with pytest.raises(EncoderError, match="device lost"):
        run_until_idle(settings)
    assert stored(db) == {}
    assert dead_letters(settings, "products") == []  # nothing lost as a dead letter


class PickyEncoder(RacingEncoder):
    """The real model, refusing one input the way a model refuses input it cannot handle."""

    def encode(self, inputs, *, normalize: bool):
        if any("POISON" in str(x) for x in inputs):
            raise ValueError("cannot embed this input")
        return self.inner.encode(inputs, normalize=normalize)


def test_an_input_the_model_refuses_is_a_dead_letter_and_its_batch_survives(
    tmp_path, minilm
) -> None:
    cfg = EncoderConfig(kind="racing", model="sentence-transformers/all-MiniLM-L6-v2",
                        options={"test": "picky"})
    settings = make_settings(tmp_path / "p.db", encoder=cfg.model_dump())
    register_instance(cfg, PickyEncoder(minilm, lambda: None))
    db = EmbeddedDatabase(settings.embedded_path, partitions=16)
    db.upsert_many(KEYSPACE, [(f"k{i}", {"title": "t", "body": str(i)}) for i in range(9)]
                   + [("bad", {"title": "POISON", "body": "x"})])
    s = run_until_idle(settings).pipelines["products"]
    assert s["embedded"] == 9 and s["failed"] == 1
    (letter,) = dead_letters(settings, "products")
    assert letter.key == "bad" and letter.kind == "encode"
    assert "cannot embed this input" in letter.reason


def test_temporary_write_failures_are_retried_not_dead_lettered(settings, db) -> None:
    from connector.embedded.backend import EmbeddedBackend
    from connector.errors import StorageError

    class FlakyBackend(EmbeddedBackend):
        """The real embedded backend, unreachable for its first two write-backs."""

        failures = 2

        async def write_vectors(self, target, items):
            if self.failures:
                self.failures -= 1
                raise StorageError("cluster unreachable (simulated outage)")
            return await super().write_vectors(target, items)

    db.upsert_many(KEYSPACE, [(f"k{i}", {"title": "t", "body": str(i)}) for i in range(5)])
    backend = FlakyBackend(EmbeddedDatabase(settings.embedded_path), ["shop"])
    s = run_until_idle(settings, backend=backend).pipelines["products"]
    assert s["embedded"] == 5 and s["write_retries"] == 2 and s["failed"] == 0
    assert len(stored(db)) == 5


def test_an_input_that_failed_is_not_retried_until_it_changes(tmp_path, minilm) -> None:
    import asyncio

    from connector.service import Connector

    cfg = EncoderConfig(kind="racing", model="sentence-transformers/all-MiniLM-L6-v2",
                        options={"test": "picky-2"})
    settings = make_settings(tmp_path / "kb.db", encoder=cfg.model_dump())
    register_instance(cfg, PickyEncoder(minilm, lambda: None))
    db = EmbeddedDatabase(settings.embedded_path, partitions=16)
    db.upsert(KEYSPACE, "bad", {"title": "POISON", "body": "x", "stock": 1})

    async def go() -> dict[str, int]:
        c = Connector(settings)
        task = asyncio.create_task(c.run())
        while not (c.workers and c.workers[0].stats.failed):
            await asyncio.sleep(0.02)
        db.upsert(KEYSPACE, "bad", {"title": "POISON", "body": "x", "stock": 2})  # same input
        while c.workers[0].stats.skipped_known_bad == 0:
            await asyncio.sleep(0.02)
        db.upsert(KEYSPACE, "bad", {"title": "fixed", "body": "x", "stock": 2})  # new input
        while not c.workers[0].stats.embedded:
            await asyncio.sleep(0.02)
        c.stop()
        summary = await task
        await c.close()
        return summary.pipelines["products"]

    s = asyncio.run(asyncio.wait_for(go(), 120))
    assert (s["failed"], s["skipped_known_bad"], s["embedded"]) == (1, 1, 1)
    assert dead_letters(settings, "products") == []
