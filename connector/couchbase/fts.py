"""Search-service request parts from a pipeline, a query text, a vector and a `FieldFilter`
(pure dicts, as in search-request-params.adoc; the SDK wrappers live in query_helpers).

    keyword leg   {"disjuncts": [{"match": text, "field": f}, ...]}   over the text fields
    filter        {"conjuncts": [...]} or {"must": ..., "must_not": ...} over filter fields
    knn clause    {"field": vector_field, "vector": [...], "k": n, "filter": <filter>}

Filters follow `FieldFilter` semantics where the Search service can: strings compare with a
`match` (keyword fields: the keyword analyzer, so exact; text fields: every token, operator
"and"), numbers with an inclusive numeric range, booleans with a `bool` query; `ne`/`nin` are
`must_not` clauses. `exists` has no Search equivalent (SearchError: use the SQL++ helpers). A
filter on a field the index does not map is an error, never silently empty results.
"""

from __future__ import annotations

from typing import Any

from connector.config import IndexFieldKind, PipelineConfig
from connector.errors import SearchError
from connector.filters import FieldFilter
from index_defs.fields import field_kinds, text_fields

Query = dict[str, Any]
MATCH_NONE: Query = {"match_none": {}}
MATCH_ALL: Query = {"match_all": {}}


def keyword_query(p: PipelineConfig, text: str) -> Query:
    fields = text_fields(p)
    if not fields:
        raise SearchError(
            f"pipeline {p.name}: no text fields for keyword search (set index.text_fields)"
        )
    clauses = [{"match": text, "field": f} for f in fields]
    return clauses[0] if len(clauses) == 1 else {"disjuncts": clauses}


def _equals(field: str, kind: IndexFieldKind, value: Any) -> Query:
    if kind in ("keyword", "text"):
        if not isinstance(value, str):
            raise SearchError(f"filter on {field!r}: the index maps it as {kind}, not {value!r}")
        q: Query = {"match": value, "field": field}
        if kind == "keyword":
            q["analyzer"] = "keyword"
        else:
            q["operator"] = "and"
        return q
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SearchError(f"filter on {field!r}: the index maps it as a number, not {value!r}")
        return {"min": value, "max": value, "inclusive_min": True, "inclusive_max": True,
                "field": field}
    if not isinstance(value, bool):
        raise SearchError(f"filter on {field!r}: the index maps it as a boolean, not {value!r}")
    return {"bool": value, "field": field}


def _range(field: str, kind: IndexFieldKind, op: str, value: Any) -> Query:
    bound = "min" if op in ("gt", "gte") else "max"
    inclusive = op in ("gte", "lte")
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return {bound: value, f"inclusive_{bound}": inclusive, "field": field}
    if kind == "keyword" and isinstance(value, str):
        return {bound: value, f"inclusive_{bound}": inclusive, "field": field}  # term range
    raise SearchError(f"filter on {field!r}: {op} needs a number (or text on a keyword field)")


def filter_query(p: PipelineConfig, flt: FieldFilter | None) -> Query | None:
    """The filter as one Search query (None: no filter)."""
    if flt is None or not flt.root:
        return None
    kinds = field_kinds(p)
    must: list[Query] = []
    must_not: list[Query] = []
    for field, op, arg in flt.conditions():
        kind = kinds.get(field)
        if kind is None:
            raise SearchError(
                f"filter field {field!r} is not in the Search index of pipeline {p.name}: add "
                "it to index.filter_fields and run `cbembed index apply`"
            )
        if op == "exists":
            raise SearchError(
                f"filter on {field!r}: 'exists' has no Search-service equivalent; use the SQL++ "
                "helpers (sqlpp_vector_query) for it"
            )
        if op == "eq":
            must.append(_equals(field, kind, arg))
        elif op == "ne":
            must_not.append(_equals(field, kind, arg))
        elif op == "in":
            if not arg:
                return MATCH_NONE
            must.append({"disjuncts": [_equals(field, kind, v) for v in arg]})
        elif op == "nin":
            must_not.extend(_equals(field, kind, v) for v in arg)
        else:
            must.append(_range(field, kind, op, arg))
    if not must_not:
        return must[0] if len(must) == 1 else {"conjuncts": must}
    return {"must": {"conjuncts": must or [MATCH_ALL]}, "must_not": {"disjuncts": must_not}}


def with_filter(query: Query, flt: Query | None) -> Query:
    return query if flt is None else {"conjuncts": [query, flt]}


def knn_clause(
    p: PipelineConfig, vector: list[float], k: int, flt: Query | None = None
) -> dict[str, Any]:
    clause: dict[str, Any] = {"field": p.vector_field, "k": k, "vector": vector}
    if flt is not None:
        clause["filter"] = flt
    return clause


def search_request(
    query: Query | None, knn: list[dict[str, Any]] | None, size: int,
    fields: list[str] | None = None,
) -> dict[str, Any]:
    """A whole Search request body (what SQL++ SEARCH() takes as its query argument)."""
    body: dict[str, Any] = {"query": query if query is not None else MATCH_NONE}
    if knn:
        body["knn"] = knn
    body["size"] = size
    if fields:
        body["fields"] = fields
    return body
