"""Vector, keyword and hybrid search on your own Couchbase `Cluster` or `Scope` (sync SDK) and
on acouchbase ones (the `a...` functions), embedding the query with the pipeline's encoder.

    from connector.config import load_settings
    from connector.couchbase.query_helpers import hybrid_search

    hotels = load_settings("cbembed.toml").pipeline("hotels")
    for hit in hybrid_search(cluster, hotels, "quiet hotel near the beach", k=5,
                             filter={"type": "hotel"}, fields=["name"]):
        print(hit.id, hit.score, hit.ranks, hit.fields)

Search service (the pipeline's Search index, Server 7.6+):
  `vector_search`, `keyword_search`, and `hybrid_search` with `fusion="rrf"` (two requests, a
  keyword leg and a vector leg, fused client-side by reciprocal rank: servers before score
  fusion only OR-combine the legs and add their scores) or `fusion="server"` (one request,
  keyword + kNN, the server's OR-combined scores). Filters are Search pre-filters.
Query service: `sqlpp_vector_search` (APPROX_VECTOR_DISTANCE on the pipeline's Hyperscale or
  Composite index, Server 8.0+, WHERE filters) and `sqlpp_search` (SEARCH() with knn); the
  statements come from `connector.couchbase.sqlpp` if you would rather run them yourself.

Before a Search request the index definition is read (cached for a minute) and its vector field
compared with the encoder: a dimension or field mismatch raises IndexDefinitionError instead of
the empty results the Search service would give. Queries are text (or an image, for encoders
that take image queries: a path, bytes or PIL image) or a ready vector. Results are
`SearchHit`s (id, score, fields, per-leg ranks and scores for rrf); `fields` and
`include_document` fetch the documents by key.
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from connector.config import PipelineConfig
from connector.couchbase import fts
from connector.couchbase.sqlpp import sqlpp_search_query, sqlpp_vector_query
from connector.errors import IndexDefinitionError, SearchError
from connector.filters import FieldFilter, coerce_filter
from connector.search.fusion import Fused, LegHit, reciprocal_rank_fusion
from connector.search.results import SearchHit, to_hits
from index_defs import naming
from index_defs.gsi import gsi_similarity, min_docs_to_build, score_from_distance
from index_defs.search_index import ACCEPTED_SIMILARITY, find_vector_field
from index_defs.versions import ServerVersion, require

FilterInput = FieldFilter | dict[str, Any] | None
Fusion = Literal["rrf", "server"]
INDEX_CHECK_TTL_S = 60.0
_SDK_WARNING = "Option scope_name is deprecated"  # emitted by the SDK's own scope.search

__all__ = [
    "ahybrid_search", "akeyword_search", "asqlpp_search", "asqlpp_vector_search",
    "avector_search", "embed_query", "hybrid_search", "keyword_search", "sqlpp_search",
    "sqlpp_vector_search", "vector_search",
]


# -- query embedding ----------------------------------------------------------------------------
def embed_query(pipeline: PipelineConfig, query: Any) -> list[float]:
    """Text, an image (path, bytes, PIL image) or a vector -> the query vector, made by the
    pipeline's own encoder and normalised like the stored vectors."""
    normalize = pipeline.similarity == "cosine"
    if isinstance(query, np.ndarray) or (
            isinstance(query, Sequence) and not isinstance(query, str | bytes)):
        vec = np.asarray(query, dtype=np.float32).reshape(-1)
        if normalize:
            vec = vec / (np.linalg.norm(vec) or 1.0)
        return [float(x) for x in vec]
    from encoders.registry import load_encoder

    enc = load_encoder(pipeline.encoder)
    modality = "text" if isinstance(query, str) else "image"
    if isinstance(query, str) and os.path.isfile(query) and "text" not in enc.query_modalities:
        modality = "image"
    if modality not in enc.query_modalities:
        raise SearchError(f"pipeline {pipeline.name}: its encoder takes no {modality} queries "
                          f"(it takes {', '.join(enc.query_modalities)})")
    vec = enc.encode_query(query, normalize=normalize)
    return [float(x) for x in np.asarray(vec, dtype=np.float32).reshape(-1)]


async def _aembed(pipeline: PipelineConfig, query: Any) -> list[float]:
    return await asyncio.to_thread(embed_query, pipeline, query)


# -- targets ------------------------------------------------------------------------------------
def _scope_of(target: Any, p: PipelineConfig) -> Any:
    """A Scope (checked against the pipeline's keyspace) or a Cluster (the scope is derived)."""
    ks = p.parsed_keyspace
    if hasattr(target, "collection") and hasattr(target, "bucket_name"):
        if (target.bucket_name, target.name) != (ks.bucket, ks.scope):
            raise SearchError(f"pipeline {p.name} lives in {ks.bucket}.{ks.scope}, not in "
                              f"{target.bucket_name}.{target.name}")
        return target
    if hasattr(target, "bucket"):
        return target.bucket(ks.bucket).scope(ks.scope)
    raise SearchError(f"expected a Couchbase Cluster or Scope, got {type(target).__name__}")


# -- the Search service -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Call:
    """One Search-service request: a keyword query and/or a kNN clause."""

    index: str
    query: dict[str, Any] | None
    knn: dict[str, Any] | None
    size: int


def _sdk_request(call: _Call) -> tuple[Any, Any]:
    from couchbase.options import SearchOptions
    from couchbase.search import RawQuery, SearchRequest
    from couchbase.vector_search import VectorQuery, VectorSearch

    vs = None
    if call.knn is not None:
        c = call.knn
        pre = RawQuery(c["filter"]) if "filter" in c else None
        vs = VectorSearch.from_vector_query(
            VectorQuery(c["field"], c["vector"], num_candidates=c["k"], prefilter=pre))
    if call.query is not None:
        req = SearchRequest.create(RawQuery(call.query))
        if vs is not None:
            req = req.with_vector_search(vs)
    else:
        req = SearchRequest.create(vs)
    return req, SearchOptions(limit=call.size)


def _search_error(call: _Call, e: Exception) -> SearchError:
    return SearchError(f"Search index {call.index!r}: {e}")


def _run(scope: Any, call: _Call) -> list[LegHit]:
    from couchbase.exceptions import CouchbaseException

    req, opts = _sdk_request(call)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SDK_WARNING)
            res = scope.search(call.index, req, opts)
        return [LegHit(r.id, float(r.score)) for r in res.rows()]
    except CouchbaseException as e:
        raise _search_error(call, e) from e


async def _arun(scope: Any, call: _Call) -> list[LegHit]:
    from couchbase.exceptions import CouchbaseException

    req, opts = _sdk_request(call)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SDK_WARNING)
            res = scope.search(call.index, req, opts)
        return [LegHit(r.id, float(r.score)) async for r in res.rows()]
    except CouchbaseException as e:
        raise _search_error(call, e) from e


# index definition checks, cached per (bucket, scope, index, pipeline fingerprint)
_checked: dict[tuple[str, ...], float] = {}


def _check_key(scope: Any, p: PipelineConfig, index: str, dims: int) -> tuple[str, ...]:
    return (scope.bucket_name, scope.name, index, p.vector_field, p.similarity, str(dims))


def verify_search_index(p: PipelineConfig, index: str, params: dict[str, Any], dims: int) -> None:
    """Raise IndexDefinitionError unless `params` (a Search index's params) carry the
    pipeline's vector field with `dims` dimensions and a similarity that ranks like the
    pipeline's."""
    ks = p.parsed_keyspace
    types = ((params or {}).get("mapping") or {}).get("types") or {}
    own = naming.type_mapping_name(ks)
    names = [t for t in types if t == own or t.startswith(own + ".")]
    if not names:
        raise IndexDefinitionError(
            f"Search index {index!r} has no type mapping for {own} (pipeline {p.name}): run "
            "`cbembed index apply`")
    field = next((f for t in names if (f := find_vector_field(params, t, p.vector_field))), None)
    if field is None:
        raise IndexDefinitionError(
            f"Search index {index!r} maps no vector field {p.vector_field!r} for {own} "
            f"(pipeline {p.name}): run `cbembed index apply`")
    if int(field.get("dims", 0)) != dims:
        raise IndexDefinitionError(
            f"Search index {index!r}: field {p.vector_field!r} has {field.get('dims')} dims, "
            f"the encoder of pipeline {p.name} ({p.encoder.model}) makes {dims}: the Search "
            "service would return no results; re-create the index (`cbembed index apply`)")
    sim = field.get("similarity", "l2_norm")
    if sim not in ACCEPTED_SIMILARITY[p.similarity]:
        raise IndexDefinitionError(
            f"Search index {index!r}: field {p.vector_field!r} uses similarity {sim!r}, "
            f"pipeline {p.name} is {p.similarity!r} (expected "
            f"{' or '.join(sorted(ACCEPTED_SIMILARITY[p.similarity]))})")


def _fresh(key: tuple[str, ...]) -> bool:
    return time.monotonic() - _checked.get(key, -1e9) < INDEX_CHECK_TTL_S


def _check_index(scope: Any, p: PipelineConfig, index: str, dims: int) -> None:
    from couchbase.exceptions import CouchbaseException

    key = _check_key(scope, p, index, dims)
    if _fresh(key):
        return
    try:
        got = scope.search_indexes().get_index(index)
    except CouchbaseException as e:
        raise _missing(index, p, e) from e
    verify_search_index(p, index, got.params, dims)
    _checked[key] = time.monotonic()


async def _acheck_index(scope: Any, p: PipelineConfig, index: str, dims: int) -> None:
    from couchbase.exceptions import CouchbaseException

    key = _check_key(scope, p, index, dims)
    if _fresh(key):
        return
    try:
        got = await scope.search_indexes().get_index(index)
    except CouchbaseException as e:
        raise _missing(index, p, e) from e
    verify_search_index(p, index, got.params, dims)
    _checked[key] = time.monotonic()


def _missing(index: str, p: PipelineConfig, e: Exception) -> SearchError:
    if "not found" in str(e).lower() or type(e).__name__ == "SearchIndexNotFoundException":
        return IndexDefinitionError(
            f"Search index {index!r} of pipeline {p.name} does not exist: run "
            "`cbembed index apply`")
    return SearchError(f"reading Search index {index!r}: {e}")


@dataclass
class _Prepared:
    p: PipelineConfig
    calls: dict[str, _Call]
    k: int
    fusion: str
    dims: int


def _prepare(
    p: PipelineConfig, text: str | None, vector: list[float] | None, *, k: int,
    filter: FilterInput, index: str | None, fusion: str, candidates: int | None,
    server_version: ServerVersion | None,
) -> _Prepared:
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    flt = fts.filter_query(p, coerce_filter(filter))
    name = index or naming.search_index_name(p)
    n = candidates or (max(4 * k, 50) if fusion == "rrf" and text and vector else k)
    if vector is not None and flt is not None:
        require("search_knn_prefilter", server_version)
    kw = fts.with_filter(fts.keyword_query(p, text), flt) if text is not None else None
    knn = fts.knn_clause(p, vector, n, flt) if vector is not None else None
    calls: dict[str, _Call] = {}
    if fusion == "server" or kw is None or knn is None:
        calls["single"] = _Call(name, kw, knn, k if fusion == "server" else n)
    else:
        calls = {"keyword": _Call(name, kw, None, n), "vector": _Call(name, None, knn, n)}
    return _Prepared(p, calls, k, fusion, len(vector) if vector else 0)


def _fuse(prep: _Prepared, legs: dict[str, list[LegHit]]) -> list[Fused]:
    if "single" in legs:
        return [Fused(h.id, h.score) for h in legs["single"][: prep.k]]
    return reciprocal_rank_fusion(legs, prep.k)





def _fetch(scope: Any, p: PipelineConfig, ids: Sequence[str]) -> dict[str, Any]:
    if not ids:
        return {}
    res = scope.collection(p.parsed_keyspace.collection).get_multi(list(ids))
    return {k: r.content_as[dict] for k, r in res.results.items()}


async def _afetch(scope: Any, p: PipelineConfig, ids: Sequence[str]) -> dict[str, Any]:
    from couchbase.exceptions import DocumentNotFoundException

    coll = scope.collection(p.parsed_keyspace.collection)

    async def one(key: str) -> tuple[str, Any]:
        try:
            return key, (await coll.get(key)).content_as[dict]
        except DocumentNotFoundException:
            return key, None

    got = await asyncio.gather(*(one(i) for i in ids))
    return {k: v for k, v in got if v is not None}


def _search(target: Any, p: PipelineConfig, prep: _Prepared, fields: Sequence[str] | None,
            include_document: bool, check_index: bool) -> list[SearchHit]:
    scope = _scope_of(target, p)
    if check_index and prep.dims:
        _check_index(scope, p, next(iter(prep.calls.values())).index, prep.dims)
    fused = _fuse(prep, {name: _run(scope, c) for name, c in prep.calls.items()})
    docs = _fetch(scope, p, [f.id for f in fused]) if fields or include_document else {}
    return to_hits(fused, docs, fields, include_document)


async def _asearch(target: Any, p: PipelineConfig, prep: _Prepared,
                   fields: Sequence[str] | None, include_document: bool,
                   check_index: bool) -> list[SearchHit]:
    scope = _scope_of(target, p)
    if check_index and prep.dims:
        await _acheck_index(scope, p, next(iter(prep.calls.values())).index, prep.dims)
    names = list(prep.calls)
    results = await asyncio.gather(*(_arun(scope, prep.calls[n]) for n in names))
    fused = _fuse(prep, dict(zip(names, results, strict=True)))
    docs = await _afetch(scope, p, [f.id for f in fused]) if fields or include_document else {}
    return to_hits(fused, docs, fields, include_document)


def vector_search(
    target: Any, pipeline: PipelineConfig, query: Any, *, k: int = 10,
    filter: FilterInput = None, fields: Sequence[str] | None = None,
    include_document: bool = False, index: str | None = None, check_index: bool = True,
    server_version: ServerVersion | None = None,
) -> list[SearchHit]:
    """kNN over the pipeline's Search index; `filter` is a pre-filter (Server 7.6.4+)."""
    prep = _prepare(pipeline, None, embed_query(pipeline, query), k=k, filter=filter,
                    index=index, fusion="server", candidates=None, server_version=server_version)
    return _search(target, pipeline, prep, fields, include_document, check_index)


def keyword_search(
    target: Any, pipeline: PipelineConfig, text: str, *, k: int = 10,
    filter: FilterInput = None, fields: Sequence[str] | None = None,
    include_document: bool = False, index: str | None = None,
) -> list[SearchHit]:
    """Match queries over the pipeline's text fields (no embedding)."""
    prep = _prepare(pipeline, text, None, k=k, filter=filter, index=index, fusion="server",
                    candidates=None, server_version=None)
    return _search(target, pipeline, prep, fields, include_document, False)


def hybrid_search(
    target: Any, pipeline: PipelineConfig, text: str, *, k: int = 10,
    filter: FilterInput = None, fields: Sequence[str] | None = None,
    include_document: bool = False, index: str | None = None, fusion: Fusion = "rrf",
    candidates: int | None = None, check_index: bool = True,
    server_version: ServerVersion | None = None,
) -> list[SearchHit]:
    """Keyword + vector. `fusion="rrf"`: two legs, each `candidates` deep (default
    max(4k, 50)), fused by reciprocal rank (hits carry `ranks` and `leg_scores`);
    `fusion="server"`: one request, the server's OR-combined scores."""
    _fusion_ok(fusion)
    prep = _prepare(pipeline, text, embed_query(pipeline, text), k=k, filter=filter,
                    index=index, fusion=fusion, candidates=candidates,
                    server_version=server_version)
    return _search(target, pipeline, prep, fields, include_document, check_index)


async def avector_search(
    target: Any, pipeline: PipelineConfig, query: Any, *, k: int = 10,
    filter: FilterInput = None, fields: Sequence[str] | None = None,
    include_document: bool = False, index: str | None = None, check_index: bool = True,
    server_version: ServerVersion | None = None,
) -> list[SearchHit]:
    """`vector_search` on an acouchbase Cluster or Scope (the query is embedded in a thread)."""
    vec = await _aembed(pipeline, query)
    prep = _prepare(pipeline, None, vec, k=k, filter=filter, index=index, fusion="server",
                    candidates=None, server_version=server_version)
    return await _asearch(target, pipeline, prep, fields, include_document, check_index)


async def akeyword_search(
    target: Any, pipeline: PipelineConfig, text: str, *, k: int = 10,
    filter: FilterInput = None, fields: Sequence[str] | None = None,
    include_document: bool = False, index: str | None = None,
) -> list[SearchHit]:
    prep = _prepare(pipeline, text, None, k=k, filter=filter, index=index, fusion="server",
                    candidates=None, server_version=None)
    return await _asearch(target, pipeline, prep, fields, include_document, False)


async def ahybrid_search(
    target: Any, pipeline: PipelineConfig, text: str, *, k: int = 10,
    filter: FilterInput = None, fields: Sequence[str] | None = None,
    include_document: bool = False, index: str | None = None, fusion: Fusion = "rrf",
    candidates: int | None = None, check_index: bool = True,
    server_version: ServerVersion | None = None,
) -> list[SearchHit]:
    """`hybrid_search` on an acouchbase Cluster or Scope; the two legs run concurrently."""
    _fusion_ok(fusion)
    vec = await _aembed(pipeline, text)
    prep = _prepare(pipeline, text, vec, k=k, filter=filter, index=index, fusion=fusion,
                    candidates=candidates, server_version=server_version)
    return await _asearch(target, pipeline, prep, fields, include_document, check_index)


def _fusion_ok(fusion: str) -> None:
    if fusion not in ("rrf", "server"):
        raise SearchError(f"unknown fusion {fusion!r}: use 'rrf' or 'server'")


# -- the Query service (SQL++) ------------------------------------------------------------------
def _query_options(params: dict[str, Any]) -> Any:
    from couchbase.options import QueryOptions

    return QueryOptions(named_parameters=params)


def _rows(target: Any, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from couchbase.exceptions import CouchbaseException

    try:
        return list(target.query(statement, _query_options(params)).rows())
    except CouchbaseException as e:
        raise SearchError(f"SQL++ query failed: {e}") from e


async def _arows(target: Any, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from couchbase.exceptions import CouchbaseException

    try:
        return [r async for r in target.query(statement, _query_options(params)).rows()]
    except CouchbaseException as e:
        raise SearchError(f"SQL++ query failed: {e}") from e


GSI_STATE_STATEMENT = ("SELECT i.* FROM system:indexes AS i WHERE i.bucket_id = $bucket AND "
                       "i.scope_id = $scope AND i.keyspace_id = $collection AND i.name = $name")


def gsi_state_query(p: PipelineConfig) -> tuple[str, dict[str, Any]]:
    ks = p.parsed_keyspace
    return GSI_STATE_STATEMENT, {"bucket": ks.bucket, "scope": ks.scope,
                                 "collection": ks.collection, "name": naming.gsi_index_name(p)}


def verify_gsi_row(p: PipelineConfig, row: dict[str, Any] | None, dims: int) -> None:
    """Raise unless the pipeline's GSI vector index exists, is online and (where the server
    reports its WITH options) has the encoder's dimension and the pipeline's metric."""
    from connector.couchbase.index_manager import gsi_row_options

    name = naming.gsi_index_name(p)
    if row is None:
        raise IndexDefinitionError(
            f"vector index {name} of pipeline {p.name} does not exist: run `cbembed index apply`")
    state = row.get("state")
    if state != "online":
        raise SearchError(
            f"vector index {name} is {state}: a Hyperscale/Composite index is trained when it "
            f"is built, which cbembed does once {min_docs_to_build(p)} documents exist "
            "(or run `cbembed index apply`); use exact=True meanwhile")
    opts = gsi_row_options(row)
    if "dimension" in opts and int(opts["dimension"]) != dims:
        raise IndexDefinitionError(
            f"vector index {name} has dimension {opts['dimension']}, the encoder of pipeline "
            f"{p.name} makes {dims}: re-create it (`cbembed index apply --replace`)")
    if "similarity" in opts and str(opts["similarity"]).upper() != gsi_similarity(p):
        raise IndexDefinitionError(
            f"vector index {name} uses {opts['similarity']}, pipeline {p.name} needs "
            f"{gsi_similarity(p)}: re-create it (`cbembed index apply --replace`)")


def _sqlpp_hits(p: PipelineConfig, rows: list[dict[str, Any]], fields: Sequence[str] | None,
                include_document: bool, distance: bool) -> list[SearchHit]:
    out = []
    for r in rows:
        score = score_from_distance(p, float(r["distance"])) if distance else float(r["score"])
        picked = {f: r.get(f) for f in fields or ()}
        out.append(SearchHit(str(r["id"]), score, picked,
                             document=r.get("document") if include_document else None))
    return out


def sqlpp_vector_search(
    target: Any, pipeline: PipelineConfig, query: Any, *, k: int = 10,
    filter: FilterInput = None, fields: Sequence[str] | None = None,
    include_document: bool = False, nprobes: int | None = None, rerank: bool = False,
    exact: bool = False, check_index: bool = True, server_version: ServerVersion | None = None,
) -> list[SearchHit]:
    """APPROX_VECTOR_DISTANCE over the pipeline's GSI vector index with WHERE filters (run on
    a Cluster or Scope); `exact=True`: VECTOR_DISTANCE, no index."""
    vec = embed_query(pipeline, query)
    q = sqlpp_vector_query(pipeline, vec, k=k, filter=coerce_filter(filter), fields=fields,
                           include_document=include_document, nprobes=nprobes, rerank=rerank,
                           exact=exact, server_version=server_version)
    if check_index and not exact:
        rows = _rows(target, *gsi_state_query(pipeline))
        verify_gsi_row(pipeline, rows[0] if rows else None, len(vec))
    return _sqlpp_hits(pipeline, _rows(target, *q), fields, include_document, True)


async def asqlpp_vector_search(
    target: Any, pipeline: PipelineConfig, query: Any, *, k: int = 10,
    filter: FilterInput = None, fields: Sequence[str] | None = None,
    include_document: bool = False, nprobes: int | None = None, rerank: bool = False,
    exact: bool = False, check_index: bool = True, server_version: ServerVersion | None = None,
) -> list[SearchHit]:
    vec = await _aembed(pipeline, query)
    q = sqlpp_vector_query(pipeline, vec, k=k, filter=coerce_filter(filter), fields=fields,
                           include_document=include_document, nprobes=nprobes, rerank=rerank,
                           exact=exact, server_version=server_version)
    if check_index and not exact:
        rows = await _arows(target, *gsi_state_query(pipeline))
        verify_gsi_row(pipeline, rows[0] if rows else None, len(vec))
    return _sqlpp_hits(pipeline, await _arows(target, *q), fields, include_document, True)


def sqlpp_search(
    target: Any, pipeline: PipelineConfig, query: Any = None, *, text: str | None = None,
    k: int = 10, filter: FilterInput = None, fields: Sequence[str] | None = None,
    include_document: bool = False, index: str | None = None,
    server_version: ServerVersion | None = None,
) -> list[SearchHit]:
    """SQL++ SEARCH() over the pipeline's Search index: knn for `query` (embedded), keyword
    for `text`, both in one request when both are given."""
    vec = embed_query(pipeline, query) if query is not None else None
    q = sqlpp_search_query(pipeline, vector=vec, text=text, k=k, filter=coerce_filter(filter),
                           fields=fields, include_document=include_document, index=index,
                           server_version=server_version)
    return _sqlpp_hits(pipeline, _rows(target, *q), fields, include_document, False)


async def asqlpp_search(
    target: Any, pipeline: PipelineConfig, query: Any = None, *, text: str | None = None,
    k: int = 10, filter: FilterInput = None, fields: Sequence[str] | None = None,
    include_document: bool = False, index: str | None = None,
    server_version: ServerVersion | None = None,
) -> list[SearchHit]:
    vec = await _aembed(pipeline, query) if query is not None else None
    q = sqlpp_search_query(pipeline, vector=vec, text=text, k=k, filter=coerce_filter(filter),
                           fields=fields, include_document=include_document, index=index,
                           server_version=server_version)
    return _sqlpp_hits(pipeline, await _arows(target, *q), fields, include_document, False)
