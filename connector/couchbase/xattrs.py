"""The metadata a pipeline keeps in an extended attribute beside the vector it wrote.

    _cbembed = {"<pipeline>": {"h": source hash, "m": model, "d": dims, "t": unix time,
                               "f": vector field}}

A name starting with '_' is a system xattr: it survives full-document writes by applications
(and deletion, in the tombstone), so the loop guard still works after an application rewrites a
document. DCP delivers xattrs with each change (IncludeXattrs), so no extra read is needed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from connector.events import PipelineMeta


def meta_path(xattr: str, pipeline: str) -> str:
    return f"{xattr}.{pipeline}"


def meta_value(source_hash: str, model: str, dims: int, vector_field: str) -> dict[str, Any]:
    return {"h": source_hash, "m": model, "d": dims, "t": round(time.time(), 3),
            "f": vector_field}


def parse_meta(xattrs: Mapping[str, Any], xattr: str) -> dict[str, PipelineMeta]:
    """Pipeline name -> PipelineMeta from a change's xattrs; malformed entries are ignored
    (the document is then simply embedded again)."""
    raw = xattrs.get(xattr)
    if not isinstance(raw, dict):
        return {}
    out = {}
    for name, m in raw.items():
        if isinstance(m, dict) and isinstance(m.get("h"), str):
            out[name] = PipelineMeta(
                m["h"], str(m.get("m", "")), int(m.get("d", 0) or 0), float(m.get("t", 0) or 0)
            )
    return out


def vector_json(vector: Any) -> list[float]:
    """float32 values as short JSON numbers, rounded to 7 decimals (absolute error <= 5e-8,
    which ranking never sees); the SDK refuses anything but Python floats."""
    return [round(float(x), 7) for x in vector]
