"""Search on the embedded store over the bundled travel corpus, with the real MiniLM model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from connector.config import load_settings
from connector.demo.config import DEMO_KEYSPACE, data_file
from connector.embedded import EmbeddedDatabase
from connector.errors import SearchError
from connector.search import Searcher
from tests.conftest import run_until_idle


@pytest.fixture(scope="module")
def searcher(tmp_path_factory: pytest.TempPathFactory) -> Searcher:
    db_path = tmp_path_factory.mktemp("search") / "travel.db"
    settings = load_settings(
        storage=f"embedded://{db_path}",
        pipelines=[{"name": "travel", "keyspace": DEMO_KEYSPACE,
                    "template": "{name}. {description}"}],
        connector={"max_wait_ms": 5, "poll_interval_s": 0.02},
    )
    db = EmbeddedDatabase(db_path)
    docs = [json.loads(line) for line in data_file("travel.jsonl").open()]
    db.upsert_many(DEMO_KEYSPACE, [(d["id"], d) for d in docs])
    run_until_idle(settings)
    s = Searcher.from_settings(settings)
    yield s
    s.close()


def judged() -> list[dict]:
    return [json.loads(line) for line in data_file("queries.jsonl").open()]


def quality(searcher: Searcher, mode: str, k: int = 10) -> tuple[float, float]:
    """(recall@k, MRR@k) over the judged queries."""
    found = total = 0
    rr = 0.0
    for q in judged():
        ids = [h.id for h in searcher.search(mode, q["query"], k=k)]
        rel = set(q["relevant"])
        found += len(set(ids) & rel)
        total += len(rel)
        rr += next((1 / (i + 1) for i, d in enumerate(ids) if d in rel), 0.0)
    return found / total, rr / len(judged())


def test_hybrid_ranks_better_than_either_leg(searcher: Searcher) -> None:
    q = {m: quality(searcher, m) for m in ("keyword", "vector", "hybrid")}
    assert q["hybrid"][1] > max(q["keyword"][1], q["vector"][1]), q  # MRR
    assert q["hybrid"][0] > 0.6, q  # recall@10


def test_meaning_only_query_found_by_vector_leg(searcher: Searcher) -> None:
    q = next(q for q in judged() if q["qid"] == "q11")
    hits = searcher.hybrid(q["query"], k=10)
    assert {h.id for h in hits} & set(q["relevant"])


def test_hybrid_hits_carry_per_leg_ranks(searcher: Searcher) -> None:
    hits = searcher.hybrid("Kyoto ryokan", k=5, fields=["name", "city"])
    assert hits[0].fields["city"] == "Kyoto"
    assert all(h.ranks and set(h.ranks) <= {"keyword", "vector"} for h in hits)
    assert any(len(h.ranks) == 2 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_filters_apply_to_both_legs(searcher: Searcher) -> None:
    for mode in ("keyword", "vector", "hybrid"):
        hits = searcher.search(mode, "beach", k=20, filter={"type": "landmark"},
                               fields=["type"])
        assert hits and all(h.fields["type"] == "landmark" for h in hits)
    rich = searcher.hybrid("hotel", k=20, filter={"rating": {"gte": 4.8}}, fields=["rating"])
    assert rich and all(h.fields["rating"] >= 4.8 for h in rich)


def test_vector_by_raw_vector_and_whole_documents(searcher: Searcher) -> None:
    enc = searcher.encoder(searcher.settings.pipeline(None))
    qv = enc.encode_query("ski chalet", normalize=True)
    a = searcher.vector(qv, k=3, include_document=True)
    b = searcher.vector("ski chalet", k=3)
    assert [h.id for h in a] == [h.id for h in b]
    assert a[0].document["id"] == a[0].id
    with pytest.raises(SearchError, match="384"):
        searcher.vector(np.ones(10, dtype=np.float32), k=3)


def test_bad_k_and_mode(searcher: Searcher) -> None:
    with pytest.raises(SearchError, match="k must be"):
        searcher.keyword("x", k=0)
    with pytest.raises(SearchError, match="unknown search mode"):
        searcher.search("fuzzy", "x")  # type: ignore[arg-type]
    assert searcher.keyword("!!!", k=3) == []  # no words: no keyword hits, no syntax error


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    s = load_settings(storage=f"embedded://{tmp_path}/none.db",
                      pipelines=[{"name": "p", "keyspace": "a.b.c", "template": "{x}"}])
    with pytest.raises(SearchError, match="does not exist"):
        Searcher.from_settings(s)
