"""Which document fields a pipeline's indexes carry besides the vector, and of what kind.

- text fields: searched by the keyword leg (`index.text_fields`, default the template's fields);
- filter fields: pre-filters in Search requests, INCLUDE / scalar keys of GSI vector indexes
  (the pipeline filter's fields, kinds inferred from its values, plus `index.filter_fields`).

Kinds: text (analysed with the standard analyzer), keyword (one exact token), number, boolean.
A field gets one kind; `index.filter_fields` wins, then text, then what the filter implies.
"""

from __future__ import annotations

from typing import Any

from connector.config import IndexFieldKind, PipelineConfig
from connector.template import Template


def text_fields(p: PipelineConfig) -> list[str]:
    if p.index.text_fields is not None:
        names = list(p.index.text_fields)
    elif p.template is not None:
        names = Template.parse(p.template).fields
    else:
        names = []
    return [f for f in dict.fromkeys(names) if f != p.vector_field]


def _kind_of(value: Any) -> IndexFieldKind | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "keyword"
    if isinstance(value, list) and value:
        kinds = {_kind_of(v) for v in value}
        return kinds.pop() if len(kinds) == 1 else None
    return None


def filter_fields(p: PipelineConfig) -> list[str]:
    """Scalar fields for filtering: the pipeline filter's, then `index.filter_fields`."""
    names = list(p.filter.fields) if p.filter is not None else []
    names += list(p.index.filter_fields)
    return [f for f in dict.fromkeys(names) if f != p.vector_field]


def field_kinds(p: PipelineConfig) -> dict[str, IndexFieldKind]:
    """Every non-vector field the Search index maps, with its kind (insertion ordered)."""
    kinds: dict[str, IndexFieldKind] = {f: "text" for f in text_fields(p)}
    if p.filter is not None:
        for field, _op, arg in p.filter.conditions():
            kind = _kind_of(arg)
            if field not in kinds and kind is not None and field != p.vector_field:
                kinds[field] = kind
    for field, kind in p.index.filter_fields.items():
        if field != p.vector_field:
            kinds[field] = kind
    return kinds
