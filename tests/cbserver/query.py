"""Query service (``POST /query/service``): records every statement with its arguments and
answers through a pluggable handler; the default one tracks GSI indexes.

Runs on the server loop (``http.serve_http``); ``records``/``indexes`` are read by tests
under ``ServerContext.lock``. Reply shape from couchbase-wire.md / the SDK's parser:
``requestID, clientContextID, signature, results, status, metrics`` and ``errors`` with
``code``/``msg`` on failure (4300 index exists, 12016 index not found, 3000 syntax error).

Default handling: ``CREATE [PRIMARY] [VECTOR] INDEX`` (vector forms need server 8.0+),
``BUILD INDEX``, ``DROP [PRIMARY] INDEX`` and ``SELECT ... FROM system:indexes``; every
other statement returns no rows.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .context import ServerContext
from .http import HttpReply, HttpRequest

_NAME = r"(?:`[^`]+`|[\w-]+)"
_KEYSPACE = rf"(?:default:)?({_NAME}(?:\.{_NAME}){{0,2}})"
_CREATE = re.compile(
    rf"^\s*CREATE\s+(PRIMARY\s+)?(VECTOR\s+)?INDEX\s+(IF\s+NOT\s+EXISTS\s+)?({_NAME})?\s*"
    rf"ON\s+{_KEYSPACE}\s*(?:\((.*?)\))?\s*(?:INCLUDE\s*\((.*?)\))?\s*"
    r"(?:WHERE\s+(.*?))?\s*(?:USING\s+GSI)?\s*(?:WITH\s+(\{.*\}))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL)
_BUILD = re.compile(rf"^\s*BUILD\s+INDEX\s+ON\s+{_KEYSPACE}\s*\((.*)\)\s*(?:USING\s+GSI)?\s*;?\s*$",
                    re.IGNORECASE | re.DOTALL)
_DROP = re.compile(
    rf"^\s*DROP\s+(PRIMARY\s+)?INDEX\s+(IF\s+EXISTS\s+)?(?:({_NAME})\s+ON\s+{_KEYSPACE}|"
    rf"ON\s+{_KEYSPACE}|{_KEYSPACE}\.({_NAME}))\s*(?:USING\s+GSI)?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL)


class QueryError(Exception):
    """Raise from a query handler to answer with an error (``code``/``msg``)."""

    def __init__(self, code: int, msg: str, http_status: int = 500) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.http_status = http_status


@dataclass
class QueryArgs:
    """Arguments of one request: named (without ``$``), positional, query_context, body."""

    named: dict[str, Any] = field(default_factory=dict)
    positional: list[Any] = field(default_factory=list)
    query_context: str = ""
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueryRecord:
    statement: str
    args: QueryArgs


@dataclass
class QueryIndex:
    name: str
    bucket: str
    scope: str
    collection: str
    index_key: list[str]
    is_primary: bool = False
    is_vector: bool = False
    state: str = "online"
    condition: str = ""
    include: list[str] = field(default_factory=list)
    with_: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "name": self.name, "using": "gsi", "state": self.state,
            "is_primary": self.is_primary, "index_key": self.index_key,
            "namespace_id": "default", "bucket_id": self.bucket, "scope_id": self.scope,
            "keyspace_id": self.collection, "id": uuid.uuid5(uuid.NAMESPACE_DNS, self.name).hex,
        }
        if self.condition:
            row["condition"] = self.condition
        if self.with_:
            row["with"] = self.with_
        return row


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith("`") else name


def _split_top(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


QueryHandler = Callable[[str, QueryArgs], "list[dict[str, Any]] | None"]


class QueryService:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.records: list[QueryRecord] = []
        self.indexes: dict[tuple[str, str, str, str], QueryIndex] = {}
        self.handler: QueryHandler | None = None
        self._prepared: dict[str, str] = {}

    def _keyspace(self, text: str, args: QueryArgs) -> tuple[str, str, str]:
        parts = [_unquote(p) for p in re.findall(_NAME, text)]
        if len(parts) == 3:
            return parts[0], parts[1], parts[2]
        if len(parts) == 1 and args.query_context:
            ctx_parts = [_unquote(p) for p in re.findall(_NAME, args.query_context.split(":")[-1])]
            if len(ctx_parts) == 2:
                return ctx_parts[0], ctx_parts[1], parts[0]
        return parts[0], "_default", "_default"

    def default_handler(self, statement: str, args: QueryArgs) -> list[dict[str, Any]]:
        if m := _CREATE.match(statement):
            return self._create(m, args)
        if m := _BUILD.match(statement):
            ks = self._keyspace(m.group(1), args)
            for name in _split_top(m.group(2)):
                idx = self.indexes.get((*ks, _unquote(name.strip())))
                if idx is None:
                    raise QueryError(12016, f"Index Not Found - cause: GSI index {name} not found.")
                idx.state = "online"
            return []
        if m := _DROP.match(statement):
            primary, if_exists = m.group(1), m.group(2)
            ks_text = m.group(4) or m.group(5) or m.group(6)
            name = m.group(3) or m.group(7) or "#primary"
            key = (*self._keyspace(ks_text, args), _unquote(name))
            if key not in self.indexes:
                if if_exists:
                    return []
                code = 12004 if primary else 12016
                raise QueryError(code, f"Index Not Found - cause: GSI index {key[3]} not found.")
            del self.indexes[key]
            return []
        if re.search(r"\bFROM\s+system:indexes\b", statement, re.IGNORECASE):
            return self._list(statement, args)
        return []

    def _create(self, m: re.Match[str], args: QueryArgs) -> list[dict[str, Any]]:
        primary, vector, if_not_exists, name, ks_text, keys, include, where, with_text = m.groups()
        keys_list = _split_top(keys or "")
        is_vector = bool(vector) or any(re.search(r"\bVECTOR\s*$", k, re.I) for k in keys_list)
        if is_vector and not self.ctx.at_least(8, 0):
            raise QueryError(3000, "syntax error - VECTOR index keys need server 8.0+", 400)
        with_ = json.loads(with_text) if with_text else {}
        if is_vector and not {"dimension", "similarity"} <= set(with_):
            raise QueryError(5000, "vector index requires dimension and similarity in WITH")
        if not primary and not keys_list:
            raise QueryError(3000, "syntax error - index keys missing", 400)
        bucket, scope, coll = self._keyspace(ks_text, args)
        idx_name = _unquote(name) if name else "#primary"
        key = (bucket, scope, coll, idx_name)
        if key in self.indexes:
            if if_not_exists:
                return []
            raise QueryError(4300, f"The index {idx_name} already exists.")
        self.indexes[key] = QueryIndex(
            idx_name, bucket, scope, coll, keys_list, bool(primary), is_vector,
            "deferred" if with_.get("defer_build") else "online", (where or "").strip(),
            _split_top(include or ""), with_)
        return []

    def _list(self, statement: str, args: QueryArgs) -> list[dict[str, Any]]:
        """``SELECT ... FROM system:indexes [AS a] [WHERE ...]``: equality filters joined by
        AND (literals, $named, ? positional), or the SDK's own bucket/scope/collection query."""
        m = re.search(r"^\s*SELECT\s+(.*?)\s+FROM\s+system:indexes"
                      r"(?:\s+(?:AS\s+)?(?!WHERE\b|ORDER\b)(`?\w+`?))?"
                      r"(?:\s+WHERE\s+(.*?))?(?:\s+ORDER\s+BY.*)?\s*;?\s*$",
                      statement, re.IGNORECASE | re.DOTALL)
        if m is None:
            return []
        projection, alias, where = m.group(1).strip(), _unquote(m.group(2) or ""), m.group(3)
        rows = [idx.row() for idx in self.indexes.values()]
        if where and re.search(r"\bOR\b", where, re.IGNORECASE):
            named = args.named
            for fld, param in (("bucket_id", "bucket_name"), ("scope_id", "scope_name"),
                               ("keyspace_id", "collection_name")):
                if named.get(param):
                    rows = [r for r in rows if r[fld] == named[param]]
        elif where:
            positional = iter(args.positional)
            for fld, value in re.findall(r"`?(\w+)`?\s*=\s*(\"[^\"]*\"|'[^']*'|\$\w+|\?|\d+)",
                                         where):
                if value.startswith("$"):
                    want: Any = args.named.get(value[1:])
                elif value == "?":
                    want = next(positional, None)
                elif value[0] in "\"'":
                    want = value[1:-1]
                else:
                    want = int(value)
                rows = [r for r in rows if r.get(fld) == want]
        rows.sort(key=lambda r: (not r["is_primary"], r["name"]))
        if projection == "*":
            return [{alias or "indexes": r} for r in rows]
        if projection.endswith(".*"):
            return rows
        fields = [p.strip() for p in _split_top(projection)]
        out = []
        for r in rows:
            item: dict[str, Any] = {}
            for f in fields:
                parts = re.split(r"\s+AS\s+", f, maxsplit=1, flags=re.IGNORECASE)
                src_name = _unquote(parts[0].strip().split(".")[-1])
                name = _unquote(parts[1].strip()) if len(parts) > 1 else src_name
                item[name] = r.get(src_name)
            out.append(item)
        return out

    async def handle(self, req: HttpRequest) -> HttpReply:
        parts = req.parts()
        if req.method == "GET" and parts == ["admin", "ping"]:
            return HttpReply(200, {})
        if parts not in (["query", "service"], ["query"]):
            return HttpReply(404, {"error": "not found"})
        body = req.json()
        if not isinstance(body, dict):
            body = req.form() if req.body else {k: v[0] for k, v in req.query.items()}
        statement = str(body.get("statement", ""))
        prepared_name = None
        if statement.upper().startswith("PREPARE "):
            statement = statement[8:]
            prepared_name = uuid.uuid4().hex
            self._prepared[prepared_name] = statement
        elif "prepared" in body:
            statement = self._prepared.get(str(body["prepared"]), "")
        args = QueryArgs(
            named={k[1:]: v for k, v in body.items() if k.startswith("$")},
            positional=list(body.get("args") or []),
            query_context=str(body.get("query_context", "")),
            body=body,
        )
        with self.ctx.lock:
            self.records.append(QueryRecord(statement, args))
        meta: dict[str, Any] = {"requestID": uuid.uuid4().hex,
                                "clientContextID": body.get("client_context_id", "")}
        try:
            rows = None
            if self.handler is not None:
                rows = self.handler(statement, args)
            if rows is None:
                with self.ctx.lock:
                    rows = self.default_handler(statement, args)
        except QueryError as err:
            meta.update({"errors": [{"code": err.code, "msg": err.msg}], "status": "fatal",
                         "metrics": {"elapsedTime": "1ms", "executionTime": "1ms",
                                     "resultCount": 0, "resultSize": 0, "errorCount": 1}})
            return HttpReply(err.http_status, meta)
        size = len(json.dumps(rows))
        meta.update({"signature": {"*": "*"}, "results": rows, "status": "success",
                     "metrics": {"elapsedTime": "1ms", "executionTime": "1ms",
                                 "resultCount": len(rows), "resultSize": size}})
        if prepared_name:
            meta["prepared"] = prepared_name
        return HttpReply(200, meta)
