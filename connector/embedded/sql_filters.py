"""Render a `FieldFilter` as an SQLite condition over a JSON document column."""

from __future__ import annotations

import json
import re
from typing import Any

from connector.filters import FieldFilter

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SQL_OPS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def json_path(field: str) -> str:
    segs = []
    for seg in field.split("."):
        if seg.isdigit():
            segs.append(f"[{seg}]")
        elif _PLAIN.match(seg):
            segs.append(f".{seg}")
        else:
            segs.append("." + json.dumps(seg))
    return "$" + "".join(segs)


def _sql_value(v: Any) -> Any:
    return int(v) if isinstance(v, bool) else v


def filter_sql(flt: FieldFilter | None, column: str = "body") -> tuple[str, list[Any]]:
    """`(condition, parameters)`; "1" when there is no filter."""
    if flt is None:
        return "1", []
    parts: list[str] = []
    args: list[Any] = []
    for field, op, arg in flt.conditions():
        expr = f"json_extract({column}, ?)"
        args.append(json_path(field))
        if op == "exists":
            parts.append(f"{expr} IS {'NOT ' if arg else ''}NULL")
        elif op == "nin" and not arg:
            args.pop()  # nothing is excluded
            parts.append("1")
        elif op in ("in", "nin"):
            marks = ",".join("?" * len(arg)) or "NULL"
            if op == "in":
                parts.append(f"{expr} IN ({marks})")
            else:
                args.append(json_path(field))
                parts.append(f"({expr} IS NULL OR json_extract({column}, ?) NOT IN ({marks}))")
            args.extend(_sql_value(a) for a in arg)
        elif arg is None and op == "eq":  # a JSON null, not a missing field
            parts.append(f"json_type({column}, ?) = 'null'")
        elif arg is None and op == "ne":
            parts.append(f"coalesce(json_type({column}, ?), '') != 'null'")
        elif op == "ne":
            args.append(json_path(field))
            parts.append(f"({expr} IS NULL OR json_extract({column}, ?) != ?)")
            args.append(_sql_value(arg))
        else:
            parts.append(f"{expr} {_SQL_OPS[op]} ?")
            args.append(_sql_value(arg))
    return " AND ".join(parts), args
