"""`SearchBackend` on Couchbase: the pipeline's Search index through the sync SDK, so that
`Searcher` (and `cbembed search`) work on couchbase:// storage as on the embedded store.

keyword -> match queries over the text fields; vector -> one kNN clause with the filter as a
pre-filter; hybrid (fusion="server") -> both in one request; fetch -> KV gets. Fusion for
"rrf"/"weighted" stays in `Searcher`. Before the first vector request of a pipeline the index
definition is compared with the query's dimension (IndexDefinitionError on a mismatch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from connector.config import PipelineConfig, Settings
from connector.couchbase import sdk
from connector.couchbase.query_helpers import _check_index, _fetch, _prepare, _run, _scope_of
from connector.filters import FieldFilter
from connector.search.backend import SearchBackend
from connector.search.fusion import LegHit


class CouchbaseSearch(SearchBackend):
    def __init__(self, settings: Settings, cluster: Any | None = None) -> None:
        self._cluster = cluster if cluster is not None else sdk.connect_sync(settings)
        self._own = cluster is None

    def _legs(self, p: PipelineConfig, text: str | None, vector: np.ndarray | None, k: int,
              flt: FieldFilter | None) -> list[LegHit]:
        vec = None if vector is None else [float(x) for x in np.asarray(vector).reshape(-1)]
        prep = _prepare(p, text, vec, k=k, filter=flt, index=None, fusion="server",
                        candidates=None, server_version=None)
        scope = _scope_of(self._cluster, p)
        if vec is not None:
            _check_index(scope, p, prep.calls["single"].index, len(vec))
        return _run(scope, prep.calls["single"])

    def keyword(
        self, pipeline: PipelineConfig, text: str, k: int, flt: FieldFilter | None
    ) -> list[LegHit]:
        return self._legs(pipeline, text, None, k, flt)

    def vector(
        self, pipeline: PipelineConfig, vector: np.ndarray, k: int, flt: FieldFilter | None
    ) -> list[LegHit]:
        return self._legs(pipeline, None, vector, k, flt)

    def hybrid(
        self, pipeline: PipelineConfig, text: str, vector: np.ndarray, k: int,
        flt: FieldFilter | None,
    ) -> list[LegHit]:
        return self._legs(pipeline, text, vector, k, flt)

    def fetch(self, pipeline: PipelineConfig, ids: Sequence[str]) -> dict[str, Any]:
        return _fetch(_scope_of(self._cluster, pipeline), pipeline, ids)

    def close(self) -> None:
        if self._own:
            self._cluster.close()
