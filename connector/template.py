"""Text templates over document fields: `"{title}. {body}"`, dotted paths, optional fields.

    {title}          required: missing, null, empty or of an unusable type -> ExtractError
    {address.city}   a dotted path into nested objects; `{tags.0}` indexes a list
    {subtitle?}      optional: rendered as "" when missing or null
    {{ and }}        literal braces

Values: strings as they are, numbers and booleans as text, lists of scalars joined by ", ".
Objects are refused (which of their fields would the user want?).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from connector.errors import ExtractError

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_PATH = re.compile(r"^[A-Za-z0-9_\-$@]+(\.[A-Za-z0-9_\-$@]+)*$")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Placeholder:
    path: tuple[str, ...]
    optional: bool

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    parts: tuple[str | Placeholder, ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        parts: list[str | Placeholder] = []
        pos = 0
        for m in _TOKEN.finditer(source):
            if m.start() > pos:
                parts.append(source[pos : m.start()])
            tok = m.group(0)
            if tok == "{{":
                parts.append("{")
            elif tok == "}}":
                parts.append("}")
            elif m.group(1) is None:
                raise ValueError(
                    f"unbalanced {tok!r} at position {m.start()} of template {source!r} "
                    "(write {{ or }} for a literal brace)"
                )
            else:
                inner = m.group(1).strip()
                optional = inner.endswith("?")
                inner = inner.removesuffix("?")
                if not _PATH.match(inner):
                    raise ValueError(
                        f"placeholder {{{m.group(1)}}} at position {m.start()} is not a field "
                        "name or dotted path"
                    )
                parts.append(Placeholder(tuple(inner.split(".")), optional))
            pos = m.end()
        if pos < len(source):
            parts.append(source[pos:])
        if not any(isinstance(p, Placeholder) for p in parts):
            raise ValueError(f"template {source!r} names no field: write e.g. '{{title}}'")
        return cls(source, tuple(parts))

    @property
    def fields(self) -> list[str]:
        return [p.dotted for p in self.parts if isinstance(p, Placeholder)]

    def render(self, doc: Any) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = lookup(doc, part.path)
            if value is _MISSING or value is None:
                if part.optional:
                    continue
                what = "missing" if value is _MISSING else "null"
                raise ExtractError(f"field {part.dotted!r} is {what}", kind="missing_field")
            text = _as_text(value, part)
            if not part.optional and not text.strip():
                raise ExtractError(f"field {part.dotted!r} is empty", kind="empty_field")
            out.append(text)
        return "".join(out).strip()


def lookup(doc: Any, path: tuple[str, ...]) -> Any:
    """Follow a dotted path through objects and lists; `_MISSING` when absent."""
    cur = doc
    for seg in path:
        if isinstance(cur, dict):
            if seg not in cur:
                return _MISSING
            cur = cur[seg]
        elif isinstance(cur, list) and seg.isdigit():
            i = int(seg)
            if i >= len(cur):
                return _MISSING
            cur = cur[i]
        else:
            return _MISSING
    return cur


def is_missing(value: Any) -> bool:
    return value is _MISSING


def _as_text(value: Any, part: Placeholder) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        return ", ".join(str(v) for v in value)
    kind = "an object" if isinstance(value, dict) else f"a {type(value).__name__}"
    raise ExtractError(
        f"field {part.dotted!r} is {kind}, expected text, a number or a list of those",
        kind="wrong_type",
    )
