"""Field filters: which documents a pipeline takes, and search pre-filters.

    { type = "hotel" }                       equality
    { rating = { gte = 4 }, city = { in = ["Paris", "Lyon"] } }
    { "address.country" = { ne = "France" }, photo = { exists = true } }

Operators: eq, ne, in, nin, gt, gte, lt, lte, exists. All conditions must hold (AND).
The same value is evaluated in Python (pipeline filter) and rendered to SQL by the backends.
"""

from __future__ import annotations

from typing import Any

from pydantic import RootModel, model_validator

from connector.template import is_missing, lookup

OPERATORS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists")
Scalar = str | int | float | bool | None


class FieldFilter(RootModel[dict[str, Any]]):
    @model_validator(mode="after")
    def _check(self) -> FieldFilter:
        for field, cond in self.root.items():
            if not field or any(not seg for seg in field.split(".")):
                raise ValueError(f"filter field {field!r} is not a field name or dotted path")
            for op, arg in _ops(cond):
                if op not in OPERATORS:
                    raise ValueError(
                        f"filter on {field!r}: unknown operator {op!r} "
                        f"(known: {', '.join(OPERATORS)})"
                    )
                if op in ("in", "nin") and not isinstance(arg, list):
                    raise ValueError(f"filter on {field!r}: {op!r} needs a list")
                if op == "exists" and not isinstance(arg, bool):
                    raise ValueError(f"filter on {field!r}: 'exists' needs true or false")
                if op in ("gt", "gte", "lt", "lte") and not isinstance(arg, int | float | str):
                    raise ValueError(f"filter on {field!r}: {op!r} needs a number or text")
        return self

    def conditions(self) -> list[tuple[str, str, Any]]:
        """(field, operator, argument) triples, in a stable order."""
        return [(f, op, arg) for f, cond in self.root.items() for op, arg in _ops(cond)]

    def matches(self, doc: Any) -> bool:
        for field, op, arg in self.conditions():
            value = lookup(doc, tuple(field.split(".")))
            if not _holds(value, op, arg):
                return False
        return True

    @property
    def fields(self) -> list[str]:
        return list(self.root)


def _ops(cond: Any) -> list[tuple[str, Any]]:
    if isinstance(cond, dict):
        return sorted(cond.items())
    return [("eq", cond)]


def _holds(value: Any, op: str, arg: Any) -> bool:
    missing = is_missing(value)
    if op == "exists":
        return (not missing and value is not None) == arg
    if missing:
        return op in ("ne", "nin")
    if op == "eq":
        return bool(value == arg)
    if op == "ne":
        return bool(value != arg)
    if op == "in":
        return value in arg
    if op == "nin":
        return value not in arg
    try:
        if op == "gt":
            return bool(value > arg)
        if op == "gte":
            return bool(value >= arg)
        if op == "lt":
            return bool(value < arg)
        return bool(value <= arg)
    except TypeError:
        return False


def coerce_filter(value: FieldFilter | dict[str, Any] | None) -> FieldFilter | None:
    if value is None or isinstance(value, FieldFilter):
        return value
    return FieldFilter.model_validate(value)
