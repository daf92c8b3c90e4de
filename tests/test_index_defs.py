"""Index definitions and query builders, pure: golden files written from the Couchbase docs
(tests/golden/README.md), documented key sets, similarity and version tables, filters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.config import PipelineConfig, load_settings
from connector.couchbase import fts
from connector.couchbase.sqlpp import sqlpp_search_query, sqlpp_vector_query, where_clause
from connector.errors import ConfigError, SearchError, ServerVersionError
from connector.filters import FieldFilter
from index_defs import ServerVersion, gsi_index, plan_pipeline, require, search_index_definition
from index_defs.fields import field_kinds, filter_fields, text_fields
from index_defs.gsi import build_statement, min_docs_to_build, score_from_distance
from index_defs.naming import gsi_index_name, search_index_name

GOLDEN = Path(__file__).parent / "golden"
HOTELS = {
    "name": "hotels", "keyspace": "travel.inventory.hotels",
    "template": "{name}. {description} {address.city?}",
    "filter": {"type": "hotel", "rating": {"gte": 3}},
}

# Keys the docs list (search-index-params.adoc "Fields Array"; the vector field keys from
# sample-vector-search-index-payload.json; search-request-params.adoc request / knn tables).
DOC_FIELD_KEYS = {"docvalues", "include_in_all", "include_term_vectors", "index", "name",
                  "store", "type", "analyzer"}
DOC_VECTOR_FIELD_KEYS = {"dims", "index", "name", "similarity", "type",
                         "vector_index_optimized_for"}
DOC_FIELD_OBJECT_KEYS = {"enabled", "dynamic", "fields", "properties"}


def pipeline(**overrides: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({**HOTELS, **overrides})


def golden(name: str) -> Any:
    text = (GOLDEN / name).read_text()
    return json.loads(text) if name.endswith(".json") else text.strip()


def test_search_index_definition_matches_the_golden_file() -> None:
    assert search_index_definition(pipeline(), 384) == golden("search_index_hotels.json")


def _walk_properties(props: dict[str, Any]) -> list[dict[str, Any]]:
    fields = []
    for obj in props.values():
        assert set(obj) <= DOC_FIELD_OBJECT_KEYS, obj
        fields += obj.get("fields", [])
        fields += _walk_properties(obj.get("properties", {}))
    return fields


def test_every_mapped_field_uses_documented_keys_only() -> None:
    d = search_index_definition(pipeline(index={"filter_fields": {"open": "boolean"}}), 384)
    (tmap,) = d["params"]["mapping"]["types"].values()
    fields = _walk_properties(tmap["properties"])
    assert {f["type"] for f in fields} == {"vector", "text", "number", "boolean"}
    for f in fields:
        allowed = DOC_VECTOR_FIELD_KEYS if f["type"] == "vector" else DOC_FIELD_KEYS
        assert set(f) <= allowed, f
        if f["type"] != "vector":  # the docs mark these as required
            assert {"docvalues", "include_in_all", "include_term_vectors", "index", "name",
                    "store", "type"} <= set(f)


def test_gsi_statements_match_the_golden_files() -> None:
    hv = gsi_index(pipeline(), 384)
    cv = gsi_index(pipeline(index={"gsi": "composite"}), 384)
    assert hv is not None and cv is not None
    assert hv.create_statement() == golden("gsi_hyperscale_hotels.sqlpp")
    assert cv.create_statement() == golden("gsi_composite_hotels.sqlpp")
    assert build_statement(hv) == golden("gsi_build_hotels.sqlpp")
    assert gsi_index(pipeline(index={"gsi": "none"}), 384) is None


def test_gsi_with_options_follow_the_config() -> None:
    g = gsi_index(pipeline(index={"description": "IVF1024,PQ8x8", "nprobes": 8,
                                  "train_list": 20000}), 768)
    assert g is not None
    assert g.with_ == {"dimension": 768, "similarity": "COSINE", "description": "IVF1024,PQ8x8",
                       "scan_nprobes": 8, "train_list": 20000, "defer_build": True}


@pytest.mark.parametrize(("similarity", "search", "gsi"), [
    ("cosine", "dot_product", "COSINE"),
    ("dot", "dot_product", "DOT"),
    ("l2", "l2_norm", "L2"),
])
def test_similarity_mapping(similarity: str, search: str, gsi: str) -> None:
    p = pipeline(similarity=similarity)
    d = search_index_definition(p, 8)
    field = d["params"]["mapping"]["types"]["inventory.hotels"]["properties"]["embedding"]
    assert field["fields"][0]["similarity"] == search
    g = gsi_index(p, 8)
    assert g is not None and g.with_["similarity"] == gsi


@pytest.mark.parametrize(("similarity", "distance", "score"), [
    ("cosine", 0.25, 0.75), ("dot", -0.5, 0.5), ("l2", 1.0, 0.5),
])
def test_score_from_distance(similarity: str, distance: float, score: float) -> None:
    assert score_from_distance(pipeline(similarity=similarity), distance) == pytest.approx(score)


@pytest.mark.parametrize(("text", "parsed"), [
    ("8.0.0", ServerVersion(8, 0, 0)),
    ("7.6.4-5146-enterprise", ServerVersion(7, 6, 4)),
    ("7.6", ServerVersion(7, 6, 0)),
])
def test_server_version_parse(text: str, parsed: ServerVersion) -> None:
    assert ServerVersion.parse(text) == parsed


@pytest.mark.parametrize("text", ["", "eight", "8"])
def test_server_version_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a Couchbase Server version"):
        ServerVersion.parse(text)


@pytest.mark.parametrize(("feature", "version", "ok"), [
    ("search_vector", "7.5.0", False),
    ("search_vector", "7.6.0", True),
    ("search_dims_4096", "7.6.1", False),
    ("search_dims_4096", "7.6.2", True),
    ("search_knn_prefilter", "7.6.2", False),
    ("search_knn_prefilter", "7.6.4", True),
    ("gsi_vector_index", "7.6.6", False),
    ("gsi_vector_index", "8.0.0", True),
    ("approx_vector_distance", "8.0.1", True),
])
def test_version_gates(feature: str, version: str, ok: bool) -> None:
    v = ServerVersion.parse(version)
    if ok:
        require(feature, v)
    else:
        with pytest.raises(ServerVersionError, match=rf"needs Couchbase Server .* runs {version}"):
            require(feature, v)
    require(feature, None)  # unknown: the server answers for itself


def test_plan_on_an_old_server_skips_the_gsi_index_with_the_reason() -> None:
    plan = plan_pipeline(pipeline(), 384, ServerVersion.parse("7.6.2"))
    assert [i.kind for i in plan.indexes] == ["search"]
    ((name, kind, reason),) = plan.skipped
    assert (name, kind) == ("hotels", "hyperscale")
    assert "needs Couchbase Server 8.0.0" in reason and "index.gsi" in reason
    assert plan_pipeline(pipeline(), 384, ServerVersion.parse("7.5.0")).indexes == []


def test_large_dims_are_gated_and_bounded() -> None:
    with pytest.raises(ServerVersionError, match="above 2048"):
        search_index_definition(pipeline(), 3072, server_version=ServerVersion(7, 6, 0))
    assert search_index_definition(pipeline(), 3072, server_version=ServerVersion(7, 6, 2))
    with pytest.raises(ValueError, match="1..4096"):
        search_index_definition(pipeline(), 5000)


def test_names_fit_both_services() -> None:
    p = pipeline(name="hotel-reviews")
    assert search_index_name(p) == "cbembed_hotel_reviews"
    assert gsi_index_name(p) == "cbembed_hotel_reviews_hv"
    q = pipeline(index={"name": "my_idx", "gsi": "composite"})
    assert (search_index_name(q), gsi_index_name(q)) == ("my_idx", "my_idx_cv")


def test_field_kinds_from_template_filter_and_config() -> None:
    p = pipeline(filter={"type": "hotel", "rating": {"gte": 3}, "pets": True,
                         "city": {"in": ["Nice", "Lyon"]}},
                 index={"filter_fields": {"stars": "number", "name": "keyword"}})
    assert text_fields(p) == ["name", "description", "address.city"]
    assert filter_fields(p) == ["type", "rating", "pets", "city", "stars", "name"]
    assert field_kinds(p) == {"name": "keyword", "description": "text", "address.city": "text",
                              "type": "keyword", "rating": "number", "pets": "boolean",
                              "city": "keyword", "stars": "number"}
    assert text_fields(pipeline(index={"text_fields": ["description"]})) == ["description"]


@pytest.mark.parametrize(("index", "need"), [
    ({}, 1000), ({"train_list": 5000}, 5000), ({"description": "IVF4096,SQ8"}, 4096),
    ({"min_docs_to_build": 10}, 10),
])
def test_min_docs_to_build(index: dict[str, Any], need: int) -> None:
    assert min_docs_to_build(pipeline(index=index)) == need


@pytest.mark.parametrize(("index", "path"), [
    ({"description": "HNSW"}, "pipelines.0.index.description"),
    ({"name": "9lives"}, "pipelines.0.index.name"),
    ({"gsi": "btree"}, "pipelines.0.index.gsi"),
    ({"filter_fields": {"x": "date"}}, "pipelines.0.index.filter_fields.x"),
])
def test_index_config_errors_name_the_path(index: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(storage="couchbase://h", pipelines=[{**HOTELS, "index": index}])
    assert path in str(err.value)


# -- filters -----------------------------------------------------------------------------------
KW = {"analyzer": "keyword", "field": "type", "match": "hotel"}


@pytest.mark.parametrize(("flt", "query"), [
    ({"type": "hotel"}, KW),
    ({"type": "hotel", "rating": {"gte": 4}},
     {"conjuncts": [KW, {"min": 4, "inclusive_min": True, "field": "rating"}]}),
    ({"rating": 5}, {"min": 5, "max": 5, "inclusive_min": True, "inclusive_max": True,
                     "field": "rating"}),
    ({"rating": {"lt": 3}}, {"max": 3, "inclusive_max": False, "field": "rating"}),
    ({"type": {"in": ["hotel", "inn"]}},
     {"disjuncts": [KW, {"analyzer": "keyword", "field": "type", "match": "inn"}]}),
    ({"type": {"ne": "hotel"}}, {"must": {"conjuncts": [{"match_all": {}}]},
                                 "must_not": {"disjuncts": [KW]}}),
    ({"description": "sea view"},
     {"match": "sea view", "field": "description", "operator": "and"}),
    ({"pets": True}, {"bool": True, "field": "pets"}),
    ({"type": {"in": []}}, {"match_none": {}}),
])
def test_filter_to_search_query(flt: dict[str, Any], query: dict[str, Any]) -> None:
    p = pipeline(index={"filter_fields": {"pets": "boolean"}})
    assert fts.filter_query(p, FieldFilter.model_validate(flt)) == query


@pytest.mark.parametrize(("flt", "message"), [
    ({"country": "FR"}, "not in the Search index"),
    ({"type": {"exists": True}}, "no Search-service equivalent"),
    ({"rating": "high"}, "maps it as a number"),
])
def test_filter_to_search_query_refuses_loudly(flt: dict[str, Any], message: str) -> None:
    with pytest.raises(SearchError, match=message):
        fts.filter_query(pipeline(), FieldFilter.model_validate(flt))


@pytest.mark.parametrize(("flt", "sql", "params"), [
    ({"type": "hotel"}, "d.`type` = $f0", {"f0": "hotel"}),
    ({"rating": {"gte": 3, "lt": 5}}, "d.`rating` >= $f0 AND d.`rating` < $f1",
     {"f0": 3, "f1": 5}),
    ({"address.city": {"in": ["Nice"]}}, "d.`address`.`city` IN $f0", {"f0": ["Nice"]}),
    ({"type": {"ne": "inn"}}, "(d.`type` IS MISSING OR d.`type` != $f0)", {"f0": "inn"}),
    ({"type": {"nin": ["inn"]}}, "(d.`type` IS MISSING OR d.`type` NOT IN $f0)",
     {"f0": ["inn"]}),
    ({"photo": {"exists": True}}, "d.`photo` IS VALUED", {}),
    ({"photo": {"exists": False}}, "d.`photo` IS NOT VALUED", {}),
    ({"closed": None}, "d.`closed` IS NULL", {}),
    ({"type": {"nin": []}}, "", {}),
])
def test_filter_to_sqlpp_where(flt: dict[str, Any], sql: str, params: dict[str, Any]) -> None:
    got: dict[str, Any] = {}
    assert where_clause(FieldFilter.model_validate(flt), got) == sql
    assert got == params


def _with_vector_marker(named: dict[str, Any], vec: list[float]) -> dict[str, Any]:
    text = json.dumps(named).replace(json.dumps(vec), '"<384 floats>"')
    return json.loads(text)  # type: ignore[no-any-return]


def test_sqlpp_builders_match_the_golden_files() -> None:
    vec = [0.01 * i for i in range(384)]
    flt = FieldFilter.model_validate({"type": "hotel", "rating": {"gte": 4}})
    q = sqlpp_vector_query(pipeline(), vec, k=5, filter=flt, fields=["name"], nprobes=8)
    want = golden("sqlpp_vector_query.json")
    assert q.statement == want["statement"]
    assert _with_vector_marker({"$" + k: v for k, v in q.params.items()}, vec) == want["named"]
    s = sqlpp_search_query(pipeline(), vector=vec, k=5,
                           filter=FieldFilter.model_validate({"type": "hotel"}), fields=["name"])
    want = golden("sqlpp_search_knn.json")
    assert s.statement == want["statement"]
    assert _with_vector_marker({"$" + k: v for k, v in s.params.items()}, vec) == want["named"]


def test_sqlpp_vector_query_variants() -> None:
    p = pipeline(similarity="dot")
    exact = sqlpp_vector_query(p, [1.0, 0.0], exact=True, include_document=True)
    assert 'VECTOR_DISTANCE(d.`embedding`, $qv, "DOT") AS distance' in exact.statement
    assert "APPROX" not in exact.statement and ", d AS `document`" in exact.statement
    rerank = sqlpp_vector_query(p, [1.0, 0.0], nprobes=4, rerank=True)
    assert 'APPROX_VECTOR_DISTANCE(d.`embedding`, $qv, "DOT", 4, TRUE)' in rerank.statement
    with pytest.raises(SearchError, match="rerank needs nprobes"):
        sqlpp_vector_query(p, [1.0], rerank=True)
    with pytest.raises(ServerVersionError, match="APPROX_VECTOR_DISTANCE"):
        sqlpp_vector_query(p, [1.0], server_version=ServerVersion(7, 6, 4))
    hybrid = sqlpp_search_query(p, vector=[1.0], text="beach", k=3)
    assert hybrid.params["search"]["query"]["disjuncts"][0] == {"match": "beach",
                                                               "field": "name"}
    assert hybrid.params["search"]["knn"][0]["k"] == 3


def test_helpers_api_is_listed_and_imports_neither_torch_nor_the_sdk() -> None:
    import subprocess
    import sys

    from connector.couchbase import query_helpers

    assert sorted(query_helpers.__all__) == query_helpers.__all__
    assert all(callable(getattr(query_helpers, n)) for n in query_helpers.__all__)
    code = ("import sys, index_defs, connector.couchbase.query_helpers, connector.embed_server; "
            "print('torch' in sys.modules, 'couchbase.cluster' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
