"""SQL++ statements for vector search, built from a pipeline (pure). Every value travels as a
named parameter (`$qv` the query vector, `$f0`.. filter values, `$search` a Search request), so
statements are safe to log and the Query service can cache their plans.

    APPROX_VECTOR_DISTANCE (Server 8.0+, uses the pipeline's Hyperscale/Composite index):
        SELECT META(d).id AS id, APPROX_VECTOR_DISTANCE(d.`embedding`, $qv, "COSINE") AS distance
        FROM `travel`.`inventory`.`hotels` AS d WHERE d.`type` = $f0
        ORDER BY APPROX_VECTOR_DISTANCE(d.`embedding`, $qv, "COSINE") LIMIT 10
    SEARCH() with knn (7.6+, uses the pipeline's Search index):
        SELECT META(d).id AS id, SEARCH_SCORE(d) AS score FROM `travel`.`inventory`.`hotels` AS d
        WHERE SEARCH(d, $search, {"index": "cbembed_hotels"}) ORDER BY SEARCH_SCORE(d) DESC LIMIT 10

`exact=True` uses VECTOR_DISTANCE (brute force, no index): the reference for measuring recall.
Filters keep `FieldFilter` semantics: `ne`/`nin` also match documents without the field,
`exists` means present and not null.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from connector.config import PipelineConfig
from connector.couchbase import fts
from connector.errors import SearchError
from connector.filters import FieldFilter
from index_defs import naming
from index_defs.gsi import gsi_similarity
from index_defs.versions import ServerVersion, require

ALIAS = "d"


class SqlppQuery(NamedTuple):
    statement: str
    params: dict[str, Any]  # named parameters, without the '$'


def where_clause(flt: FieldFilter | None, params: dict[str, Any], alias: str = ALIAS) -> str:
    """`FieldFilter` -> a SQL++ condition ("" without filter); values go into `params`."""
    if flt is None:
        return ""
    parts = []
    for field, op, arg in flt.conditions():
        path = naming.path_sql(alias, field)
        if op == "exists":
            parts.append(f"{path} IS {'' if arg else 'NOT '}VALUED")
            continue
        if op == "eq" and arg is None:
            parts.append(f"{path} IS NULL")
            continue
        if op == "ne" and arg is None:
            parts.append(f"({path} IS MISSING OR {path} IS NOT NULL)")
            continue
        if op == "nin" and not arg:
            continue
        name = f"f{len([k for k in params if k.startswith('f')])}"
        params[name] = arg
        if op == "eq":
            parts.append(f"{path} = ${name}")
        elif op == "ne":
            parts.append(f"({path} IS MISSING OR {path} != ${name})")
        elif op == "in":
            parts.append(f"{path} IN ${name}")
        elif op == "nin":
            parts.append(f"({path} IS MISSING OR {path} NOT IN ${name})")
        else:
            sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            parts.append(f"{path} {sym} ${name}")
    return " AND ".join(parts)


def _projection(fields: Sequence[str] | None, include_document: bool, alias: str) -> str:
    cols = [f"{naming.path_sql(alias, f)} AS {naming.quote(f)}" for f in fields or ()]
    if include_document:
        cols.append(f"{alias} AS `document`")
    return "".join(", " + c for c in cols)


def _vector(vector: Sequence[float]) -> list[float]:
    out = [float(x) for x in vector]
    if not out:
        raise SearchError("the query vector is empty")
    return out


def sqlpp_vector_query(
    p: PipelineConfig, vector: Sequence[float], *, k: int = 10,
    filter: FieldFilter | None = None, fields: Sequence[str] | None = None,
    include_document: bool = False, nprobes: int | None = None, rerank: bool = False,
    exact: bool = False, server_version: ServerVersion | None = None,
) -> SqlppQuery:
    """Nearest documents by APPROX_VECTOR_DISTANCE (or exact VECTOR_DISTANCE), filtered by
    WHERE; rows: {"id", "distance", <fields>..., "document"?}."""
    require("approx_vector_distance", server_version)
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    if rerank and nprobes is None:
        raise SearchError("rerank needs nprobes (APPROX_VECTOR_DISTANCE takes them in order)")
    params: dict[str, Any] = {"qv": _vector(vector)}
    vec = naming.path_sql(ALIAS, p.vector_field)
    metric = json.dumps(gsi_similarity(p))
    if exact:
        dist = f"VECTOR_DISTANCE({vec}, $qv, {metric})"
    else:
        extra = "" if nprobes is None else f", {int(nprobes)}" + (", TRUE" if rerank else "")
        dist = f"APPROX_VECTOR_DISTANCE({vec}, $qv, {metric}{extra})"
    where = where_clause(filter, params)
    statement = (
        f"SELECT META({ALIAS}).id AS id, {dist} AS distance"
        f"{_projection(fields, include_document, ALIAS)} "
        f"FROM {naming.keyspace_sql(p.parsed_keyspace)} AS {ALIAS}"
        + (f" WHERE {where}" if where else "")
        + f" ORDER BY {dist} LIMIT {int(k)}"
    )
    return SqlppQuery(statement, params)


def sqlpp_search_query(
    p: PipelineConfig, *, vector: Sequence[float] | None = None, text: str | None = None,
    k: int = 10, filter: FieldFilter | None = None, fields: Sequence[str] | None = None,
    include_document: bool = False, index: str | None = None,
    server_version: ServerVersion | None = None,
) -> SqlppQuery:
    """SEARCH() over the pipeline's Search index: knn (vector), keyword (text) or both in one
    request (the server OR-combines them); the filter is a Search pre-filter.
    Rows: {"id", "score", <fields>..., "document"?}."""
    if vector is None and text is None:
        raise SearchError("give a vector, a text, or both")
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    flt = fts.filter_query(p, filter)
    if flt is not None and vector is not None:
        require("search_knn_prefilter", server_version)
    query = fts.with_filter(fts.keyword_query(p, text), flt) if text is not None else None
    knn = [fts.knn_clause(p, _vector(vector), k, flt)] if vector is not None else None
    options = json.dumps({"index": index or naming.search_index_name(p)})
    statement = (
        f"SELECT META({ALIAS}).id AS id, SEARCH_SCORE({ALIAS}) AS score"
        f"{_projection(fields, include_document, ALIAS)} "
        f"FROM {naming.keyspace_sql(p.parsed_keyspace)} AS {ALIAS} "
        f"WHERE SEARCH({ALIAS}, $search, {options}) "
        f"ORDER BY SEARCH_SCORE({ALIAS}) DESC LIMIT {int(k)}"
    )
    return SqlppQuery(statement, {"search": fts.search_request(query, knn, k)})
