"""Search service on the fts port: index definitions (global ``/api/index/<name>`` and scoped
``/api/bucket/<b>/scope/<s>/index/<name>``), ``/query``, ``/count`` and ``/api/ping``.

Runs on the server loop (``http.serve_http``). Replies follow the shapes the SDK parses
(couchbase-cxx-client search_index_* and document_search): ``{"status":"ok",...}``, errors
as HTTP 400 ``{"status":"fail","error":"... index not found"}``. Version gates (from
couchbase-vectors.md): vector fields need 7.6.0; ``vector_base64`` and dims above 2048 need
7.6.2; ``cosine`` and knn ``filter`` need 7.6.4; dims at most 4096.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from . import search_engine as se
from .context import ServerContext
from .http import HttpReply, HttpRequest


def _fail(msg: str, status: int = 400) -> HttpReply:
    return HttpReply(status, {"status": "fail", "error": msg})


class SearchService:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        #: (scope or "" for global, name) -> index definition (with uuid)
        self.indexes: dict[tuple[str, str], dict[str, Any]] = {}

    # -- mapping helpers ---------------------------------------------------------------------
    def _targets(self, idx: dict[str, Any]) -> list[tuple[str, str, str | None]]:
        params = idx.get("params") or {}
        mapping = params.get("mapping") or {}
        out = []
        for name, tmap in (mapping.get("types") or {}).items():
            if not (tmap or {}).get("enabled", True):
                continue
            parts = name.split(".")
            if len(parts) >= 2:
                out.append((parts[0], parts[1], ".".join(parts[2:]) or None))
            else:
                out.append(("_default", "_default", parts[0]))
        if (mapping.get("default_mapping") or {}).get("enabled", False):
            out.append(("_default", "_default", None))
        return out

    def _vector_fields(self, idx: dict[str, Any]) -> dict[str, se.VectorField]:
        mapping = (idx.get("params") or {}).get("mapping") or {}
        found: dict[str, se.VectorField] = {}

        def walk(node: dict[str, Any], prefix: str) -> None:
            for pname, prop in (node.get("properties") or {}).items():
                path = f"{prefix}{pname}"
                for f in prop.get("fields") or []:
                    if f.get("type") in ("vector", "vector_base64"):
                        fpath = f"{prefix}{f.get('name') or pname}"
                        found[fpath] = se.VectorField(fpath, int(f.get("dims", 0)),
                                                      str(f.get("similarity", "l2_norm")),
                                                      f.get("type") == "vector_base64")
                walk(prop, path + ".")

        for tmap in list((mapping.get("types") or {}).values()) + [
                mapping.get("default_mapping") or {}]:
            walk(tmap or {}, "")
        return found

    def _validate(self, idx: dict[str, Any], scope: str) -> str | None:
        if idx.get("type") not in ("fulltext-index", "fulltext-alias"):
            return f"unknown indexType: {idx.get('type')!r}"
        if idx.get("sourceName") not in (None, "", self.ctx.bucket):
            return f"bucket {idx.get('sourceName')!r} not found"
        for s, _c, _t in self._targets(idx):
            if scope and s != scope:
                return f"index mapping refers to scope {s!r} outside scope {scope!r}"
        for vf in self._vector_fields(idx).values():
            if not self.ctx.at_least(7, 6):
                return "vector fields need server 7.6.0+"
            max_dims = 4096 if self.ctx.at_least(7, 6, 2) else 2048
            if not 1 <= vf.dims <= max_dims:
                return f"vector field {vf.path}: dims must be in 1..{max_dims}"
            sims = {"dot_product", "l2_norm"}
            if self.ctx.at_least(7, 6, 4):
                sims.add("cosine")
            if vf.similarity not in sims:
                return f"vector field {vf.path}: unsupported similarity {vf.similarity!r}"
            if vf.base64 and not self.ctx.at_least(7, 6, 2):
                return "vector_base64 needs server 7.6.2+"
        return None

    def corpus(self, idx: dict[str, Any]) -> se.Corpus:
        store = self.ctx.store
        type_field = ((idx.get("params") or {}).get("doc_config") or {}).get("type_field", "type")
        docs: dict[str, Any] = {}
        with store.lock:
            targets = []
            for scope, coll, tval in self._targets(idx):
                try:
                    targets.append((store.manifest.lookup(scope, coll).cid, tval))
                except Exception:  # noqa: BLE001 - a mapping may name a dropped collection
                    continue
            for vb in store.vbuckets:
                for (cid, key), item in vb.docs.items():
                    if item.deleted or not item.is_json:
                        continue
                    for tcid, tval in targets:
                        if cid != tcid:
                            continue
                        value = json.loads(item.body)
                        if tval is None or (isinstance(value, dict)
                                            and value.get(type_field) == tval):
                            docs[key.decode()] = value
                            break
        return se.Corpus(docs, self._vector_fields(idx))

    # -- HTTP ------------------------------------------------------------------------------------
    async def handle(self, req: HttpRequest) -> HttpReply:
        parts = req.parts()
        if parts == ["api", "ping"]:
            return HttpReply(200, {})
        scope = ""
        if parts[:2] == ["api", "bucket"] and len(parts) >= 5 and parts[3] == "scope":
            if parts[2] != self.ctx.bucket:
                return _fail(f"bucket {parts[2]!r} not found", 404)
            scope = parts[4]
            rest = parts[5:]
        elif parts[:1] == ["api"]:
            rest = parts[1:]
        else:
            return _fail("not found", 404)
        if not rest or rest[0] != "index":
            return _fail("not found", 404)
        if scope and not self.ctx.at_least(7, 6):
            return _fail("scoped indexes need server 7.6.0+", 404)
        if len(rest) == 1 and req.method == "GET":
            defs = {name: d for (s, name), d in self.indexes.items() if not scope or s == scope}
            return HttpReply(200, {"status": "ok",
                                   "indexDefs": {"implVersion": "5.7.0", "indexDefs": defs}})
        if len(rest) < 2:
            return _fail("not found", 404)
        name = rest[1]
        key = (scope, name)
        if len(rest) == 2:
            return self._index_op(req, key)
        idx = self.indexes.get(key) or (None if scope else self._any_named(name))
        if idx is None:
            return _fail("rest_index: Query, indexName: " + name + ", err: index not found")
        if rest[2] == "count" and req.method == "GET":
            return HttpReply(200, {"status": "ok", "count": len(self.corpus(idx).docs)})
        if rest[2] == "query" and req.method == "POST":
            return self._query(idx, req.json() or {})
        return _fail("not found", 404)

    def _any_named(self, name: str) -> dict[str, Any] | None:
        for (_s, n), d in self.indexes.items():
            if n == name:
                return d
        return None

    def _index_op(self, req: HttpRequest, key: tuple[str, str]) -> HttpReply:
        existing = self.indexes.get(key)
        if req.method == "GET":
            if existing is None:
                return _fail("rest_auth: preparePerms, err: index not found")
            return HttpReply(200, {"status": "ok", "indexDef": existing})
        if req.method == "DELETE":
            if existing is None:
                return _fail("rest_auth: preparePerms, err: index not found")
            del self.indexes[key]
            return HttpReply(200, {"status": "ok", "uuid": existing["uuid"]})
        if req.method != "PUT":
            return _fail("method not allowed", 405)
        body = req.json()
        if not isinstance(body, dict):
            return _fail("rest_create_index: could not parse index definition")
        if body.get("name", key[1]) != key[1]:
            return _fail("rest_create_index: index name in body does not match the path")
        problem = self._validate(body, key[0])
        if problem:
            return _fail(f"rest_create_index: {problem}")
        if existing is not None and body.get("uuid") != existing["uuid"]:
            return _fail("rest_create_index: index with the same name already exists")
        definition = dict(body, name=key[1], uuid=uuid.uuid4().hex[:16],
                          sourceName=body.get("sourceName") or self.ctx.bucket,
                          sourceType=body.get("sourceType", "gocbcore"))
        self.indexes[key] = definition
        return HttpReply(200, {"status": "ok", "uuid": definition["uuid"], "name": key[1]})

    def _query(self, idx: dict[str, Any], body: dict[str, Any]) -> HttpReply:
        started = time.perf_counter_ns()
        if body.get("knn") and not self.ctx.at_least(7, 6):
            return _fail("rest_index: Query, err: knn needs server 7.6.0+")
        corpus = self.corpus(idx)
        try:
            scores = se.run(corpus, body, allow_knn_filter=self.ctx.at_least(7, 6, 4))
        except se.SearchError as err:
            return _fail(f"rest_index: Query, indexName: {idx['name']}, err: {err}")
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        sort = body.get("sort") or ["-_score"]
        for spec in reversed(sort):
            if isinstance(spec, str) and spec.lstrip("-") != "_score":
                fld, desc = spec.lstrip("-"), spec.startswith("-")

                def sort_key(kv: tuple[str, float], f: str = fld) -> str:
                    return kv[0] if f == "_id" else str(se.get_path(corpus.docs[kv[0]], f))

                ranked.sort(key=sort_key, reverse=desc)
        start = int(body.get("from", 0) or 0)
        size = int(body.get("size", 10) if body.get("size") is not None else 10)
        wanted = body.get("fields") or []
        hits = []
        for doc_id, score in ranked[start : start + size]:
            hit: dict[str, Any] = {"index": f"{idx['name']}_{idx['uuid']}_0", "id": doc_id,
                                   "score": score, "sort": ["_score"]}
            doc = corpus.docs[doc_id]
            if wanted:
                fields = {}
                for f in wanted:
                    if f == "*" and isinstance(doc, dict):
                        fields.update({k: v for k, v in doc.items()
                                       if not isinstance(v, (dict, list))})
                    elif (v := se.get_path(doc, f)) is not None:
                        fields[f] = v
                hit["fields"] = fields
            hits.append(hit)
        return HttpReply(200, {
            "status": {"total": 1, "failed": 0, "successful": 1},
            "request": body,
            "hits": hits,
            "total_hits": len(ranked),
            "max_score": max((s for _, s in ranked), default=0.0),
            "took": time.perf_counter_ns() - started,
            "facets": None,
        })
