"""`cbembed index apply|check` and the connector's deferred-build job, through the SDK.

apply (idempotent, sync SDK):
  Search index   read it (scoped index manager); missing -> create; our definition not contained
                 in the server's -> update in place (with its uuid); else unchanged.
  GSI index      read system:indexes; missing -> CREATE ... WITH {"defer_build": true};
                 different keys / dimension / metric -> an error, or drop + create with
                 `replace=True`; deferred -> BUILD INDEX once the collection holds
                 `min_docs_to_build` documents (trained indexes cannot be built over too few).
check: every index of every pipeline exists and matches its encoder (field, dims, similarity);
  any mismatch is an IndexDefinitionError listing all of them.
build_deferred_indexes (async, acouchbase): what the connector's scheduler calls every
  BUILD_CHECK_INTERVAL_S on Couchbase storage; logs, never raises.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.config import PipelineConfig, Settings
from connector.errors import IndexDefinitionError, SearchError, ServerVersionError
from index_defs import naming
from index_defs.gsi import (
    ACCEPTED_GSI_SIMILARITY,
    GsiIndex,
    build_statement,
    count_statement,
    drop_statement,
    gsi_index,
    min_docs_to_build,
)
from index_defs.plan import Plan, plan_indexes
from index_defs.versions import ServerVersion

log = logging.getLogger("cbembed.indexes")
BUILD_CHECK_INTERVAL_S = 60.0
VERSION_STATEMENT = "SELECT RAW ds_version()"


@dataclass(frozen=True)
class IndexAction:
    pipeline: str
    kind: str
    name: str
    action: str  # created, updated, unchanged, built, deferred, replaced, skipped, error
    detail: str = ""

    def line(self) -> str:
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.pipeline}: {self.kind} index {self.name} {self.action}{tail}"


# -- server facts -------------------------------------------------------------------------------
def parse_version_rows(rows: list[Any]) -> ServerVersion | None:
    for r in rows:
        text = r if isinstance(r, str) else (r or {}).get("$1") if isinstance(r, dict) else None
        if isinstance(text, str):
            try:
                return ServerVersion.parse(text)
            except ValueError:
                return None
    return None


def detect_server_version(cluster: Any) -> ServerVersion | None:
    """The cluster's version from the Query service (`ds_version()`); None if unknown."""
    from couchbase.exceptions import CouchbaseException

    try:
        return parse_version_rows(list(cluster.query(VERSION_STATEMENT).rows()))
    except CouchbaseException as e:
        log.warning("could not read the server version (%s); features are not gated", e)
        return None


def gsi_row_options(row: Mapping[str, Any]) -> dict[str, Any]:
    """The WITH options of a system:indexes row: `with`, or parsed from
    `metadata.definition` when the server reports the statement instead."""
    if isinstance(row.get("with"), dict):
        return dict(row["with"])
    definition = ((row.get("metadata") or {}).get("definition")) or ""
    m = re.search(r"\bWITH\s+(\{.*\})\s*$", str(definition), re.IGNORECASE | re.DOTALL)
    if m:
        try:
            parsed = json.loads(m.group(1))
            return parsed if isinstance(parsed, dict) else {}
        except json.JSONDecodeError:
            return {}
    return {}


def _norm_key(text: str) -> str:
    return re.sub(r"[`\s]", "", text).lower()


def gsi_differences(g: GsiIndex, row: Mapping[str, Any]) -> list[str]:
    """What differs between the wanted index and the server's (keys, dimension, metric)."""
    diffs = []
    have = [_norm_key(k) for k in row.get("index_key") or []]
    want = [_norm_key(k) for k in g.keys]
    if have and have != want:
        diffs.append(f"keys {row.get('index_key')} instead of {g.keys}")
    opts = gsi_row_options(row)
    if "dimension" in opts and int(opts["dimension"]) != g.with_["dimension"]:
        diffs.append(f"dimension {opts['dimension']} instead of {g.with_['dimension']}")
    ours = {"COSINE": "cosine", "DOT": "dot", "L2": "l2"}[g.with_["similarity"]]
    accepted = ACCEPTED_GSI_SIMILARITY[ours]
    if "similarity" in opts and str(opts["similarity"]).upper() not in accepted:
        diffs.append(f"similarity {opts['similarity']} instead of {g.with_['similarity']}")
    return diffs


def contains(have: Any, want: Any) -> bool:
    """Every key/value we set is present, equal, in what the server holds (the server may add
    defaults of its own)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and contains(have[k], v)
                                              for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(
            contains(h, w) for h, w in zip(have, want, strict=True))
    return bool(have == want)


# -- apply --------------------------------------------------------------------------------------
Rows = Callable[[str, dict[str, Any]], list[Any]]


def _rows_of(cluster: Any) -> Rows:
    from couchbase.options import QueryOptions

    def run(statement: str, params: dict[str, Any]) -> list[Any]:
        opts = QueryOptions(named_parameters=params) if params else QueryOptions()
        return list(cluster.query(statement, opts).rows())

    return run


def gsi_row(rows: Rows, p: PipelineConfig) -> dict[str, Any] | None:
    from connector.couchbase.query_helpers import gsi_state_query

    got = rows(*gsi_state_query(p))
    return got[0] if got else None


def _apply_search(cluster: Any, p: PipelineConfig, definition: dict[str, Any]) -> IndexAction:
    from couchbase.exceptions import CouchbaseException, SearchIndexNotFoundException
    from couchbase.management.search import SearchIndex

    ks = p.parsed_keyspace
    mgr = cluster.bucket(ks.bucket).scope(ks.scope).search_indexes()
    name = definition["name"]
    try:
        existing = mgr.get_index(name)
    except SearchIndexNotFoundException:
        existing = None
    except CouchbaseException as e:
        if "not found" not in str(e).lower():
            raise SearchError(f"reading Search index {name!r}: {e}") from e
        existing = None
    if existing is not None and contains(existing.params, definition["params"]):
        return IndexAction(p.name, "search", name, "unchanged")
    index = SearchIndex(name=name, idx_type=definition["type"],
                        source_type=definition["sourceType"],
                        source_name=definition["sourceName"], params=definition["params"],
                        uuid=existing.uuid if existing is not None else None)
    try:
        mgr.upsert_index(index)
    except CouchbaseException as e:
        raise SearchError(f"creating Search index {name!r}: {e}") from e
    return IndexAction(p.name, "search", name, "created" if existing is None else "updated")


def maybe_build(rows: Rows, p: PipelineConfig, g: GsiIndex, state: str) -> IndexAction:
    """BUILD INDEX for a deferred index once the collection has enough documents."""
    if state != "deferred":
        return IndexAction(p.name, g.kind, g.name, "unchanged", f"state {state}")
    need = min_docs_to_build(p)
    have = int((rows(count_statement(p), {}) or [0])[0] or 0)
    if have < need:
        return IndexAction(p.name, g.kind, g.name, "deferred",
                           f"{have} of {need} documents; the connector builds it when there "
                           "are enough (index.min_docs_to_build)")
    rows(build_statement(g), {})
    return IndexAction(p.name, g.kind, g.name, "built", f"{have} documents to train on")


def _apply_gsi(rows: Rows, p: PipelineConfig, g: GsiIndex, replace: bool) -> list[IndexAction]:
    row = gsi_row(rows, p)
    out = []
    if row is not None:
        diffs = gsi_differences(g, row)
        if diffs and not replace:
            return [IndexAction(p.name, g.kind, g.name, "error",
                                "differs (" + "; ".join(diffs) + "): a vector index cannot be "
                                "altered, re-create it with `cbembed index apply --replace`")]
        if diffs:
            rows(drop_statement(g), {})
            row = None
            out.append(IndexAction(p.name, g.kind, g.name, "dropped", "; ".join(diffs)))
    if row is None:
        rows(g.create_statement(), {})
        out.append(IndexAction(p.name, g.kind, g.name, "created", "deferred build"))
        state = "deferred"
    else:
        state = str(row.get("state", ""))
    out.append(maybe_build(rows, p, g, state))
    return out


def apply_indexes(
    cluster: Any, settings: Settings, dims: Mapping[str, int], *,
    server_version: ServerVersion | None = None, replace: bool = False,
) -> tuple[list[IndexAction], Plan]:
    """Create / update / build every index of every pipeline (sync SDK Cluster)."""
    plan = plan_indexes(settings, dims, server_version)
    actions = [IndexAction(p, k, "-", "skipped", why) for p, k, why in plan.skipped]
    rows = _rows_of(cluster)
    by_name = {p.name: p for p in settings.pipelines}
    for planned in plan.indexes:
        p = by_name[planned.pipeline]
        try:
            if planned.definition is not None:
                actions.append(_apply_search(cluster, p, planned.definition))
            elif planned.gsi is not None:
                actions.extend(_apply_gsi(rows, p, planned.gsi, replace))
        except Exception as e:  # one index failing must not hide the others
            if not _is_couchbase_error(e) and not isinstance(e, SearchError):
                raise
            actions.append(IndexAction(p.name, planned.kind, planned.name, "error", str(e)))
    return actions, plan


def _is_couchbase_error(e: BaseException) -> bool:
    from couchbase.exceptions import CouchbaseException

    return isinstance(e, CouchbaseException)


# -- check --------------------------------------------------------------------------------------
def check_indexes(
    cluster: Any, settings: Settings, dims: Mapping[str, int],
    server_version: ServerVersion | None = None,
) -> list[str]:
    """One line per index that is fine; raises IndexDefinitionError listing every problem."""
    from couchbase.exceptions import CouchbaseException

    from connector.couchbase.query_helpers import verify_search_index

    ok: list[str] = []
    problems: list[str] = []
    rows = _rows_of(cluster)
    for p in settings.pipelines:
        d = dims[p.name]
        ks = p.parsed_keyspace
        if p.index.search:
            name = naming.search_index_name(p)
            try:
                got = cluster.bucket(ks.bucket).scope(ks.scope).search_indexes().get_index(name)
                verify_search_index(p, name, got.params, d)
                ok.append(f"{p.name}: search index {name}: field {p.vector_field}, {d} dims, "
                          "similarity ok")
            except IndexDefinitionError as e:
                problems.append(str(e))
            except CouchbaseException as e:
                problems.append(f"Search index {name!r} of pipeline {p.name}: "
                                f"{'does not exist' if 'not found' in str(e).lower() else e}")
        if p.index.gsi != "none":
            try:
                g = gsi_index(p, d, server_version=server_version)
            except ServerVersionError as e:
                ok.append(f"{p.name}: {p.index.gsi} index skipped: {e}")
                continue
            assert g is not None
            try:
                row = gsi_row(rows, p)
            except CouchbaseException as e:
                problems.append(f"vector index {g.name}: cannot read system:indexes ({e})")
                continue
            if row is None:
                problems.append(f"vector index {g.name} of pipeline {p.name} does not exist: "
                                "run `cbembed index apply`")
                continue
            diffs = gsi_differences(g, row)
            if diffs:
                problems.append(f"vector index {g.name} of pipeline {p.name}: "
                                + "; ".join(diffs))
            else:
                reported = "dimension" in gsi_row_options(row)
                ok.append(f"{p.name}: {g.kind} index {g.name}: keys ok, "
                          + (f"{d} dims" if reported else "dimension not reported by the "
                             "server") + f", state {row.get('state')}")
    if problems:
        raise IndexDefinitionError("index check failed:\n  " + "\n  ".join(problems))
    return ok


# -- the connector's deferred-build job ---------------------------------------------------------
async def build_deferred_indexes(
    cluster: Any, pipelines: Iterable[PipelineConfig], dims: Mapping[str, int],
    done: set[str],
) -> list[IndexAction]:
    """Build every deferred GSI vector index whose collection has enough documents (acouchbase
    Cluster). Names already seen online go into `done` and are not looked at again. Called by
    the connector's scheduler on its loop; logs problems, never raises."""
    from couchbase.options import QueryOptions

    async def rows(statement: str, params: dict[str, Any]) -> list[Any]:
        opts = QueryOptions(named_parameters=params) if params else QueryOptions()
        return [r async for r in cluster.query(statement, opts).rows()]

    out = []
    for p in pipelines:
        if p.index.gsi == "none" or naming.gsi_index_name(p) in done:
            continue
        try:
            g = gsi_index(p, dims.get(p.name, 1))
            assert g is not None
            from connector.couchbase.query_helpers import gsi_state_query

            found = await rows(*gsi_state_query(p))
            if not found:
                continue  # not created (yet): `cbembed index apply` creates it
            state = str(found[0].get("state", ""))
            if state != "deferred":
                if state == "online":
                    done.add(g.name)
                continue
            need = min_docs_to_build(p)
            have = int(((await rows(count_statement(p), {})) or [0])[0] or 0)
            if have < need:
                log.info("vector index %s waits: %d of %d documents", g.name, have, need)
                continue
            await rows(build_statement(g), {})
            log.warning("building vector index %s over %d documents", g.name, have)
            out.append(IndexAction(p.name, g.kind, g.name, "built", f"{have} documents"))
        except Exception as e:  # noqa: BLE001 - a periodic job must not end the connector
            log.warning("vector index build check for pipeline %s failed: %s", p.name, e)
    return out
