"""Index names and SQL++ identifiers for a pipeline.

    search index      cbembed_<pipeline>         (or index.name)
    hyperscale (GSI)  cbembed_<pipeline>_hv
    composite (GSI)   cbembed_<pipeline>_cv

GSI names may hold letters, digits, '#' and '_' and must start with a letter; Search index
names letters, digits, '_' and '-'. A pipeline name's '-' becomes '_' so one base name fits both.
"""

from __future__ import annotations

from connector.config import PipelineConfig
from connector.events import Keyspace

PREFIX = "cbembed_"


def base_name(p: PipelineConfig) -> str:
    return p.index.name or PREFIX + p.name.replace("-", "_")


def search_index_name(p: PipelineConfig) -> str:
    return base_name(p)


def gsi_index_name(p: PipelineConfig) -> str:
    """The Query-service vector index of the pipeline (its kind decides the suffix)."""
    suffix = {"hyperscale": "_hv", "composite": "_cv"}.get(p.index.gsi, "_hv")
    return base_name(p) + suffix


def quote(identifier: str) -> str:
    """One SQL++ identifier in backticks (a backtick inside is doubled)."""
    return "`" + identifier.replace("`", "``") + "`"


def keyspace_sql(ks: Keyspace) -> str:
    return ".".join(quote(x) for x in (ks.bucket, ks.scope, ks.collection))


def path_sql(alias: str, dotted: str) -> str:
    """`d`.`address`.`city` style access to a (dotted) document field."""
    return ".".join([alias, *(quote(seg) for seg in dotted.split("."))])


def type_mapping_name(ks: Keyspace) -> str:
    """The Search index type mapping of a collection: `scope.collection`."""
    return f"{ks.scope}.{ks.collection}"
