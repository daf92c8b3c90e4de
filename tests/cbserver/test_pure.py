"""Table tests for the server's pure parts: subdoc paths, rollback decisions, search scoring."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cbserver import search_engine as se
from tests.cbserver import subdoc_paths as sp
from tests.cbserver.protocol import Opcode, Status, leb128_decode, leb128_encode, vbucket_of
from tests.cbserver.rollback import needs_rollback


@pytest.mark.parametrize(("path", "expected"), [
    ("", []),
    ("a", ["a"]),
    ("a.b[0].c", ["a", "b", 0, "c"]),
    ("arr[-1]", ["arr", -1]),
    ("`dot.ted`.x", ["dot.ted", "x"]),
    ("`back``tick`", ["back`tick"]),
    ("m[1][2]", ["m", 1, 2]),
])
def test_parse_path(path: str, expected: list[Any]) -> None:
    assert sp.parse_path(path) == expected


@pytest.mark.parametrize("path", ["a..b", ".a", "a.", "a[x]", "a[-2]", "a[1", "`open"])
def test_parse_path_invalid(path: str) -> None:
    with pytest.raises(sp.SubdocError) as err:
        sp.parse_path(path)
    assert err.value.status == Status.SUBDOC_PATH_EINVAL


@pytest.mark.parametrize(("op", "doc", "path", "value", "mkdir", "result"), [
    (Opcode.SUBDOC_DICT_UPSERT, {}, "a", b"1", False, {"a": 1}),
    (Opcode.SUBDOC_DICT_UPSERT, {}, "a.b", b"1", True, {"a": {"b": 1}}),
    (Opcode.SUBDOC_DICT_ADD, {"a": 1}, "b", b'"x"', False, {"a": 1, "b": "x"}),
    (Opcode.SUBDOC_REPLACE, {"a": [1, 2]}, "a[-1]", b"3", False, {"a": [1, 3]}),
    (Opcode.SUBDOC_DELETE, {"a": 1, "b": 2}, "a", b"", False, {"b": 2}),
    (Opcode.SUBDOC_ARRAY_PUSH_LAST, {"a": [1]}, "a", b"2,3", False, {"a": [1, 2, 3]}),
    (Opcode.SUBDOC_ARRAY_PUSH_FIRST, {"a": [1]}, "a", b"0", False, {"a": [0, 1]}),
    (Opcode.SUBDOC_ARRAY_INSERT, {"a": [1, 3]}, "a[1]", b"2", False, {"a": [1, 2, 3]}),
    (Opcode.SUBDOC_ARRAY_ADD_UNIQUE, {"a": [1]}, "a", b"2", False, {"a": [1, 2]}),
    (Opcode.SUBDOC_COUNTER, {"n": 1}, "n", b"5", False, {"n": 6}),
])
def test_mutations(op: int, doc: Any, path: str, value: bytes, mkdir: bool, result: Any) -> None:
    new, _ = sp.mutate(op, doc, sp.parse_path(path), value, mkdir)
    assert new == result


@pytest.mark.parametrize(("op", "doc", "path", "value", "status"), [
    (Opcode.SUBDOC_DICT_UPSERT, {}, "a.b", b"1", Status.SUBDOC_PATH_ENOENT),
    (Opcode.SUBDOC_DICT_ADD, {"a": 1}, "a", b"2", Status.SUBDOC_PATH_EEXISTS),
    (Opcode.SUBDOC_DICT_UPSERT, {"a": 1}, "a.b", b"2", Status.SUBDOC_PATH_MISMATCH),
    (Opcode.SUBDOC_REPLACE, {}, "a", b"2", Status.SUBDOC_PATH_ENOENT),
    (Opcode.SUBDOC_DICT_UPSERT, {}, "a", b"{bad", Status.SUBDOC_VALUE_CANTINSERT),
    (Opcode.SUBDOC_ARRAY_ADD_UNIQUE, {"a": [1]}, "a", b"1", Status.SUBDOC_PATH_EEXISTS),
    (Opcode.SUBDOC_COUNTER, {"n": "x"}, "n", b"1", Status.SUBDOC_PATH_MISMATCH),
    (Opcode.SUBDOC_COUNTER, {"n": 1}, "n", b"0", Status.SUBDOC_DELTA_EINVAL),
])
def test_mutation_errors(op: int, doc: Any, path: str, value: bytes, status: Status) -> None:
    with pytest.raises(sp.SubdocError) as err:
        sp.mutate(op, doc, sp.parse_path(path), value, False)
    assert err.value.status == status


@pytest.mark.parametrize(("path", "ok"), [
    ("_cbembed.meta", True), ("meta", True), ("$document", True), ("a" * 15, True),
    ("a" * 16, False), ("_", False), ("!x", False), ("", False),
])
def test_xattr_keys(path: str, ok: bool) -> None:
    if ok:
        assert sp.xattr_key_of(path) == path.split(".")[0]
    else:
        with pytest.raises(sp.SubdocError):
            sp.xattr_key_of(path)


LOG = [(0xC, 100), (0xB, 50), (0xA, 0)]  # newest first


@pytest.mark.parametrize(("args", "expected"), [
    ((0, 120, 0, 0, 0), None),  # start 0, uuid 0: no rollback
    ((0, 120, 0xA, 0, 0), None),  # start 0 without strict flag
    ((80, 120, 0xC, 80, 80), None),  # newest uuid, behind
    ((40, 120, 0xB, 40, 40), None),  # older uuid, inside its range
    ((70, 120, 0xB, 70, 70), None),  # 0xB's branch runs to 100, where 0xC begins
    ((110, 120, 0xB, 110, 110), 100),  # older branch, past its upper: back to upper
    ((98, 120, 0xB, 95, 105), 95),  # snapshot straddles upper: back to snapshot start
    ((10, 120, 0xDEAD, 10, 10), 0),  # unknown uuid
    ((130, 120, 0xC, 130, 130), 120),  # consumer ahead of the producer
])
def test_needs_rollback(args: tuple[int, int, int, int, int], expected: int | None) -> None:
    assert needs_rollback(*args, LOG) == expected


def test_rollback_purge_and_strict() -> None:
    assert needs_rollback(5, 120, 0xC, 5, 5, LOG, purge_seqno=10) == 0
    assert needs_rollback(0, 120, 0xDEAD, 0, 0, LOG, strict=True) == 0


def test_codec_helpers() -> None:
    for v in (0, 8, 127, 128, 300, 0xFFFFFFFF):
        assert leb128_decode(leb128_encode(v)) == (v, len(leb128_encode(v)))
    assert all(0 <= vbucket_of(f"k{i}".encode(), 1024) < 1024 for i in range(50))


DOCS = {
    "a": {"text": "red running shoes", "v": [1.0, 0.0], "color": "red", "n": 1},
    "b": {"text": "blue shoes", "v": [0.0, 1.0], "color": "blue", "n": 5},
    "c": {"text": "a red hat", "v": [0.7, 0.7], "color": "red", "n": 9},
}


def corpus(similarity: str = "dot_product") -> se.Corpus:
    return se.Corpus(dict(DOCS), {"v": se.VectorField("v", 2, similarity)})


@pytest.mark.parametrize(("query", "ids"), [
    ({"match": "shoes", "field": "text"}, {"a", "b"}),
    ({"match": "red shoes", "field": "text", "operator": "and"}, {"a"}),
    ({"match_phrase": "red hat", "field": "text"}, {"c"}),
    ({"term": "blue", "field": "color"}, {"b"}),
    ({"prefix": "run", "field": "text"}, {"a"}),
    ({"conjuncts": [{"match": "red"}, {"match": "hat"}]}, {"c"}),
    ({"disjuncts": [{"match": "hat"}, {"term": "blue", "field": "color"}]}, {"b", "c"}),
    ({"must": {"conjuncts": [{"match": "red"}]}, "must_not": {"disjuncts": [{"match": "hat"}]}},
     {"a"}),
    ({"match_all": {}}, {"a", "b", "c"}),
    ({"match_none": None}, set()),
    ({"min": 2, "max": 9, "field": "n"}, {"b"}),
    ({"query": "color:red"}, {"a", "c"}),
])
def test_text_queries(query: dict[str, Any], ids: set[str]) -> None:
    assert set(se.evaluate(corpus(), query)) == ids


def test_knn_scoring_operators_and_filter() -> None:
    c = corpus()
    near_b = {"field": "v", "vector": [0.1, 1.0], "k": 2}
    hits = se.run(c, {"query": {"match_none": {}}, "knn": [near_b]}, allow_knn_filter=True)
    assert sorted(hits, key=lambda k: -hits[k]) == ["b", "c"]
    near_a = {"field": "v", "vector": [1.0, 0.0], "k": 1}
    both = se.run(c, {"knn": [near_a, near_b], "knn_operator": "and"}, allow_knn_filter=True)
    assert both == {}
    either = se.run(c, {"knn": [near_a, near_b], "knn_operator": "or"}, allow_knn_filter=True)
    assert set(either) == {"a", "b", "c"}
    filtered = dict(near_b, filter={"term": "red", "field": "color"})
    assert set(se.run(c, {"knn": [filtered]}, allow_knn_filter=True)) == {"a", "c"}
    with pytest.raises(se.SearchError):
        se.run(c, {"knn": [filtered]}, allow_knn_filter=False)
    with pytest.raises(se.SearchError):
        se.run(c, {"knn": [{"field": "v", "vector": [1.0], "k": 1}]}, allow_knn_filter=True)
    hybrid = se.run(c, {"query": {"match": "hat", "field": "text"}, "knn": [near_a]},
                    allow_knn_filter=True)
    assert set(hybrid) == {"a", "c"}


@pytest.mark.parametrize(("similarity", "best"), [("dot_product", "long"), ("cosine", "short"),
                                                  ("l2_norm", "short")])
def test_similarities(similarity: str, best: str) -> None:
    docs = {"short": {"v": [0.5, 0.0]}, "long": {"v": [0.7, 0.7]}}
    c = se.Corpus(docs, {"v": se.VectorField("v", 2, similarity)})
    hits = se.knn(c, {"field": "v", "vector": [1.0, 0.2], "k": 2}, True)
    assert max(hits, key=lambda k: hits[k]) == best


def test_query_index_tracking() -> None:
    from tests.cbserver.context import ServerContext
    from tests.cbserver.data import Store
    from tests.cbserver.faults import Faults
    from tests.cbserver.query import QueryArgs, QueryError, QueryService

    ctx = ServerContext(Store(4), "b", "u", "p", "8.0.0", Faults())
    q = QueryService(ctx)
    in_scope = QueryArgs(query_context="default:`b`.`s`")
    q.default_handler("CREATE INDEX `ix1` ON `b`.`s`.`c`(`name`) WHERE type = 'x' USING GSI "
                      'WITH {"defer_build":true}', QueryArgs())
    q.default_handler("CREATE PRIMARY INDEX ON b", QueryArgs())
    q.default_handler("CREATE VECTOR INDEX hv ON c(emb VECTOR) INCLUDE (lang) "
                      'WITH {"dimension":4,"similarity":"COSINE"}', in_scope)
    q.default_handler("CREATE INDEX IF NOT EXISTS ix1 ON b.s.c(name)", QueryArgs())
    with pytest.raises(QueryError) as err:
        q.default_handler("CREATE INDEX ix1 ON b.s.c(name)", QueryArgs())
    assert err.value.code == 4300
    rows = q.default_handler('SELECT * FROM system:indexes WHERE name = "ix1"', QueryArgs())
    assert rows == [{"indexes": q.indexes[("b", "s", "c", "ix1")].row()}]
    assert rows[0]["indexes"]["state"] == "deferred"
    q.default_handler("BUILD INDEX ON `b`.`s`.`c`(`ix1`)", QueryArgs())
    names = q.default_handler("SELECT name, state AS st FROM system:indexes WHERE keyspace_id = $k",
                              QueryArgs(named={"k": "c"}))
    assert names == [{"name": "hv", "st": "online"}, {"name": "ix1", "st": "online"}]
    vec = q.indexes[("b", "s", "c", "hv")]
    assert vec.is_vector and vec.include == ["lang"] and vec.with_["similarity"] == "COSINE"
    q.default_handler("DROP INDEX ix1 ON b.s.c", QueryArgs())
    q.default_handler("DROP INDEX `b`.`#primary`", QueryArgs())
    q.default_handler("DROP INDEX IF EXISTS nope ON b.s.c", QueryArgs())
    with pytest.raises(QueryError) as err:
        q.default_handler("DROP PRIMARY INDEX ON b", QueryArgs())
    assert err.value.code == 12004
    assert list(q.indexes) == [("b", "s", "c", "hv")]


def test_history_items_are_not_changed_by_later_subdoc_writes() -> None:
    """A failover rebuilds documents from history: an old item must keep its own xattrs."""
    from tests.cbserver import CouchbaseTestServer

    with CouchbaseTestServer(collections={"s": ["c"]}, num_vbuckets=4) as srv:
        import couchbase.subdocument as SD
        from couchbase.auth import PasswordAuthenticator
        from couchbase.cluster import Cluster
        from couchbase.options import ClusterOptions

        cluster = Cluster(srv.connection_string,
                          ClusterOptions(PasswordAuthenticator("Administrator", "password")))
        coll = cluster.bucket("default").scope("s").collection("c")
        coll.upsert("k", {"v": 1})
        coll.mutate_in("k", [SD.upsert("_m.p", {"h": "old"}, xattr=True, create_parents=True)])
        first = srv.get("s", "c", "k")
        coll.mutate_in("k", [SD.upsert("_m.p", {"h": "new"}, xattr=True, create_parents=True)])
        vb = srv.vbucket_of("k")
        srv.failover(vb, lose_after_seqno=first.seqno)
        assert srv.get("s", "c", "k").system_xattrs == {"_m": {"p": {"h": "old"}}}
        cluster.close()
