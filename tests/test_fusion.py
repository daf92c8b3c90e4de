import pytest

from connector.search.fusion import LegHit, reciprocal_rank_fusion, weighted_fusion


def hits(*ids: str) -> list[LegHit]:
    return [LegHit(i, 10.0 - n) for n, i in enumerate(ids)]


def test_rrf_scores_are_sums_of_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion({"keyword": hits("a", "b", "c"), "vector": hits("c", "a")}, 10)
    got = {f.id: f for f in fused}
    assert got["a"].score == pytest.approx(1 / 61 + 1 / 62)
    assert got["c"].score == pytest.approx(1 / 63 + 1 / 61)
    assert got["b"].score == pytest.approx(1 / 62)
    assert [f.id for f in fused] == ["a", "c", "b"]
    assert got["a"].ranks == {"keyword": 1, "vector": 2}
    assert got["b"].ranks == {"keyword": 2}


def test_rrf_prefers_agreement_over_one_strong_leg() -> None:
    kw = hits("x", "both", "k3", "k4")
    vec = hits("y", "both", "v3", "v4")
    assert reciprocal_rank_fusion({"keyword": kw, "vector": vec}, 1)[0].id == "both"


def test_rrf_limit_and_stable_ties() -> None:
    fused = reciprocal_rank_fusion({"keyword": hits("b", "a"), "vector": hits("a", "b")}, 1)
    assert len(fused) == 1 and fused[0].id == "a"  # equal scores: by best rank, then id


@pytest.mark.parametrize(("alpha", "first"), [(0.0, "k"), (1.0, "v"), (0.5, "both")])
def test_weighted_fusion_alpha(alpha: float, first: str) -> None:
    kw = [LegHit("k", 9.0), LegHit("both", 8.0), LegHit("z", 1.0)]
    vec = [LegHit("v", 0.9), LegHit("both", 0.85), LegHit("w", 0.1)]
    assert weighted_fusion(kw, vec, 3, alpha)[0].id == first


def test_weighted_fusion_rejects_bad_alpha() -> None:
    with pytest.raises(ValueError, match="alpha"):
        weighted_fusion([], [], 3, 1.5)
