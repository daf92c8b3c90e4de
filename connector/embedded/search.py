"""Search on the embedded store: BM25 over FTS5, exact vector scoring with numpy.

Vectors of a pipeline are read once into one float32 matrix and kept until the pipeline's
`derived_versions` counter moves (any write or removal), so repeated queries cost one matrix
product. Reads use their own connection: search runs beside a connector in another process.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from connector.config import PipelineConfig
from connector.embedded.database import connect, decode_body
from connector.embedded.sql_filters import filter_sql
from connector.errors import SearchError
from connector.filters import FieldFilter
from connector.search.backend import SearchBackend
from connector.search.fusion import LegHit

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class _Matrix:
    version: int
    doc_ids: np.ndarray  # int64, docs.id
    keys: list[str]
    vectors: np.ndarray  # float32 (n, dims)


def fts_query(text: str) -> str:
    """User text -> an FTS5 query: every word quoted (no syntax errors), OR-combined."""
    words = _WORD.findall(text)
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


class EmbeddedSearch(SearchBackend):
    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise SearchError(f"embedded store {path} does not exist: load and embed first")
        self._conn = connect(path)
        self._lock = threading.Lock()
        self._matrices: dict[str, _Matrix] = {}

    def _rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def _scope(self, p: PipelineConfig) -> tuple[str, list[Any]]:
        ks = p.parsed_keyspace
        return (
            "docs.bucket=? AND docs.scope=? AND docs.collection=? AND docs.deleted=0",
            [ks.bucket, ks.scope, ks.collection],
        )

    def keyword(
        self, pipeline: PipelineConfig, text: str, k: int, flt: FieldFilter | None
    ) -> list[LegHit]:
        query = fts_query(text)
        if not query:
            return []
        where, args = self._scope(pipeline)
        fsql, fargs = filter_sql(flt, "docs.body")
        rows = self._rows(
            "SELECT docs.key, bm25(derived_fts) AS s FROM derived_fts "
            "JOIN derived ON derived.id = derived_fts.rowid "
            "JOIN docs ON docs.id = derived.doc_id "
            f"WHERE derived_fts MATCH ? AND derived.pipeline=? AND {where} AND {fsql} "
            "ORDER BY s LIMIT ?",
            [query, pipeline.name, *args, *fargs, k],
        )
        return [LegHit(key, -float(s)) for key, s in rows]

    def _matrix(self, pipeline: PipelineConfig) -> _Matrix:
        row = self._rows(
            "SELECT version FROM derived_versions WHERE pipeline=?", [pipeline.name]
        )
        version = int(row[0][0]) if row else 0
        m = self._matrices.get(pipeline.name)
        if m is not None and m.version == version:
            return m
        where, args = self._scope(pipeline)
        rows = self._rows(
            "SELECT docs.id, docs.key, derived.dims, derived.vector FROM derived "
            f"JOIN docs ON docs.id = derived.doc_id WHERE derived.pipeline=? AND {where}",
            [pipeline.name, *args],
        )
        dims = {r[2] for r in rows}
        if len(dims) > 1:
            raise SearchError(
                f"pipeline {pipeline.name}: stored vectors have mixed dimensions {sorted(dims)} "
                "(the model changed and re-embedding is not finished)"
            )
        d = dims.pop() if dims else 0
        vectors = np.frombuffer(b"".join(r[3] for r in rows), dtype="<f4").reshape(len(rows), d)
        m = _Matrix(
            version, np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows],
            vectors.astype(np.float32, copy=False),
        )
        self._matrices[pipeline.name] = m
        return m

    def vector(
        self, pipeline: PipelineConfig, vector: np.ndarray, k: int, flt: FieldFilter | None
    ) -> list[LegHit]:
        m = self._matrix(pipeline)
        if not m.keys:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape[0] != m.vectors.shape[1]:
            raise SearchError(
                f"pipeline {pipeline.name}: query vector has {q.shape[0]} dimensions, the "
                f"stored vectors have {m.vectors.shape[1]}"
            )
        if pipeline.similarity == "l2":
            scores = 1.0 / (1.0 + np.linalg.norm(m.vectors - q, axis=1))
        else:
            if pipeline.similarity == "cosine":
                q = q / (np.linalg.norm(q) or 1.0)
            scores = m.vectors @ q
        if flt is not None:
            where, args = self._scope(pipeline)
            fsql, fargs = filter_sql(flt, "docs.body")
            allowed = [r[0] for r in self._rows(
                f"SELECT docs.id FROM docs WHERE {where} AND docs.is_json=1 AND {fsql}",
                [*args, *fargs],
            )]
            scores = np.where(np.isin(m.doc_ids, allowed), scores, -np.inf)
        k = min(k, len(m.keys))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [LegHit(m.keys[i], float(scores[i])) for i in top if np.isfinite(scores[i])]

    def fetch(self, pipeline: PipelineConfig, ids: Sequence[str]) -> dict[str, Any]:
        if not ids:
            return {}
        where, args = self._scope(pipeline)
        marks = ",".join("?" * len(ids))
        rows = self._rows(
            f"SELECT docs.key, docs.body, docs.is_json FROM docs WHERE {where} "
            f"AND docs.key IN ({marks})",
            [*args, *ids],
        )
        return {key: decode_body(body, is_json) for key, body, is_json in rows}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
