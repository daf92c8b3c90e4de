"""Typed search results, the same for every backend and mode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from connector.template import is_missing, lookup

if TYPE_CHECKING:
    from connector.search.fusion import Fused

Mode = Literal["vector", "keyword", "hybrid"]


@dataclass(frozen=True, slots=True)
class SearchHit:
    id: str
    score: float
    fields: dict[str, Any] = field(default_factory=dict)
    #: hybrid only: 1-based rank of the document in each leg it appeared in
    ranks: dict[str, int] = field(default_factory=dict)
    #: hybrid only: the raw score each leg gave
    leg_scores: dict[str, float] = field(default_factory=dict)
    document: Any = None  # the whole document, when asked for

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "score": round(self.score, 6)}
        if self.fields:
            out["fields"] = self.fields
        if self.ranks:
            out["ranks"] = self.ranks
            out["leg_scores"] = {k: round(v, 6) for k, v in self.leg_scores.items()}
        if self.document is not None:
            out["document"] = self.document
        return out


def to_hits(
    fused: Sequence[Fused], docs: Mapping[str, Any], fields: Sequence[str] | None,
    include_document: bool,
) -> list[SearchHit]:
    """Ranked ids (with per-leg ranks when fused) + fetched documents -> typed hits, with the
    asked-for fields picked by dotted path (None where a document lacks one)."""
    out = []
    for f in fused:
        doc = docs.get(f.id)
        picked = {}
        for name in fields or ():
            value = lookup(doc, tuple(name.split("."))) if doc is not None else None
            picked[name] = None if is_missing(value) else value
        out.append(SearchHit(f.id, f.score, picked, dict(f.ranks) if f.scores else {},
                             dict(f.scores), doc if include_document else None))
    return out
