"""Indexes, search helpers and `cbembed index|search` against tests/cbserver with the real SDK
and the real MiniLM encoder: the requests the SDK sends are compared with golden files written
from the Couchbase docs (tests/golden/README.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from couchbase.auth import PasswordAuthenticator
from couchbase.cluster import Cluster
from couchbase.management.search import SearchIndex
from couchbase.options import ClusterOptions, ClusterTimeoutOptions

from connector.config import PipelineConfig, Settings, load_settings
from connector.couchbase import query_helpers as qh
from connector.couchbase.index_manager import (
    apply_indexes,
    build_deferred_indexes,
    check_indexes,
    detect_server_version,
)
from connector.couchbase.xattrs import vector_json
from connector.errors import IndexDefinitionError, SearchError, ServerVersionError
from connector.search import Searcher, SearchHit
from connector.search.fusion import RRF_K
from encoders.base import Encoder
from index_defs import ServerVersion, search_index_definition
from tests.cbserver import CouchbaseTestServer, QueryArgs

GOLDEN = Path(__file__).parent / "golden"
PIPELINE = {
    "name": "hotels", "keyspace": "travel.inventory.hotels",
    "template": "{name}. {description} {address.city?}",
    "filter": {"type": "hotel", "rating": {"gte": 3}},
}
HOTELS = [
    ("h1", "Azure Bay Family Resort", "Beach resort with a kids club, shallow lagoon and "
     "water slides; families love the sandy shore.", "Cancun", "hotel", 5),
    ("h2", "Quiet Dunes Inn", "A quiet beach hotel among the dunes, no parties, early "
     "breakfast and sea views.", "Essaouira", "hotel", 4),
    ("h3", "Old Town Hostel", "Cheap dorm beds in the old town, lively bar and walking tours.",
     "Prague", "hostel", 3),
    ("h4", "Alpine Lodge", "Ski-in ski-out chalet with fireplace and sauna in the mountains.",
     "Zermatt", "hotel", 5),
    ("h5", "Harbour Business Hotel", "Business hotel by the harbour with meeting rooms and "
     "fast wifi.", "Hamburg", "hotel", 4),
    ("h6", "Riverside Camping", "Tents and cabins by the river, canoe rental.", "Annecy",
     "camping", 3),
    ("h7", "Sunset Beach Hotel", "Hotel on the beach, loud beach club every night, cocktails.",
     "Ibiza", "hotel", 3),
    ("h8", "Desert Star Camp", "Luxury tents under the stars in the desert, camel rides.",
     "Merzouga", "hotel", 4),
    ("h9", "City Loft Apartments", "Self-catering apartments in the city centre near museums.",
     "Vienna", "apartment", 4),
    ("h10", "Lagoon Villas", "Overwater villas on a calm lagoon, snorkelling and quiet "
     "evenings for couples.", "Maldives", "hotel", 5),
]
QUERY = "quiet beach hotel"


def options() -> ClusterOptions:
    t = timedelta(seconds=5)
    return ClusterOptions(PasswordAuthenticator("Administrator", "password"),
                           timeout_options=ClusterTimeoutOptions(
                               kv_timeout=t, connect_timeout=t, query_timeout=t,
                               search_timeout=t, management_timeout=t))


class QueryAnswers:
    """The test server's SQL++ answers: ds_version(), COUNT(*), and the vector statements
    computed by brute force over the stored documents."""

    def __init__(self, srv: CouchbaseTestServer, version: str) -> None:
        self.srv = srv
        self.version = version
        self.count = len(HOTELS)

    def __call__(self, statement: str, args: QueryArgs) -> list[Any] | None:
        if "ds_version()" in statement:
            return [f"{self.version}-1234-enterprise"]
        if statement.startswith("SELECT RAW COUNT(*)"):
            return [self.count]
        if "VECTOR_DISTANCE(" in statement:
            qv = np.asarray(args.named["qv"])
            rows: list[dict[str, Any]] = []
            for key, name, *_ in HOTELS:
                doc = self.srv.get("inventory", "hotels", key)
                assert doc is not None
                if doc.value.get("type") != args.named.get("f0", doc.value.get("type")):
                    continue
                dist = 1.0 - float(np.dot(np.asarray(doc.value["embedding"]), qv))
                rows.append({"id": key, "distance": dist, "name": name})
            rows.sort(key=lambda r: float(r["distance"]))
            return rows[: int(statement.split()[-1])]
        return None


def settings_for(srv: CouchbaseTestServer, **pipeline: Any) -> Settings:
    return load_settings(storage=srv.connection_string,
                         couchbase={"password": "password", "timeout_s": 5},
                         pipelines=[{**PIPELINE, **pipeline}])


@pytest.fixture(scope="module")
def srv(minilm: Encoder) -> Iterator[CouchbaseTestServer]:
    with CouchbaseTestServer(bucket="travel", collections={"inventory": ["hotels"]},
                             server_version="8.0.0") as server:
        texts = [f"{n}. {d} {c}" for _k, n, d, c, _t, _r in HOTELS]
        vecs = minilm.encode(texts, normalize=True).vectors
        for (key, name, desc, city, kind, rating), vec in zip(HOTELS, vecs, strict=True):
            server.upsert("inventory", "hotels", key, {
                "name": name, "description": desc, "address": {"city": city}, "type": kind,
                "rating": rating, "embedding": vector_json(vec)})
        server.query_handler = QueryAnswers(server, "8.0.0")
        yield server


@pytest.fixture(scope="module")
def cluster(srv: CouchbaseTestServer) -> Iterator[Cluster]:
    c = Cluster(srv.connection_string, options())
    c.wait_until_ready(timedelta(seconds=5))
    yield c
    c.close()


@pytest.fixture(scope="module")
def hotels(srv: CouchbaseTestServer, cluster: Cluster) -> PipelineConfig:
    """The pipeline, its indexes applied once (the first test checks that step)."""
    s = settings_for(srv)
    actions, _ = apply_indexes(cluster, s, {"hotels": 384},
                               server_version=detect_server_version(cluster))
    assert [(a.kind, a.action) for a in actions] == [
        ("search", "created"), ("hyperscale", "created"), ("hyperscale", "deferred")]
    return s.pipelines[0]


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def posted(srv: CouchbaseTestServer, since: int) -> list[dict[str, Any]]:
    return [r.json_body for r in srv.http_requests[since:]
            if r.method == "POST" and r.path.endswith("/query") and r.service == "fts"]


def with_marker(body: dict[str, Any]) -> dict[str, Any]:
    """The request with its query vector(s) replaced by the golden files' marker."""
    out = json.loads(json.dumps(body))
    for clause in out.get("knn", []):
        vec = clause["vector"]
        assert len(vec) == 384 and all(isinstance(x, float) for x in vec)
        clause["vector"] = "<384 floats>"
    return out


# -- index apply / check ------------------------------------------------------------------------
def test_apply_sends_the_documented_definitions(
        srv: CouchbaseTestServer, cluster: Cluster, hotels: PipelineConfig) -> None:
    (put,) = [r for r in srv.http_requests if r.method == "PUT"]
    assert put.path == "/api/bucket/travel/scope/inventory/index/cbembed_hotels"
    assert put.json_body == json.loads((GOLDEN / "search_index_hotels.json").read_text())
    creates = [q.statement for q in srv.queries if q.statement.startswith("CREATE")]
    assert creates == [(GOLDEN / "gsi_hyperscale_hotels.sqlpp").read_text().strip()]
    (idx,) = srv.query_indexes
    assert idx.is_vector and idx.state == "deferred" and idx.include == ["`type`", "`rating`"]


def test_apply_is_idempotent_and_builds_once_there_is_data(
        srv: CouchbaseTestServer, cluster: Cluster, hotels: PipelineConfig) -> None:
    s = settings_for(srv)
    before = len(srv.http_requests), len(srv.queries)
    actions, _ = apply_indexes(cluster, s, {"hotels": 384})
    assert [(a.kind, a.action) for a in actions] == [("search", "unchanged"),
                                                     ("hyperscale", "deferred")]
    assert "10 of 1000 documents" in actions[1].detail
    assert not [r for r in srv.http_requests[before[0]:] if r.method == "PUT"]
    assert not [q for q in srv.queries[before[1]:] if q.statement.startswith(("CREATE", "BUILD"))]

    s = settings_for(srv, index={"min_docs_to_build": 10})
    actions, _ = apply_indexes(cluster, s, {"hotels": 384})
    assert actions[-1].action == "built"
    builds = [q.statement for q in srv.queries if q.statement.startswith("BUILD")]
    assert builds == [(GOLDEN / "gsi_build_hotels.sqlpp").read_text().strip()]
    assert srv.query_indexes[0].state == "online"
    assert check_indexes(cluster, s, {"hotels": 384}) == [
        "hotels: search index cbembed_hotels: field embedding, 384 dims, similarity ok",
        "hotels: hyperscale index cbembed_hotels_hv: keys ok, 384 dims, state online"]


def test_a_changed_search_index_is_updated_in_place(
        srv: CouchbaseTestServer, cluster: Cluster, hotels: PipelineConfig) -> None:
    s = settings_for(srv, name="latency", index={"optimized_for": "latency", "gsi": "none"})
    assert [a.action for a in apply_indexes(cluster, s, {"latency": 384})[0]] == ["created"]
    uuid = srv.search_indexes["inventory.cbembed_latency"]["uuid"]
    s = settings_for(srv, name="latency", index={"optimized_for": "recall", "gsi": "none"})
    assert [a.action for a in apply_indexes(cluster, s, {"latency": 384})[0]] == ["updated"]
    put = [r for r in srv.http_requests if r.method == "PUT"][-1]
    assert put.json_body["uuid"] == uuid  # an update in place, not a second index
    scope = cluster.bucket("travel").scope("inventory")
    scope.search_indexes().drop_index("cbembed_latency")


def test_check_and_search_refuse_a_wrong_dimension(
        srv: CouchbaseTestServer, cluster: Cluster, hotels: PipelineConfig) -> None:
    wrong = search_index_definition(hotels.model_copy(update={"name": "wrong"}), 768)
    scope = cluster.bucket("travel").scope("inventory")
    scope.search_indexes().upsert_index(SearchIndex(
        name=wrong["name"], source_name="travel", params=wrong["params"]))
    p = hotels.model_copy(update={"name": "wrong"})
    s = settings_for(srv, name="wrong", index={"gsi": "none"})
    with pytest.raises(IndexDefinitionError, match="768 dims.* makes 384"):
        check_indexes(cluster, s, {"wrong": 384})
    with pytest.raises(IndexDefinitionError, match="would return no results"):
        qh.hybrid_search(cluster, p, QUERY)
    with pytest.raises(IndexDefinitionError, match="does not exist"):
        qh.vector_search(cluster, hotels.model_copy(update={"name": "absent"}), QUERY)
    scope.search_indexes().drop_index("cbembed_wrong")


def test_a_differing_gsi_index_needs_replace(
        srv: CouchbaseTestServer, cluster: Cluster, hotels: PipelineConfig) -> None:
    list(cluster.query("CREATE INDEX `cbembed_other_cv` ON `travel`.`inventory`.`hotels`"
                       '(`embedding` VECTOR) WITH {"dimension": 8, "similarity": "DOT"}').rows())
    s = settings_for(srv, name="other", index={"gsi": "composite", "search": False})
    (err,) = apply_indexes(cluster, s, {"other": 384})[0]
    assert err.action == "error" and "dimension 8 instead of 384" in err.detail
    assert "--replace" in err.detail
    actions, _ = apply_indexes(cluster, s, {"other": 384}, replace=True)
    assert [a.action for a in actions] == ["dropped", "created", "deferred"]
    idx = {i.name: i for i in srv.query_indexes}["cbembed_other_cv"]
    assert idx.with_["dimension"] == 384 and idx.index_key == ["`type`", "`rating`",
                                                               "`embedding` VECTOR"]
    list(cluster.query("DROP INDEX `cbembed_other_cv` ON `travel`.`inventory`.`hotels`").rows())


# -- Search service helpers ---------------------------------------------------------------------
def rrf(legs: dict[str, list[str]], k: int) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion written out independently of connector.search.fusion."""
    scores: dict[str, float] = {}
    for ids in legs.values():
        for rank, doc in enumerate(ids, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:k]


def test_hybrid_rrf_sends_two_documented_legs_and_fuses_by_rank(
        srv: CouchbaseTestServer, cluster: Cluster, hotels: PipelineConfig) -> None:
    flt = {"type": "hotel", "rating": {"gte": 4}}
    start = len(srv.http_requests)
    hits = qh.hybrid_search(cluster, hotels, QUERY, k=4, filter=flt, fields=["name"])
    kw_body, vec_body = posted(srv, start)
    assert with_marker(kw_body) == golden("search_request_keyword_leg.json")
    assert with_marker(vec_body) == golden("search_request_vector_leg.json")

    kw = [h.id for h in qh.keyword_search(cluster, hotels, QUERY, k=50, filter=flt)]
    vec = [h.id for h in qh.vector_search(cluster, hotels, QUERY, k=50, filter=flt)]
    want = rrf({"keyword": kw, "vector": vec}, 4)
    assert [(h.id, round(h.score, 9)) for h in hits] == [(d, round(s, 9)) for d, s in want]
    top = hits[0]
    assert top.id == "h2" and top.fields == {"name": "Quiet Dunes Inn"}
    assert top.ranks == {"keyword": kw.index("h2") + 1, "vector": vec.index("h2") + 1}
    assert set(top.leg_scores) == {"keyword", "vector"}
    for h in hits:  # the pre-filter held on both legs
        doc = srv.get("inventory", "hotels", h.id)
        assert doc is not None and doc.value["type"] == "hotel" and doc.value["rating"] >= 4


def test_hybrid_in_one_request(
        srv: CouchbaseTestServer, cluster: Cluster, hotels: PipelineConfig) -> None:
    start = len(srv.http_requests)
    hits = qh.hybrid_search(cluster, hotels, QUERY, k=5, filter={"type": "hotel"},
                            fusion="server", include_document=True)
    (body,) = posted(srv, start)
    assert with_marker(body) == golden("search_request_hybrid_one_request.json")
    # the server adds the keyword and kNN scores (no rank fusion): the loud beach hotel with
    # "beach" and "hotel" in every field wins here, the quiet one is still found
    ids = [h.id for h in hits]
    assert ids[0] == "h7" and "h2" in ids and not hits[0].ranks
    assert hits[ids.index("h2")].document["address"] == {"city": "Essaouira"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_vector_search_finds_meaning_without_shared_words(
        cluster: Cluster, hotels: PipelineConfig) -> None:
    hits = qh.vector_search(cluster, hotels, "somewhere for skiing in winter", k=3)
    assert hits[0].id == "h4"
    scope = cluster.bucket("travel").scope("inventory")
    again = qh.vector_search(scope, hotels, "somewhere for skiing in winter", k=3)
    assert [h.id for h in again] == [h.id for h in hits]
    vec = qh.embed_query(hotels, "somewhere for skiing in winter")
    assert [h.id for h in qh.vector_search(cluster, hotels, np.asarray(vec), k=3)] == \
        [h.id for h in hits]
    with pytest.raises(SearchError, match="lives in travel.inventory"):
        qh.vector_search(cluster.bucket("travel").scope("other"), hotels, "x")


def test_version_gate_on_prefilters(cluster: Cluster, hotels: PipelineConfig) -> None:
    with pytest.raises(ServerVersionError, match="pre-filter .* 7.6.4 .* runs 7.6.2"):
        qh.vector_search(cluster, hotels, QUERY, filter={"type": "hotel"},
                         server_version=ServerVersion(7, 6, 2))
    assert qh.keyword_search(cluster, hotels, "lagoon", k=2, filter={"type": "hotel"})


async def test_async_helpers_match_the_sync_ones(
        srv: CouchbaseTestServer, cluster: Cluster, hotels: PipelineConfig) -> None:
    from acouchbase.cluster import Cluster as AsyncCluster

    ac = await AsyncCluster.connect(srv.connection_string, options())
    try:
        for fusion in ("rrf", "server"):
            got = await qh.ahybrid_search(ac, hotels, QUERY, k=4, filter={"type": "hotel"},
                                          fusion=fusion, fields=["name"])
            want = qh.hybrid_search(cluster, hotels, QUERY, k=4, filter={"type": "hotel"},
                                    fusion=fusion, fields=["name"])
            assert [(h.id, h.fields) for h in got] == [(h.id, h.fields) for h in want]
        vec = await qh.avector_search(ac.bucket("travel").scope("inventory"), hotels, "ski",
                                      k=2, include_document=True)
        assert vec[0].id == "h4" and vec[0].document["name"] == "Alpine Lodge"
        kw = await qh.akeyword_search(ac, hotels, "canoe", k=2)
        assert [h.id for h in kw] == ["h6"]
        rows = await qh.asqlpp_vector_search(ac, hotels, "ski", k=2, exact=True)
        assert rows[0].id == "h4"
    finally:
        await ac.close()


async def test_the_connector_job_builds_a_deferred_index_once_there_is_data(
        srv: CouchbaseTestServer, cluster: Cluster) -> None:
    from acouchbase.cluster import Cluster as AsyncCluster

    s = settings_for(srv, name="job", index={"search": False})
    assert [a.action for a in apply_indexes(cluster, s, {"job": 384})[0]] == [
        "created", "deferred"]
    p = s.pipelines[0].model_copy(update={"index": s.pipelines[0].index.model_copy(
        update={"min_docs_to_build": 5})})
    ac = await AsyncCluster.connect(srv.connection_string, options())
    try:
        done: set[str] = set()
        (built,) = await build_deferred_indexes(ac, [p], {"job": 384}, done)
        assert (built.name, built.action, built.detail) == ("cbembed_job_hv", "built",
                                                            "10 documents")
        assert {i.name: i.state for i in srv.query_indexes}["cbembed_job_hv"] == "online"
        assert await build_deferred_indexes(ac, [p], {"job": 384}, done) == []
        assert done == {"cbembed_job_hv"}  # online: not looked at again
    finally:
        await ac.close()
    list(cluster.query("DROP INDEX `cbembed_job_hv` ON `travel`.`inventory`.`hotels`").rows())


# -- SQL++ helpers ------------------------------------------------------------------------------
def test_sqlpp_vector_search_sends_named_parameters(
        srv: CouchbaseTestServer, cluster: Cluster, hotels: PipelineConfig) -> None:
    start = len(srv.queries)
    hits = qh.sqlpp_vector_search(cluster, hotels, QUERY, k=5,
                                  filter={"type": "hotel", "rating": {"gte": 4}},
                                  fields=["name"], nprobes=8)
    state, query = srv.queries[start:]
    assert state.statement.startswith("SELECT i.* FROM system:indexes")
    want = golden("sqlpp_vector_query.json")
    assert query.statement == want["statement"]
    named = {"$" + k: v for k, v in query.args.named.items()}
    assert len(named["$qv"]) == 384
    assert {**named, "$qv": "<384 floats>"} == want["named"]
    assert hits[0].id == "h2" and hits[0].fields == {"name": "Quiet Dunes Inn"}
    h2 = srv.get("inventory", "hotels", "h2")
    assert h2 is not None
    assert hits[0].score == pytest.approx(  # cosine: 1 - distance = the dot of unit vectors
        float(np.dot(qh.embed_query(hotels, QUERY), h2.value["embedding"])), abs=1e-5)


def test_sqlpp_vector_search_refuses_an_unbuilt_index(
        srv: CouchbaseTestServer, cluster: Cluster, hotels: PipelineConfig) -> None:
    p = hotels.model_copy(update={"name": "unbuilt"})
    with pytest.raises(IndexDefinitionError, match="cbembed_unbuilt_hv .* does not exist"):
        qh.sqlpp_vector_search(cluster, p, QUERY)
    assert qh.sqlpp_vector_search(cluster, p, QUERY, exact=True, k=1)[0].id == "h2"


def test_sqlpp_search_with_knn(srv: CouchbaseTestServer, cluster: Cluster,
                               hotels: PipelineConfig) -> None:
    seen: list[QueryArgs] = []
    answers = srv.query_handler

    def handler(statement: str, args: QueryArgs) -> list[Any] | None:
        if "SEARCH(d, $search" in statement:
            seen.append(args)
            return [{"id": "h2", "score": 1.5, "name": "Quiet Dunes Inn"}]
        return answers(statement, args) if answers else None

    srv.query_handler = handler
    try:
        hits = qh.sqlpp_search(cluster, hotels, QUERY, k=5, filter={"type": "hotel"},
                               fields=["name"])
    finally:
        srv.query_handler = answers
    want = golden("sqlpp_search_knn.json")
    assert srv.queries[-1].statement == want["statement"]
    search = json.loads(json.dumps(seen[0].named["search"]))
    search["knn"][0]["vector"] = "<384 floats>"
    assert {"$search": search} == want["named"]
    assert hits == [SearchHit("h2", 1.5, {"name": "Quiet Dunes Inn"})]


# -- Searcher and the CLI on couchbase:// storage -----------------------------------------------
def test_searcher_and_cli_on_couchbase_storage(
        srv: CouchbaseTestServer, hotels: PipelineConfig, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.cli import main

    s = settings_for(srv)
    searcher = Searcher.from_settings(s)
    try:
        rrf_hits = searcher.hybrid(QUERY, k=3, filter={"type": "hotel"}, fields=["name"])
        one = searcher.hybrid(QUERY, k=3, filter={"type": "hotel"}, fusion="server")
        assert rrf_hits[0].id == "h2" and rrf_hits[0].ranks and one[0].id == "h7"
        assert searcher.vector("ski holiday", k=1)[0].id == "h4"
        assert searcher.keyword("canoe", k=1)[0].id == "h6"
    finally:
        searcher.close()

    config = tmp_path / "cbembed.toml"
    config.write_text(
        f'storage = "{srv.connection_string}"\n[couchbase]\npassword = "password"\n'
        '[[pipelines]]\nname = "hotels"\nkeyspace = "travel.inventory.hotels"\n'
        'template = "{name}. {description} {address.city?}"\n'
        'filter = { type = "hotel", rating = { gte = 3 } }\n')
    assert main(["search", "--config", str(config), QUERY, "-k", "2", "--json",
                 "--fields", "name"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hits"][0]["id"] == "h2" and out["hits"][0]["fields"] == {"name": "Quiet Dunes Inn"}
    assert main(["index", "check", "--config", str(config)]) == 0
    assert "384 dims" in capsys.readouterr().out
    assert main(["index", "apply", "--config", str(config), "--json"]) == 0
    actions = json.loads(capsys.readouterr().out)
    assert actions["server_version"] == "8.0.0"
    assert [a["action"] for a in actions["actions"]] == ["unchanged", "unchanged"]
    assert main(["index", "plan", "--config", str(config), "--server-version", "7.6.2"]) == 0
    plan = capsys.readouterr().out
    assert '"dims": 384' in plan and "hyperscale index skipped: " in plan
    embedded = tmp_path / "embedded.toml"
    embedded.write_text(f'storage = "embedded://{tmp_path / "x.db"}"\n'
                        + config.read_text().split("\n", 1)[1])
    assert main(["index", "apply", "--config", str(embedded)]) == 2
    assert "need a couchbase:// storage" in capsys.readouterr().err


def test_index_commands_on_an_older_server(minilm: Encoder) -> None:
    with CouchbaseTestServer(bucket="travel", collections={"inventory": ["hotels"]},
                             server_version="7.6.2") as old:
        old.query_handler = QueryAnswers(old, "7.6.2")
        c = Cluster(old.connection_string, options())
        try:
            c.wait_until_ready(timedelta(seconds=5))
            s = settings_for(old)
            version = detect_server_version(c)
            actions, _ = apply_indexes(c, s, {"hotels": 384}, server_version=version)
            assert [(a.kind, a.action) for a in actions] == [("hyperscale", "skipped"),
                                                             ("search", "created")]
            assert "needs Couchbase Server 8.0.0 or later; this cluster runs 7.6.2" in \
                actions[0].detail
            assert not [q for q in old.queries if q.statement.startswith("CREATE")]
            lines = check_indexes(c, s, {"hotels": 384}, version)
            assert lines[1].startswith("hotels: hyperscale index skipped")
        finally:
            c.close()
