"""Sub-document path language and the per-path operations, on decoded JSON values.

Pure functions, no I/O or locking (``subdoc.py`` runs them under the store lock).
Written from kv_engine ``docs/SubDocument.md``: dotted paths, ``[n]`` array indexes with
``[-1]`` for the last element, backtick escaping, ``MKDIR_P`` creating intermediate
dictionaries only, and the status each failure maps to.
"""

from __future__ import annotations

import json
from typing import Any

from .protocol import Opcode, Status

Component = str | int
MAX_DEPTH = 32


class SubdocError(Exception):
    def __init__(self, status: Status) -> None:
        super().__init__(status.name)
        self.status = status


def parse_path(path: str) -> list[Component]:
    """Split a path into dict keys (str) and array indexes (int)."""
    out: list[Component] = []
    i, n = 0, len(path)
    if n == 0:
        return out
    expect_key = True
    while i < n:
        ch = path[i]
        if ch == "[":
            end = path.find("]", i)
            if end < 0:
                raise SubdocError(Status.SUBDOC_PATH_EINVAL)
            try:
                idx = int(path[i + 1 : end])
            except ValueError as exc:
                raise SubdocError(Status.SUBDOC_PATH_EINVAL) from exc
            if idx < -1:
                raise SubdocError(Status.SUBDOC_PATH_EINVAL)
            out.append(idx)
            i = end + 1
            expect_key = False
            continue
        if ch == ".":
            if expect_key:
                raise SubdocError(Status.SUBDOC_PATH_EINVAL)
            i += 1
            expect_key = True
            continue
        if not expect_key:
            raise SubdocError(Status.SUBDOC_PATH_EINVAL)
        key_chars: list[str] = []
        while i < n and path[i] not in ".[":
            if path[i] == "`":
                i += 1
                while True:
                    if i >= n:
                        raise SubdocError(Status.SUBDOC_PATH_EINVAL)
                    if path[i] == "`":
                        if i + 1 < n and path[i + 1] == "`":
                            key_chars.append("`")
                            i += 2
                            continue
                        i += 1
                        break
                    key_chars.append(path[i])
                    i += 1
            else:
                if path[i] == "]":
                    raise SubdocError(Status.SUBDOC_PATH_EINVAL)
                key_chars.append(path[i])
                i += 1
        out.append("".join(key_chars))
        expect_key = False
    if expect_key:
        raise SubdocError(Status.SUBDOC_PATH_EINVAL)
    if len(out) > MAX_DEPTH:
        raise SubdocError(Status.SUBDOC_PATH_E2BIG)
    return out


def _step(node: Any, comp: Component) -> Any:
    if isinstance(comp, int):
        if not isinstance(node, list):
            raise SubdocError(Status.SUBDOC_PATH_MISMATCH)
        if not node or comp >= len(node):
            raise SubdocError(Status.SUBDOC_PATH_ENOENT)
        return node[comp]
    if not isinstance(node, dict):
        raise SubdocError(Status.SUBDOC_PATH_MISMATCH)
    if comp not in node:
        raise SubdocError(Status.SUBDOC_PATH_ENOENT)
    return node[comp]


def get(doc: Any, comps: list[Component]) -> Any:
    node = doc
    for comp in comps:
        node = _step(node, comp)
    return node


def _parent(doc: Any, comps: list[Component], mkdir: bool) -> Any:
    """Walk to the container holding the last component, creating dicts when ``mkdir``."""
    node = doc
    for comp in comps[:-1]:
        if mkdir and isinstance(comp, str) and isinstance(node, dict) and comp not in node:
            node[comp] = {}
        node = _step(node, comp)
    return node


def parse_value(text: bytes, *, multi: bool = False) -> Any:
    """Decode a spec value; ``multi`` accepts a comma-separated list (array pushes)."""
    try:
        if multi:
            return json.loads(b"[" + text + b"]")
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SubdocError(Status.SUBDOC_VALUE_CANTINSERT) from exc


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def lookup(op: int, doc: Any, comps: list[Component]) -> bytes:
    """GET / EXISTS / GET_COUNT on one path; returns the result bytes."""
    node = get(doc, comps)
    if op == Opcode.SUBDOC_GET:
        return dumps(node)
    if op == Opcode.SUBDOC_EXISTS:
        return b""
    if op == Opcode.SUBDOC_GET_COUNT:
        if not isinstance(node, (list, dict)):
            raise SubdocError(Status.SUBDOC_PATH_MISMATCH)
        return str(len(node)).encode()
    raise SubdocError(Status.EINVAL)


def mutate(op: int, doc: Any, comps: list[Component], value: bytes, mkdir: bool) -> tuple[
    Any, bytes
]:
    """Apply one mutation spec; returns (new root, result bytes for COUNTER)."""
    if op in (Opcode.SUBDOC_ARRAY_PUSH_LAST, Opcode.SUBDOC_ARRAY_PUSH_FIRST):
        values = parse_value(value, multi=True)
        if not comps:
            target = doc
        else:
            parent = _parent(doc, comps, mkdir)
            last = comps[-1]
            try:
                target = _step(parent, last)
            except SubdocError as err:
                if err.status != Status.SUBDOC_PATH_ENOENT or not mkdir or isinstance(last, int):
                    raise
                target = parent[last] = []
        if not isinstance(target, list):
            raise SubdocError(Status.SUBDOC_PATH_MISMATCH)
        if op == Opcode.SUBDOC_ARRAY_PUSH_LAST:
            target.extend(values)
        else:
            target[:0] = values
        return doc, b""
    if not comps:
        raise SubdocError(Status.EINVAL)
    parent = _parent(doc, comps, mkdir)
    last = comps[-1]
    if op == Opcode.SUBDOC_ARRAY_INSERT:
        if not isinstance(last, int) or last < 0:
            raise SubdocError(Status.SUBDOC_PATH_EINVAL)
        if not isinstance(parent, list):
            raise SubdocError(Status.SUBDOC_PATH_MISMATCH)
        if last > len(parent):
            raise SubdocError(Status.SUBDOC_PATH_ENOENT)
        parent[last:last] = parse_value(value, multi=True)
        return doc, b""
    if op == Opcode.SUBDOC_ARRAY_ADD_UNIQUE:
        new = parse_value(value)
        if isinstance(new, (list, dict)):
            raise SubdocError(Status.SUBDOC_VALUE_CANTINSERT)
        try:
            target = _step(parent, last)
        except SubdocError as err:
            if err.status != Status.SUBDOC_PATH_ENOENT or not mkdir or isinstance(last, int):
                raise
            target = parent[last] = []
        if not isinstance(target, list) or any(isinstance(v, (list, dict)) for v in target):
            raise SubdocError(Status.SUBDOC_PATH_MISMATCH)
        if any(v == new and type(v) is type(new) for v in target):
            raise SubdocError(Status.SUBDOC_PATH_EEXISTS)
        target.append(new)
        return doc, b""
    if op in (Opcode.SUBDOC_DICT_ADD, Opcode.SUBDOC_DICT_UPSERT):
        if not isinstance(parent, dict) or not isinstance(last, str):
            raise SubdocError(Status.SUBDOC_PATH_MISMATCH)
        if op == Opcode.SUBDOC_DICT_ADD and last in parent:
            raise SubdocError(Status.SUBDOC_PATH_EEXISTS)
        parent[last] = parse_value(value)
        return doc, b""
    if op == Opcode.SUBDOC_REPLACE:
        _step(parent, last)
        idx = len(parent) - 1 if last == -1 else last
        parent[idx] = parse_value(value)  # type: ignore[index]
        return doc, b""
    if op == Opcode.SUBDOC_DELETE:
        _step(parent, last)
        idx = len(parent) - 1 if last == -1 else last
        del parent[idx]  # type: ignore[arg-type]
        return doc, b""
    if op == Opcode.SUBDOC_COUNTER:
        try:
            delta = int(value)
        except ValueError as exc:
            raise SubdocError(Status.SUBDOC_DELTA_EINVAL) from exc
        if delta == 0:
            raise SubdocError(Status.SUBDOC_DELTA_EINVAL)
        try:
            current = _step(parent, last)
        except SubdocError as err:
            if err.status != Status.SUBDOC_PATH_ENOENT or isinstance(last, int):
                raise
            current = 0
        if not isinstance(current, int) or isinstance(current, bool):
            raise SubdocError(Status.SUBDOC_PATH_MISMATCH)
        result = current + delta
        if not -(2**63) <= result < 2**63:
            raise SubdocError(Status.SUBDOC_VALUE_CANTINSERT)
        if isinstance(last, int):
            parent[len(parent) - 1 if last == -1 else last] = result
        else:
            parent[last] = result
        return doc, str(result).encode()
    raise SubdocError(Status.EINVAL)


def xattr_key_of(path: str) -> str:
    """The X-Key (first path component) of an xattr path; validates it.

    Per ExtendedAttributes.md and kv_engine's key validator: the key ends at the first '.'
    or '[', is 1..15 bytes, may not start with punctuation other than '_' / '$', and a
    '_' or '$' key needs at least 2 bytes.
    """
    end = len(path)
    for i, ch in enumerate(path):
        if ch in ".[":
            end = i
            break
    key = path[:end]
    raw = key.encode()
    if not raw or len(raw) >= 16 or "\x00" in key:
        raise SubdocError(Status.XATTR_EINVAL)
    first = key[0]
    if first in "_$":
        if len(raw) < 2:
            raise SubdocError(Status.XATTR_EINVAL)
    elif not first.isalnum() and ord(first) < 128:
        raise SubdocError(Status.XATTR_EINVAL)
    return key
