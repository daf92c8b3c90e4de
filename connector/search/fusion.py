"""Fusing a keyword leg and a vector leg into one ranking (pure functions).

Reciprocal-rank fusion (Cormack et al. 2009): score(d) = sum over legs of 1 / (k + rank(d)),
rank starting at 1, k = 60 by default; it needs no score calibration between legs.
Weighted fusion: each leg's scores min-max normalised to [0, 1], then
alpha * vector + (1 - alpha) * keyword; a document missing from a leg gets 0 there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RRF_K = 60


@dataclass(frozen=True, slots=True)
class LegHit:
    id: str
    score: float


@dataclass(slots=True)
class Fused:
    id: str
    score: float
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)


def _collect(legs: Mapping[str, Sequence[LegHit]]) -> dict[str, Fused]:
    out: dict[str, Fused] = {}
    for leg, hits in legs.items():
        for rank, hit in enumerate(hits, start=1):
            f = out.setdefault(hit.id, Fused(hit.id, 0.0))
            f.ranks[leg] = rank
            f.scores[leg] = hit.score
    return out


def _ordered(fused: dict[str, Fused], limit: int) -> list[Fused]:
    # ties broken by best rank in any leg, then id, so results are stable
    return sorted(
        fused.values(), key=lambda f: (-f.score, min(f.ranks.values()), f.id)
    )[:limit]


def reciprocal_rank_fusion(
    legs: Mapping[str, Sequence[LegHit]], limit: int, k: int = RRF_K
) -> list[Fused]:
    fused = _collect(legs)
    for f in fused.values():
        f.score = sum(1.0 / (k + r) for r in f.ranks.values())
    return _ordered(fused, limit)


def _minmax(hits: Sequence[LegHit]) -> dict[str, float]:
    if not hits:
        return {}
    lo = min(h.score for h in hits)
    hi = max(h.score for h in hits)
    if hi == lo:
        return {h.id: 1.0 for h in hits}
    return {h.id: (h.score - lo) / (hi - lo) for h in hits}


def weighted_fusion(
    keyword: Sequence[LegHit], vector: Sequence[LegHit], limit: int, alpha: float = 0.5
) -> list[Fused]:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    fused = _collect({"keyword": keyword, "vector": vector})
    kw, vec = _minmax(keyword), _minmax(vector)
    for f in fused.values():
        f.score = alpha * vec.get(f.id, 0.0) + (1 - alpha) * kw.get(f.id, 0.0)
    return _ordered(fused, limit)
