"""One search API for every backend: `vector`, `keyword` and `hybrid` over a pipeline.

Text in: the pipeline's own encoder embeds the query (the same model, normalisation and
dimension as the stored vectors), so a query can never be compared with the wrong space.
An image (a `pathlib.Path`, bytes or a PIL image) is a query too where the encoder takes one
(CLIP: text and images share a space); a `str` is always text, an array is a ready vector.

    searcher = Searcher.from_settings(load_settings("cbembed.toml"))
    hits = searcher.hybrid("quiet hotel near the beach", k=5, filter={"type": "hotel"},
                           fields=["name", "city"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Any, Literal

import numpy as np

from connector.config import PipelineConfig, Settings
from connector.errors import SearchError
from connector.filters import FieldFilter, coerce_filter
from connector.search.backend import SearchBackend
from connector.search.fusion import Fused, LegHit, reciprocal_rank_fusion, weighted_fusion
from connector.search.media import is_media_query, load_query_media
from connector.search.results import Mode, SearchHit, to_hits
from encoders.base import Encoder
from encoders.registry import load_encoder

#: text, a ready vector, or an image/audio clip (pathlib.Path, bytes, PIL image)
QueryInput = str | np.ndarray | Sequence[float] | bytes | PurePath | Any
FilterInput = FieldFilter | dict[str, Any] | None


class Searcher:
    def __init__(self, settings: Settings, backend: SearchBackend) -> None:
        self.settings = settings
        self.backend = backend

    @classmethod
    def from_settings(cls, settings: Settings) -> Searcher:
        if settings.is_embedded:
            from connector.embedded.search import EmbeddedSearch

            return cls(settings, EmbeddedSearch(settings.embedded_path))
        from connector.couchbase.search import CouchbaseSearch

        return cls(settings, CouchbaseSearch(settings))

    def encoder(self, pipeline: PipelineConfig) -> Encoder:
        return load_encoder(pipeline.encoder)

    def embed_query(self, query: QueryInput, pipeline: PipelineConfig) -> np.ndarray:
        if isinstance(query, str):
            enc = self.encoder(pipeline)
            if "text" not in enc.query_modalities:
                raise SearchError(f"pipeline {pipeline.name}: its encoder takes no text queries")
            return enc.encode_query(query, normalize=pipeline.similarity == "cosine")
        if is_media_query(query):
            enc = self.encoder(pipeline)
            media = load_query_media(query, enc, pipeline)
            return enc.encode_query(media, normalize=pipeline.similarity == "cosine")
        return np.asarray(query, dtype=np.float32)

    # -- the three modes ------------------------------------------------------------------------
    def vector(
        self, query: QueryInput, *, pipeline: str | None = None, k: int = 10,
        filter: FilterInput = None, fields: Sequence[str] | None = None,
        include_document: bool = False,
    ) -> list[SearchHit]:
        p = self.settings.pipeline(pipeline)
        hits = self.backend.vector(p, self.embed_query(query, p), _k(k), coerce_filter(filter))
        return self._hits(p, [_plain(h) for h in hits], fields, include_document)

    def keyword(
        self, text: str, *, pipeline: str | None = None, k: int = 10,
        filter: FilterInput = None, fields: Sequence[str] | None = None,
        include_document: bool = False,
    ) -> list[SearchHit]:
        p = self.settings.pipeline(pipeline)
        hits = self.backend.keyword(p, text, _k(k), coerce_filter(filter))
        return self._hits(p, [_plain(h) for h in hits], fields, include_document)

    def hybrid(
        self, text: str, *, pipeline: str | None = None, k: int = 10,
        filter: FilterInput = None, fields: Sequence[str] | None = None,
        include_document: bool = False, fusion: Literal["rrf", "weighted", "server"] = "rrf",
        alpha: float = 0.5, candidates: int | None = None, image: QueryInput | None = None,
    ) -> list[SearchHit]:
        """Keyword and vector legs, each `candidates` deep (default max(4k, 50)), fused;
        `fusion="server"`: one request, scored by the server (Couchbase Search service).
        `image`: the vector leg searches with it (an image, or an audio clip) instead of
        `text`, which still drives the keyword leg (e.g. captions)."""
        p = self.settings.pipeline(pipeline)
        flt = coerce_filter(filter)
        vec_query = text if image is None else image
        if fusion == "server":
            one = self.backend.hybrid(p, text, self.embed_query(vec_query, p), _k(k), flt)
            return self._hits(p, [_plain(h) for h in one], fields, include_document)
        n = candidates or max(4 * _k(k), 50)
        kw = self.backend.keyword(p, text, n, flt)
        vec = self.backend.vector(p, self.embed_query(vec_query, p), n, flt)
        if fusion == "rrf":
            fused = reciprocal_rank_fusion({"keyword": kw, "vector": vec}, k)
        elif fusion == "weighted":
            fused = weighted_fusion(kw, vec, k, alpha)
        else:
            raise SearchError(f"unknown fusion {fusion!r}: use 'rrf', 'weighted' or 'server'")
        return self._hits(p, fused, fields, include_document)

    def search(self, mode: Mode, query: QueryInput, **kwargs: Any) -> list[SearchHit]:
        if mode == "vector":
            return self.vector(query, **kwargs)
        if mode in ("keyword", "hybrid") and not isinstance(query, str):
            raise SearchError(f"{mode} search takes text (hybrid: text plus image=...)")
        if mode == "keyword":
            return self.keyword(str(query), **kwargs)
        if mode == "hybrid":
            return self.hybrid(str(query), **kwargs)
        raise SearchError(f"unknown search mode {mode!r}: use vector, keyword or hybrid")

    def _hits(
        self, p: PipelineConfig, fused: list[Fused], fields: Sequence[str] | None,
        include_document: bool,
    ) -> list[SearchHit]:
        docs = self.backend.fetch(p, [f.id for f in fused]) if fields or include_document else {}
        return to_hits(fused, docs, fields, include_document)

    def close(self) -> None:
        self.backend.close()


def _k(k: int) -> int:
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    return k


def _plain(h: LegHit) -> Fused:
    return Fused(h.id, h.score)
