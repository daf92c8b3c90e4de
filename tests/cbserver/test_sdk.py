"""The official couchbase SDK (sync and acouchbase) against the test server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import couchbase.subdocument as SD
import pytest
from couchbase.auth import PasswordAuthenticator
from couchbase.cluster import Cluster
from couchbase.collection import Collection
from couchbase.diagnostics import PingState, ServiceType
from couchbase.exceptions import (
    CasMismatchException,
    DocumentExistsException,
    DocumentNotFoundException,
    ParsingFailedException,
    PathNotFoundException,
    QueryIndexAlreadyExistsException,
    QueryIndexNotFoundException,
)
from couchbase.management.search import SearchIndex
from couchbase.options import (
    ClusterOptions,
    ClusterTimeoutOptions,
    MutateInOptions,
    QueryOptions,
    ReplaceOptions,
    SearchOptions,
)
from couchbase.search import MatchQuery, SearchRequest, TermQuery
from couchbase.vector_search import VectorQuery, VectorSearch

from tests.cbserver import CouchbaseTestServer, QueryArgs, QueryError

SEARCH_WARNING = "ignore:Option scope_name is deprecated"  # emitted by the SDK itself
VECTOR_INDEX: dict[str, Any] = {
    "doc_config": {"mode": "scope.collection.type_field", "type_field": "type"},
    "mapping": {
        "default_mapping": {"enabled": False},
        "types": {"inventory.hotels": {"enabled": True, "dynamic": False, "properties": {
            "embedding": {"enabled": True, "dynamic": False, "fields": [
                {"name": "embedding", "type": "vector", "dims": 3,
                 "similarity": "dot_product", "vector_index_optimized_for": "recall",
                 "index": True}]},
            "text": {"enabled": True, "fields": [
                {"name": "text", "type": "text", "index": True, "store": True}]}}}},
    },
    "store": {"indexType": "scorch", "segmentVersion": 16},
}


def options() -> ClusterOptions:
    return ClusterOptions(
        PasswordAuthenticator("Administrator", "password"),
        timeout_options=ClusterTimeoutOptions(kv_timeout=timedelta(seconds=3),
                                              connect_timeout=timedelta(seconds=5),
                                              query_timeout=timedelta(seconds=5),
                                              search_timeout=timedelta(seconds=5)))


@pytest.fixture(scope="module")
def srv() -> Iterator[CouchbaseTestServer]:
    with CouchbaseTestServer(collections={"inventory": ["hotels", "photos"]}) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(srv: CouchbaseTestServer) -> Iterator[Cluster]:
    c = Cluster(srv.connection_string, options())
    c.wait_until_ready(timedelta(seconds=5))
    yield c
    c.close()


@pytest.fixture
def hotels(cluster: Cluster) -> Collection:
    return cluster.bucket("default").scope("inventory").collection("hotels")


def test_crud_with_cas(srv: CouchbaseTestServer, hotels: Collection) -> None:
    first = hotels.upsert("crud", {"name": "Ritz", "stars": 5})
    stored = srv.get("inventory", "hotels", "crud")
    assert stored is not None and stored.value == {"name": "Ritz", "stars": 5}
    assert stored.cas == first.cas and stored.vbucket == srv.vbucket_of("crud")
    assert first.mutation_token().sequence_number == stored.seqno
    second = hotels.replace("crud", {"name": "Ritz", "stars": 4}, ReplaceOptions(cas=first.cas))
    assert second.cas > first.cas
    with pytest.raises(CasMismatchException):
        hotels.replace("crud", {"stale": True}, ReplaceOptions(cas=first.cas))
    with pytest.raises(DocumentExistsException):
        hotels.insert("crud", {})
    assert hotels.get("crud").content_as[dict] == {"name": "Ritz", "stars": 4}
    assert hotels.exists("crud").exists and not hotels.exists("nope").exists
    hotels.remove("crud")
    tomb = srv.get("inventory", "hotels", "crud")
    assert tomb is not None and tomb.deleted and tomb.seqno > stored.seqno
    with pytest.raises(DocumentNotFoundException):
        hotels.get("crud")
    srv.upsert("inventory", "hotels", "direct", {"from": "server"})
    assert hotels.get("direct").content_as[dict] == {"from": "server"}


def test_subdoc_body_and_xattrs(srv: CouchbaseTestServer, hotels: Collection) -> None:
    base = hotels.upsert("sd", {"text": "hello"})
    # kv_engine applies xattr paths to the object of all xattrs: "_cbembed.meta" needs
    # "_cbembed" to exist unless create_parents (MKDIR_P) is set.
    with pytest.raises(PathNotFoundException):
        hotels.mutate_in("sd", [SD.upsert("_cbembed.meta", {"h": "1"}, xattr=True)])
    res = hotels.mutate_in("sd", [
        SD.upsert("_cbembed.meta", {"h": "1", "model": "m"}, xattr=True, create_parents=True),
        SD.upsert("meta", {"user": True}, xattr=True),
        SD.upsert("embedding", [0.5, 0.25]),
    ], MutateInOptions(cas=base.cas))
    doc = srv.get("inventory", "hotels", "sd")
    assert doc is not None and doc.cas == res.cas
    assert doc.system_xattrs == {"_cbembed": {"meta": {"h": "1", "model": "m"}}}
    assert doc.user_xattrs == {"meta": {"user": True}}
    assert doc.value == {"text": "hello", "embedding": [0.5, 0.25]}
    with pytest.raises(CasMismatchException):
        hotels.mutate_in("sd", [SD.upsert("x", 1)], MutateInOptions(cas=base.cas))
    got = hotels.lookup_in("sd", [SD.get("_cbembed.meta", xattr=True), SD.get("meta", xattr=True),
                                  SD.get("$document.CAS", xattr=True), SD.exists("missing")])
    assert got.content_as[dict](0) == {"h": "1", "model": "m"}
    assert got.content_as[dict](1) == {"user": True}
    assert int(got.content_as[str](2), 16) == res.cas
    assert not got.exists(3)
    macro = hotels.mutate_in("sd", [SD.upsert("_cbembed.cas", SD.MutationMacro.cas(),
                                              xattr=True)])
    stored = srv.get("inventory", "hotels", "sd")
    assert stored is not None
    assert stored.system_xattrs["_cbembed"]["cas"] == "0x" + macro.cas.to_bytes(8, "little").hex()


def test_full_document_write_keeps_xattrs_like_kv_engine(
        srv: CouchbaseTestServer, hotels: Collection) -> None:
    hotels.upsert("fw", {"v": 1})
    hotels.mutate_in("fw", [SD.upsert("_sys", {"k": 1}, xattr=True),
                            SD.upsert("usr", {"k": 2}, xattr=True)])
    hotels.replace("fw", {"v": 2})
    doc = srv.get("inventory", "hotels", "fw")
    assert doc is not None and doc.value == {"v": 2}
    assert doc.system_xattrs == {"_sys": {"k": 1}} and doc.user_xattrs == {"usr": {"k": 2}}
    hotels.remove("fw")
    tomb = srv.get("inventory", "hotels", "fw")
    assert tomb is not None and tomb.system_xattrs == {"_sys": {"k": 1}} and not tomb.user_xattrs


def test_full_document_write_keep_system_only_mode() -> None:
    """The pessimistic belief from couchbase-wire.md, selectable for connector tests."""
    with CouchbaseTestServer(collections={"s": ["c"]},
                             xattrs_on_full_write="keep_system_only") as server:
        c = Cluster(server.connection_string, options())
        try:
            coll = c.bucket("default").scope("s").collection("c")
            coll.upsert("k", {"v": 1})
            coll.mutate_in("k", [SD.upsert("_sys", 1, xattr=True), SD.upsert("usr", 2, xattr=True)])
            coll.upsert("k", {"v": 2})
            doc = server.get("s", "c", "k")
            assert doc is not None and doc.system_xattrs == {"_sys": 1} and doc.user_xattrs == {}
        finally:
            c.close()


def test_ping_all_services(cluster: Cluster) -> None:
    report = cluster.ping()
    services = {ServiceType.KeyValue, ServiceType.Query, ServiceType.Search,
                ServiceType.Management}
    assert services <= set(report.endpoints)
    for service in services:
        assert all(e.state == PingState.OK for e in report.endpoints[service])


def test_query_recorded_handler_and_index_management(
        srv: CouchbaseTestServer, cluster: Cluster) -> None:
    rows = list(cluster.query("SELECT * FROM `default`.inventory.hotels WHERE x = $x",
                              QueryOptions(named_parameters={"x": 7})).rows())
    assert rows == []
    rec = srv.queries[-1]
    assert rec.statement.startswith("SELECT * FROM") and rec.args.named == {"x": 7}
    list(cluster.query("SELECT $1", QueryOptions(positional_parameters=["a"])).rows())
    assert srv.queries[-1].args.positional == ["a"]

    def handler(statement: str, args: QueryArgs) -> list[dict[str, Any]] | None:
        if statement.startswith("SELECT answer"):
            return [{"answer": 42}]
        if statement.startswith("FAIL"):
            raise QueryError(3000, "syntax error", 400)
        return None

    srv.query_handler = handler
    try:
        assert list(cluster.query("SELECT answer").rows()) == [{"answer": 42}]
        with pytest.raises(ParsingFailedException):
            list(cluster.query("FAIL").rows())
    finally:
        srv.query_handler = None
    mgr = cluster.query_indexes()
    mgr.create_index("default", "by_name", ["name"], scope_name="inventory",
                     collection_name="hotels")
    with pytest.raises(QueryIndexAlreadyExistsException):
        mgr.create_index("default", "by_name", ["name"], scope_name="inventory",
                         collection_name="hotels")
    names = [i.name for i in mgr.get_all_indexes("default", scope_name="inventory",
                                                 collection_name="hotels")]
    assert names == ["by_name"]
    vector_sql = ("CREATE VECTOR INDEX v ON `default`.inventory.hotels(embedding VECTOR) "
                  'WITH {"dimension":3,"similarity":"DOT","defer_build":true}')
    with pytest.raises(ParsingFailedException):  # 7.6.4 has no GSI vector indexes
        list(cluster.query(vector_sql).rows())
    assert {i.name for i in srv.query_indexes} == {"by_name"}
    mgr.drop_index("default", "by_name", scope_name="inventory", collection_name="hotels")
    with pytest.raises(QueryIndexNotFoundException):
        mgr.drop_index("default", "by_name", scope_name="inventory", collection_name="hotels")


def test_gsi_vector_index_on_server_8() -> None:
    with CouchbaseTestServer(collections={"s": ["c"]}, server_version="8.0.0") as server:
        c = Cluster(server.connection_string, options())
        try:
            list(c.query("CREATE VECTOR INDEX v ON `default`.s.c(embedding VECTOR) INCLUDE (lang) "
                         'WITH {"dimension":3,"similarity":"DOT","defer_build":true}').rows())
            (idx,) = server.query_indexes
            assert idx.is_vector and idx.state == "deferred" and idx.include == ["lang"]
            list(c.query("BUILD INDEX ON `default`.s.c(v)").rows())
            assert server.query_indexes[0].state == "online"
        finally:
            c.close()


@pytest.mark.filterwarnings(SEARCH_WARNING)
def test_vector_and_hybrid_search(srv: CouchbaseTestServer, cluster: Cluster) -> None:
    scope = cluster.bucket("default").scope("inventory")
    coll = scope.collection("hotels")
    coll.upsert("red", {"text": "red shoes", "embedding": [1.0, 0.0, 0.0]})
    coll.upsert("blue", {"text": "blue shoes", "embedding": [0.0, 1.0, 0.0]})
    coll.upsert("hat", {"text": "green hat", "embedding": [0.0, 0.0, 1.0]})
    scope.search_indexes().upsert_index(SearchIndex(name="vidx", source_name="default",
                                                    params=VECTOR_INDEX))
    put = [r for r in srv.http_requests if r.method == "PUT"][-1]
    assert put.path == "/api/bucket/default/scope/inventory/index/vidx"
    assert put.json_body["params"]["mapping"]["types"]["inventory.hotels"]
    assert scope.search_indexes().get_index("vidx").name == "vidx"

    vq = VectorSearch.from_vector_query(VectorQuery("embedding", [0.1, 0.9, 0.0],
                                                    num_candidates=2))
    req = SearchRequest.create(MatchQuery("shoes", field="text")).with_vector_search(vq)
    res = scope.search("vidx", req, SearchOptions(limit=10, fields=["text"]))
    hits = list(res.rows())
    assert [h.id for h in hits][:2] == ["blue", "red"]
    assert hits[0].fields == {"text": "blue shoes"}
    body = srv.http_requests[-1].json_body
    assert body["knn"] == [{"field": "embedding", "k": 2, "vector": [0.1, 0.9, 0.0]}]
    assert srv.http_requests[-1].path == "/api/bucket/default/scope/inventory/index/vidx/query"

    only = SearchRequest.create(VectorSearch.from_vector_query(
        VectorQuery("embedding", [0.0, 0.2, 0.8], num_candidates=1)))
    assert [h.id for h in scope.search("vidx", only).rows()] == ["hat"]
    assert srv.http_requests[-1].json_body["query"] == {"match_none": None}
    words = list(scope.search("vidx", SearchRequest.create(TermQuery("hat", field="text")))
                 .rows())
    assert [h.id for h in words] == ["hat"]


def test_not_my_vbucket_is_retried_by_the_sdk(srv: CouchbaseTestServer, hotels: Collection) -> None:
    vb = srv.vbucket_of("nmvb")
    srv.faults.not_my_vbucket({vb}, times=2)
    hotels.upsert("nmvb", {"ok": True})
    assert srv.get("inventory", "hotels", "nmvb") is not None


def test_collection_manager_and_direct_collection_changes(
        srv: CouchbaseTestServer, cluster: Cluster) -> None:
    from couchbase.management.collections import CreateCollectionSettings

    mgr = cluster.bucket("default").collections()
    mgr.create_collection("inventory", "rooms", CreateCollectionSettings())
    assert srv.collection_id("inventory", "rooms") >= 8
    cid = srv.create_collection("inventory", "suites")
    scopes = {s.name: [c.name for c in s.collections] for s in mgr.get_all_scopes()}
    assert {"rooms", "suites"} <= set(scopes["inventory"]) and cid > 8
    coll = cluster.bucket("default").scope("inventory").collection("suites")
    coll.upsert("s1", {"a": 1})
    assert srv.get("inventory", "suites", "s1") is not None


async def test_acouchbase_on_the_same_loop() -> None:
    from acouchbase.cluster import Cluster as AsyncCluster

    async with CouchbaseTestServer(collections={"inventory": ["hotels"]}) as server:
        c = await AsyncCluster.connect(server.connection_string, options())
        try:
            coll = c.bucket("default").scope("inventory").collection("hotels")
            res = await coll.upsert("a1", {"n": 1})
            assert (await coll.get("a1")).content_as[dict] == {"n": 1}
            await coll.mutate_in("a1", [SD.upsert("_m", {"x": 1}, xattr=True)],
                                 MutateInOptions(cas=res.cas))
            got = await coll.lookup_in("a1", [SD.get("_m", xattr=True)])
            assert got.content_as[dict](0) == {"x": 1}
            doc = server.get("inventory", "hotels", "a1")
            assert doc is not None and doc.system_xattrs == {"_m": {"x": 1}}
        finally:
            await c.close()


def test_default_login_is_scram_sha512(srv: CouchbaseTestServer, cluster: Cluster) -> None:
    assert srv.auth_mechanisms and set(srv.auth_mechanisms) == {"SCRAM-SHA512"}


@pytest.mark.filterwarnings(SEARCH_WARNING)
def test_global_search_index_lifecycle(srv: CouchbaseTestServer, cluster: Cluster) -> None:
    from couchbase.exceptions import SearchIndexNotFoundException

    mgr = cluster.search_indexes()
    mgr.upsert_index(SearchIndex(name="gidx", source_name="default", params=VECTOR_INDEX))
    assert "gidx" in srv.search_indexes
    assert "gidx" in {i.name for i in mgr.get_all_indexes()}
    hits = list(cluster.search("gidx", SearchRequest.create(MatchQuery("hat"))).rows())
    assert all(h.id for h in hits)
    mgr.drop_index("gidx")
    with pytest.raises(SearchIndexNotFoundException):
        mgr.get_index("gidx")


def test_http_basic_auth_and_versions(srv: CouchbaseTestServer) -> None:
    import base64
    import json
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{srv.ports.mgmt}/pools"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=5)
    assert err.value.code == 401
    token = base64.b64encode(b"Administrator:password").decode()
    req = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.load(resp)["implementationVersion"].startswith("7.6.4")
    req = urllib.request.Request(f"http://127.0.0.1:{srv.ports.mgmt}/pools/default/b/default",
                                 headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        cfg = json.load(resp)
    assert cfg["nodesExt"][0]["services"]["fts"] == srv.ports.fts
    assert "vectorSearch" in cfg["clusterCapabilities"]["search"]
    assert len(cfg["vBucketServerMap"]["vBucketMap"]) == 64


def test_version_gates_for_vector_index_definitions() -> None:
    import copy

    cosine = copy.deepcopy(VECTOR_INDEX)
    field = cosine["mapping"]["types"]["inventory.hotels"]["properties"]["embedding"]["fields"][0]
    field["similarity"] = "cosine"
    with CouchbaseTestServer(collections={"inventory": ["hotels"]},
                             server_version="7.6.2") as server:
        c = Cluster(server.connection_string, options())
        try:
            mgr = c.bucket("default").scope("inventory").search_indexes()
            with pytest.raises(Exception, match="cosine"):
                mgr.upsert_index(SearchIndex(name="i", source_name="default", params=cosine))
            field["similarity"] = "dot_product"
            field["dims"] = 4000
            mgr.upsert_index(SearchIndex(name="i", source_name="default", params=cosine))
        finally:
            c.close()
    with CouchbaseTestServer(collections={"inventory": ["hotels"]},
                             server_version="7.2.0") as old:
        cfg = old.ctx.config()
        assert "search" not in cfg["clusterCapabilities"]
