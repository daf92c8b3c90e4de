"""The Search-service (FTS) index of a pipeline: one vector field plus the text and filter
fields, in one type mapping, so that one request can be keyword + kNN (hybrid) with pre-filters.

Shape from couchbase docs-devex `sample-vector-search-index-payload.json` and
`search-index-params.adoc` (the `{field_name}` objects and their `fields` arrays):

    {"type": "fulltext-index", "name": ..., "sourceType": "gocbcore", "sourceName": <bucket>,
     "params": {"doc_config": {"mode": "scope.collection.type_field", ...},
                "mapping": {"default_mapping": {"enabled": false, ...},
                            "types": {"<scope>.<collection>": {"enabled": true,
                                      "dynamic": false, "properties": {...}}}},
                "store": {"indexType": "scorch", "segmentVersion": 16}}}

Similarity. A `cosine` pipeline stores unit-length vectors and embeds its queries the same way,
so the index uses `dot_product`: it ranks exactly as cosine does and works on every Search
service with vectors (7.6.0+), where `cosine` needs 7.6.4. `dot` -> dot_product, `l2` ->
l2_norm. `index check` accepts `cosine` too for cosine pipelines.
"""

from __future__ import annotations

from typing import Any

from connector.config import IndexFieldKind, PipelineConfig
from index_defs import naming
from index_defs.fields import field_kinds
from index_defs.versions import MAX_SEARCH_DIMS, ServerVersion, require

SEARCH_SIMILARITY = {"cosine": "dot_product", "dot": "dot_product", "l2": "l2_norm"}
#: similarities `index check` accepts for a pipeline's similarity
ACCEPTED_SIMILARITY = {
    "cosine": {"dot_product", "cosine"},
    "dot": {"dot_product"},
    "l2": {"l2_norm"},
}


def vector_similarity(p: PipelineConfig) -> str:
    return SEARCH_SIMILARITY[p.similarity]


def vector_field_mapping(p: PipelineConfig, dims: int) -> dict[str, Any]:
    return {
        "dims": dims,
        "index": True,
        "name": p.vector_field.split(".")[-1],
        "similarity": vector_similarity(p),
        "type": "vector",
        "vector_index_optimized_for": p.index.optimized_for,
    }


def scalar_field_mapping(name: str, kind: IndexFieldKind) -> dict[str, Any]:
    field: dict[str, Any] = {
        "docvalues": kind != "text",
        "include_in_all": kind == "text",
        "include_term_vectors": False,
        "index": True,
        "name": name.split(".")[-1],
        "store": True,
        "type": "text" if kind in ("text", "keyword") else kind,
    }
    if kind == "keyword":
        field["analyzer"] = "keyword"
    return field


def _put(properties: dict[str, Any], dotted: str, field: dict[str, Any]) -> None:
    """Place one child field at a (dotted) path, creating the parent objects."""
    *parents, leaf = dotted.split(".")
    node = properties
    for seg in parents:
        parent = node.setdefault(seg, {"dynamic": False, "enabled": True, "properties": {}})
        node = parent.setdefault("properties", {})
    node[leaf] = {"dynamic": False, "enabled": True, "fields": [field]}


def type_mapping(p: PipelineConfig, dims: int) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    _put(properties, p.vector_field, vector_field_mapping(p, dims))
    for name, kind in field_kinds(p).items():
        _put(properties, name, scalar_field_mapping(name, kind))
    return {"dynamic": False, "enabled": True, "properties": properties}


def check_dims(dims: int, version: ServerVersion | None) -> None:
    if not 1 <= dims <= MAX_SEARCH_DIMS:
        raise ValueError(f"a Search vector field takes 1..{MAX_SEARCH_DIMS} dims, not {dims}")
    if dims > 2048:
        require("search_dims_4096", version, f"the encoder makes {dims}-dim vectors")


def search_index_definition(
    p: PipelineConfig, dims: int, *, server_version: ServerVersion | None = None
) -> dict[str, Any]:
    """The index definition the Search REST API (and the SDK's index manager) takes."""
    require("search_vector", server_version)
    check_dims(dims, server_version)
    ks = p.parsed_keyspace
    return {
        "type": "fulltext-index",
        "name": naming.search_index_name(p),
        "sourceType": "gocbcore",
        "sourceName": ks.bucket,
        "params": {
            "doc_config": {
                "docid_prefix_delim": "",
                "docid_regexp": "",
                "mode": "scope.collection.type_field",
                "type_field": "type",
            },
            "mapping": {
                "default_analyzer": "standard",
                "default_datetime_parser": "dateTimeOptional",
                "default_field": "_all",
                "default_mapping": {"dynamic": False, "enabled": False},
                "default_type": "_default",
                "docvalues_dynamic": False,
                "index_dynamic": False,
                "store_dynamic": False,
                "type_field": "_type",
                "types": {naming.type_mapping_name(ks): type_mapping(p, dims)},
            },
            "store": {"indexType": "scorch", "segmentVersion": 16},
        },
    }


def find_vector_field(params: dict[str, Any], type_name: str, dotted: str) -> dict[str, Any] | None:
    """The vector child field at `dotted` in type mapping `type_name` of index `params`."""
    types = ((params or {}).get("mapping") or {}).get("types") or {}
    node: dict[str, Any] | None = types.get(type_name)
    segs = dotted.split(".")
    for seg in segs:
        if node is None:
            return None
        node = (node.get("properties") or {}).get(seg)
    if node is None:
        return None
    for f in node.get("fields") or []:
        if f.get("type") in ("vector", "vector_base64") and f.get("name", segs[-1]) == segs[-1]:
            return dict(f)
    return None
