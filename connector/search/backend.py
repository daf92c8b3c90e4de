"""The search seam: a keyword leg, a vector leg and a document fetch, per backend.

Implemented by `connector.embedded.search` (FTS5 + exact vectors) and by
`connector.couchbase.search` (the Search service, which also answers a single-request
`hybrid`). Fusion and query embedding live above it, in `Searcher`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from connector.config import PipelineConfig
from connector.filters import FieldFilter
from connector.search.fusion import LegHit


class SearchBackend(abc.ABC):
    @abc.abstractmethod
    def keyword(
        self, pipeline: PipelineConfig, text: str, k: int, flt: FieldFilter | None
    ) -> list[LegHit]: ...

    @abc.abstractmethod
    def vector(
        self, pipeline: PipelineConfig, vector: np.ndarray, k: int, flt: FieldFilter | None
    ) -> list[LegHit]: ...

    @abc.abstractmethod
    def fetch(self, pipeline: PipelineConfig, ids: Sequence[str]) -> dict[str, Any]:
        """Documents by key (missing keys are left out)."""

    def hybrid(
        self, pipeline: PipelineConfig, text: str, vector: np.ndarray, k: int,
        flt: FieldFilter | None,
    ) -> list[LegHit]:
        """Both legs in one request, scored by the server (the Search service); backends
        without it raise SearchError."""
        from connector.errors import SearchError

        raise SearchError("this storage has no single-request hybrid search: use fusion='rrf'")

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
