"""Typed search results, the same for every backend and mode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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
