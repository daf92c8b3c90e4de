"""Vector index definitions rendered from a pipeline's settings (pure: no cluster needed).

    search_index.py   Search-service index: vector + text + filter fields (hybrid in one request)
    gsi.py            Hyperscale / Composite vector indexes as SQL++ DDL (Server 8.0+)
    fields.py         which fields are text, keyword, number, boolean
    naming.py         index names, SQL++ identifiers
    versions.py       feature -> minimum Couchbase Server version
    plan.py           every index of every pipeline (`cbembed index plan`)
"""

from index_defs.gsi import GsiIndex, gsi_index, gsi_similarity
from index_defs.naming import gsi_index_name, search_index_name
from index_defs.plan import Plan, PlannedIndex, plan_indexes, plan_pipeline
from index_defs.search_index import search_index_definition, vector_similarity
from index_defs.versions import FEATURES, ServerVersion, require, supports

__all__ = [
    "FEATURES",
    "GsiIndex",
    "Plan",
    "PlannedIndex",
    "ServerVersion",
    "gsi_index",
    "gsi_index_name",
    "gsi_similarity",
    "plan_indexes",
    "plan_pipeline",
    "require",
    "search_index_definition",
    "search_index_name",
    "supports",
    "vector_similarity",
]
