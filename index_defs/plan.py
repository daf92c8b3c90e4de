"""What `cbembed index plan` prints and `cbembed index apply` creates: every index of every
pipeline, rendered from the settings and the encoders' dimensions (pure; no cluster needed)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from connector.config import PipelineConfig, Settings
from connector.errors import ServerVersionError
from index_defs.gsi import GsiIndex, gsi_index
from index_defs.search_index import search_index_definition
from index_defs.versions import FEATURES, ServerVersion

IndexKind = Literal["search", "hyperscale", "composite"]


@dataclass(frozen=True)
class PlannedIndex:
    pipeline: str
    kind: IndexKind
    name: str
    keyspace: str
    #: the Search index definition (kind "search") or None
    definition: dict[str, Any] | None = None
    #: the GSI index (kinds "hyperscale" / "composite") or None
    gsi: GsiIndex | None = None
    minimum_version: str = ""

    def describe(self) -> str:
        """What `index plan` prints for this index."""
        head = f"-- {self.pipeline}: {self.kind} index {self.name} on {self.keyspace} " \
               f"(Couchbase Server {self.minimum_version}+)"
        if self.definition is not None:
            scope = self.keyspace.split(".")[1]
            return (f"{head}\n-- PUT /api/bucket/{self.keyspace.split('.')[0]}/scope/{scope}"
                    f"/index/{self.name}\n{json.dumps(self.definition, indent=2)}")
        assert self.gsi is not None
        return f"{head}\n{self.gsi.create_statement()};"


@dataclass
class Plan:
    indexes: list[PlannedIndex] = field(default_factory=list)
    #: (pipeline, index kind, reason) for indexes this cluster cannot have
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


def plan_pipeline(
    p: PipelineConfig, dims: int, server_version: ServerVersion | None = None
) -> Plan:
    out = Plan()
    if p.index.search:
        try:
            d = search_index_definition(p, dims, server_version=server_version)
            out.indexes.append(PlannedIndex(
                p.name, "search", d["name"], p.keyspace, definition=d,
                minimum_version=str(FEATURES["search_vector"].minimum)))
        except ServerVersionError as e:
            out.skipped.append((p.name, "search", str(e)))
    try:
        g = gsi_index(p, dims, server_version=server_version)
    except ServerVersionError as e:
        out.skipped.append((p.name, p.index.gsi, str(e)))
        g = None
    if g is not None:
        out.indexes.append(PlannedIndex(
            p.name, g.kind, g.name, p.keyspace, gsi=g,
            minimum_version=str(FEATURES["gsi_vector_index"].minimum)))
    return out


def plan_indexes(
    settings: Settings, dims: Mapping[str, int], server_version: ServerVersion | None = None
) -> Plan:
    """`dims`: pipeline name -> its encoder's dimension."""
    out = Plan()
    for p in settings.pipelines:
        part = plan_pipeline(p, dims[p.name], server_version)
        out.indexes += part.indexes
        out.skipped += part.skipped
    return out
