"""Brute-force evaluation of Search (FTS) requests over the stored documents.

Pure functions on plain data (called by ``search.SearchService`` on the server loop with a
snapshot of the documents). Supported query clauses: match (operator or/and), match_phrase,
term, prefix, conjunction, disjunction (min), boolean (must/should/must_not), match_all,
match_none, query-string (plain terms, ``field:term``), numeric range, docids; ``boost``.
kNN: each ``knn`` clause scores every document holding a vector of the index's dims in
``field`` (``vector`` or ``vector_base64``), optional ``filter`` query as a pre-filter,
keeps the top ``k``; clauses are combined with ``knn_operator`` (or/and), then OR-ed with
the keyword query, scores summed (7.6 / 8.0 behaviour: no rank fusion).

Scores: text = sum over matched terms of tf * idf / sqrt(field length); kNN dot_product =
dot, cosine = cosine similarity, l2_norm = 1 / (1 + squared distance). Higher is better.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r"\w+", re.UNICODE)


class SearchError(Exception):
    """A request the real service would reject (HTTP 400)."""


@dataclass
class VectorField:
    path: str
    dims: int
    similarity: str
    base64: bool = False


@dataclass
class Corpus:
    """Documents an index covers: id -> JSON value; plus the index's vector fields."""

    docs: dict[str, Any]
    vectors: dict[str, VectorField] = field(default_factory=dict)
    _idf_cache: dict[str, float] = field(default_factory=dict)

    def idf(self, token: str) -> float:
        if token not in self._idf_cache:
            n = sum(1 for d in self.docs.values() if token in tokens(all_text(d)))
            self._idf_cache[token] = math.log(1 + (len(self.docs) + 1) / (n + 1))
        return self._idf_cache[token]


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def get_path(doc: Any, path: str) -> Any:
    node = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    return []


def all_text(doc: Any) -> str:
    return " ".join(_strings(doc))


def _field_tokens(doc: Any, fld: str | None) -> list[str]:
    if not fld or fld == "_all":
        return tokens(all_text(doc))
    return tokens(" ".join(_strings(get_path(doc, fld))))


def _text_score(corpus: Corpus, doc_tokens: list[str], terms: list[str]) -> float:
    if not doc_tokens:
        return 0.0
    norm = 1 / math.sqrt(len(doc_tokens))
    return sum(doc_tokens.count(t) * corpus.idf(t) * norm for t in terms)


def evaluate(corpus: Corpus, query: Any) -> dict[str, float]:
    """doc id -> score for the documents that match ``query``."""
    if not isinstance(query, dict):
        raise SearchError(f"invalid query {query!r}")
    boost = float(query.get("boost", 1.0) or 1.0)
    result = _evaluate(corpus, query)
    return {k: v * boost for k, v in result.items()} if boost != 1.0 else result


def _evaluate(corpus: Corpus, q: dict[str, Any]) -> dict[str, float]:
    docs = corpus.docs
    if "match_all" in q:
        return {k: 1.0 for k in docs}
    if "match_none" in q:
        return {}
    if "ids" in q:
        return {k: 1.0 for k in q["ids"] if k in docs}
    if "conjuncts" in q:
        parts = [evaluate(corpus, c) for c in q["conjuncts"]]
        if not parts:
            return {}
        keys = set.intersection(*(set(p) for p in parts))
        return {k: sum(p[k] for p in parts) for k in keys}
    if "disjuncts" in q:
        parts = [evaluate(corpus, c) for c in q["disjuncts"]]
        minimum = int(q.get("min", 1) or 1)
        out: dict[str, float] = {}
        for k in {k for p in parts for k in p}:
            hits = [p[k] for p in parts if k in p]
            if len(hits) >= minimum:
                out[k] = sum(hits)
        return out
    if any(k in q for k in ("must", "should", "must_not")):
        return _boolean(corpus, q)
    fld = q.get("field")
    if "match" in q:
        terms = tokens(str(q["match"]))
        require_all = str(q.get("operator", "or")).lower() == "and"
        out = {}
        for k, d in docs.items():
            dt = _field_tokens(d, fld)
            present = [t for t in terms if t in dt]
            if present and (not require_all or len(present) == len(terms)):
                out[k] = _text_score(corpus, dt, present)
        return out
    if "match_phrase" in q:
        terms = tokens(str(q["match_phrase"]))
        out = {}
        for k, d in docs.items():
            dt = _field_tokens(d, fld)
            n = len(terms)
            if n and any(dt[i : i + n] == terms for i in range(len(dt) - n + 1)):
                out[k] = _text_score(corpus, dt, terms)
        return out
    if "term" in q:
        term = str(q["term"])
        return {k: _text_score(corpus, _field_tokens(d, fld), [term])
                for k, d in docs.items() if term in _field_tokens(d, fld)}
    if "prefix" in q:
        pre = str(q["prefix"])
        out = {}
        for k, d in docs.items():
            matched = [t for t in _field_tokens(d, fld) if t.startswith(pre)]
            if matched:
                out[k] = _text_score(corpus, _field_tokens(d, fld), matched)
        return out
    if "min" in q or "max" in q:
        return _numeric(corpus, q)
    if "query" in q:
        return _query_string(corpus, str(q["query"]))
    raise SearchError(f"unsupported query clause {sorted(q)}")


def _boolean(corpus: Corpus, q: dict[str, Any]) -> dict[str, float]:
    candidates = {k: 0.0 for k in corpus.docs}
    if q.get("must"):
        must = evaluate(corpus, q["must"])
        candidates = dict(must)
    if q.get("should"):
        should = evaluate(corpus, q["should"])
        if not q.get("must"):
            candidates = dict(should)
        else:
            for k in candidates:
                candidates[k] += should.get(k, 0.0)
    if q.get("must_not"):
        for k in evaluate(corpus, q["must_not"]):
            candidates.pop(k, None)
    return candidates


def _numeric(corpus: Corpus, q: dict[str, Any]) -> dict[str, float]:
    lo, hi = q.get("min"), q.get("max")
    inc_lo, inc_hi = q.get("inclusive_min", True), q.get("inclusive_max", False)
    out = {}
    for k, d in corpus.docs.items():
        v = get_path(d, q.get("field", ""))
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if lo is not None and (v < lo or (v == lo and not inc_lo)):
            continue
        if hi is not None and (v > hi or (v == hi and not inc_hi)):
            continue
        out[k] = 1.0
    return out


def _query_string(corpus: Corpus, text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split():
        fld, _, term = part.rpartition(":")
        hits = evaluate(corpus, {"match": term, "field": fld or None})
        for k, v in hits.items():
            out[k] = out.get(k, 0.0) + v
    return out


# -- kNN ----------------------------------------------------------------------------------------
def _doc_vector(doc: Any, vf: VectorField) -> list[float] | None:
    raw = get_path(doc, vf.path)
    if vf.base64 and isinstance(raw, str):
        try:
            data = base64.b64decode(raw)
            raw = list(struct.unpack(f"<{len(data) // 4}f", data))
        except (ValueError, struct.error):
            return None
    if not isinstance(raw, list) or len(raw) != vf.dims:
        return None  # not indexed: wrong shape or dims (silently, like the real service)
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
        return None
    return [float(x) for x in raw]


def similarity(kind: str, a: list[float], b: list[float]) -> float:
    if kind == "dot_product":
        return sum(x * y for x, y in zip(a, b, strict=True))
    if kind == "cosine":
        na = math.sqrt(sum(x * x for x in a))
        nb = math.sqrt(sum(x * x for x in b))
        if na == 0 or nb == 0:
            return 0.0
        return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)
    if kind == "l2_norm":
        return 1.0 / (1.0 + sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))
    raise SearchError(f"unknown similarity {kind}")


def knn(corpus: Corpus, clause: dict[str, Any], allow_filter: bool) -> dict[str, float]:
    fld = clause.get("field")
    vf = corpus.vectors.get(str(fld))
    if vf is None:
        raise SearchError(f"knn: field {fld!r} is not a vector field of this index")
    vec = clause.get("vector")
    if vec is None and "vector_base64" in clause:
        data = base64.b64decode(clause["vector_base64"])
        vec = list(struct.unpack(f"<{len(data) // 4}f", data))
    if not isinstance(vec, list) or len(vec) != vf.dims:
        raise SearchError(f"knn: query vector has {len(vec) if isinstance(vec, list) else 0} "
                          f"dims, field {fld!r} has {vf.dims}")
    k = int(clause.get("k", 3))
    allowed = None
    if clause.get("filter") is not None:
        if not allow_filter:
            raise SearchError("knn: filter needs server 7.6.4+")
        allowed = set(evaluate(corpus, clause["filter"]))
    scored = []
    for doc_id, doc in corpus.docs.items():
        if allowed is not None and doc_id not in allowed:
            continue
        dv = _doc_vector(doc, vf)
        if dv is not None:
            scored.append((similarity(vf.similarity, [float(x) for x in vec], dv), doc_id))
    scored.sort(key=lambda t: (-t[0], t[1]))
    boost = float(clause.get("boost", 1.0) or 1.0)
    return {doc_id: s * boost for s, doc_id in scored[:k]}


def run(corpus: Corpus, body: dict[str, Any], allow_knn_filter: bool) -> dict[str, float]:
    """Scores of every hit of a search request body (query + knn)."""
    hits = evaluate(corpus, body.get("query") or {"match_none": {}})
    clauses = body.get("knn") or []
    if clauses:
        parts = [knn(corpus, c, allow_knn_filter) for c in clauses]
        op = str(body.get("knn_operator", "or")).lower()
        if op == "and":
            keys = set.intersection(*(set(p) for p in parts))
        else:
            keys = {k for p in parts for k in p}
        for k in keys:
            hits[k] = hits.get(k, 0.0) + sum(p.get(k, 0.0) for p in parts)
    return hits
