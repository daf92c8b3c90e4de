"""Search helpers: vector, keyword and hybrid, one API for the embedded and Couchbase backends."""

from connector.search.fusion import LegHit, reciprocal_rank_fusion, weighted_fusion
from connector.search.results import SearchHit
from connector.search.searcher import Searcher

__all__ = ["LegHit", "SearchHit", "Searcher", "reciprocal_rank_fusion", "weighted_fusion"]
