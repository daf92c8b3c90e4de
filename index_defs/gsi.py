"""Query-service (GSI) vector indexes of a pipeline, Couchbase Server 8.0+, as SQL++ DDL.

Shapes from couchbase docs-devex `hyperscale-idx-examples.sqlpp`, `gsi-vector-idx-examples.sqlpp`
and `createvectorindex.adoc`:

    CREATE VECTOR INDEX `cbembed_hotels_hv` ON `travel`.`inventory`.`hotels`(`embedding` VECTOR)
      INCLUDE (`type`, `rating`) USING GSI
      WITH {"dimension": 384, "similarity": "COSINE", "description": "IVF,SQ8", "defer_build": true}
    CREATE INDEX `cbembed_hotels_cv` ON `travel`.`inventory`.`hotels`(`type`, `rating`,
      `embedding` VECTOR) USING GSI WITH {...}

Both are created with `defer_build`: they are trained (IVF centroids, quantization) when built,
and a build over too few documents fails, so `BUILD INDEX` waits until the collection holds
`index.min_docs_to_build` documents (the connector checks periodically).

Similarity: cosine -> COSINE, dot -> DOT, l2 -> L2; APPROX_VECTOR_DISTANCE must name the same
metric for the optimizer to pick the index. Distances: COSINE = 1 - cos, DOT = -dot, L2 =
euclidean; `score_from_distance` turns one into a higher-is-better score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from connector.config import PipelineConfig
from connector.events import Keyspace
from index_defs import naming
from index_defs.fields import filter_fields
from index_defs.versions import ServerVersion, require

GSI_SIMILARITY = {"cosine": "COSINE", "dot": "DOT", "l2": "L2"}
#: metric names the server may report for each of ours (aliases from vectorfun.adoc)
ACCEPTED_GSI_SIMILARITY = {
    "cosine": {"COSINE"},
    "dot": {"DOT"},
    "l2": {"L2", "EUCLIDEAN"},
}

GsiKind = Literal["hyperscale", "composite"]


def gsi_similarity(p: PipelineConfig) -> str:
    return GSI_SIMILARITY[p.similarity]


def score_from_distance(p: PipelineConfig, distance: float) -> float:
    """Higher is better, comparable with the embedded store's scores for the same metric."""
    if p.similarity == "cosine":
        return 1.0 - distance
    if p.similarity == "dot":
        return -distance
    return 1.0 / (1.0 + max(distance, 0.0))  # L2 is the euclidean distance


@dataclass(frozen=True, slots=True)
class GsiIndex:
    kind: GsiKind
    name: str
    keyspace: str  # bucket.scope.collection
    vector_field: str
    scalar_fields: tuple[str, ...]
    with_: dict[str, Any]

    @property
    def keys(self) -> list[str]:
        """Index keys as SQL++ text, in order."""
        vec = f"{_path(self.vector_field)} VECTOR"
        if self.kind == "hyperscale":
            return [vec]
        return [*(_path(f) for f in self.scalar_fields), vec]

    def create_statement(self) -> str:
        ks = naming.keyspace_sql(Keyspace.parse(self.keyspace))
        verb = "CREATE VECTOR INDEX" if self.kind == "hyperscale" else "CREATE INDEX"
        parts = [f"{verb} {naming.quote(self.name)} ON {ks}({', '.join(self.keys)})"]
        if self.kind == "hyperscale" and self.scalar_fields:
            parts.append(f"INCLUDE ({', '.join(_path(f) for f in self.scalar_fields)})")
        parts.append("USING GSI")
        parts.append("WITH " + json.dumps(self.with_))
        return " ".join(parts)


def _path(dotted: str) -> str:
    return ".".join(naming.quote(seg) for seg in dotted.split("."))


def gsi_index(
    p: PipelineConfig, dims: int, *, server_version: ServerVersion | None = None
) -> GsiIndex | None:
    """The pipeline's GSI vector index, or None when `index.gsi` is "none"."""
    if p.index.gsi == "none":
        return None
    require("gsi_vector_index", server_version, 'set index.gsi = "none" to skip it')
    if dims < 1:
        raise ValueError(f"a vector index needs a positive dimension, not {dims}")
    with_: dict[str, Any] = {
        "dimension": dims,
        "similarity": gsi_similarity(p),
        "description": p.index.description,
    }
    if p.index.nprobes is not None:
        with_["scan_nprobes"] = p.index.nprobes
    if p.index.train_list is not None:
        with_["train_list"] = p.index.train_list
    with_["defer_build"] = True
    return GsiIndex(p.index.gsi, naming.gsi_index_name(p), p.keyspace, p.vector_field,
                    tuple(filter_fields(p)), with_)


def build_statement(index: GsiIndex) -> str:
    ks = naming.keyspace_sql(Keyspace.parse(index.keyspace))
    return f"BUILD INDEX ON {ks}({naming.quote(index.name)}) USING GSI"


def drop_statement(index: GsiIndex) -> str:
    """DROP INDEX is a synonym of DROP VECTOR INDEX (dropvectorindex.adoc)."""
    ks = naming.keyspace_sql(Keyspace.parse(index.keyspace))
    return f"DROP INDEX {naming.quote(index.name)} ON {ks} USING GSI"


def count_statement(p: PipelineConfig) -> str:
    """How many documents the collection holds (answered from the collection's count, no index
    needed): the training criterion for a deferred build."""
    return f"SELECT RAW COUNT(*) FROM {naming.keyspace_sql(p.parsed_keyspace)}"


def min_docs_to_build(p: PipelineConfig) -> int:
    """`index.min_docs_to_build`, raised to `train_list` and to an explicit IVF nlist."""
    need = p.index.min_docs_to_build
    if p.index.train_list:
        need = max(need, p.index.train_list)
    head = p.index.description.split(",")[0][3:]
    if head.isdigit():
        need = max(need, int(head))
    return need
