"""Sub-document multi-lookup (0xd0), multi-mutation (0xd1) and single-path commands.

Called by ``kv.KvConnection`` on the server loop; every document change goes through
``Store.apply`` so it is atomic with respect to other threads. Semantics from kv_engine
``docs/SubDocument.md`` and ``docs/ExtendedAttributes.md``: xattr specs must come first,
xattr paths address the JSON object of all xattrs (``_sys.field`` needs ``_sys`` to exist
unless MKDIR_P), virtual xattrs ``$document``/``$XTOC``/``$vbucket`` are read-only,
``${Mutation.CAS}``/``${Mutation.seqno}``/``${Mutation.value_crc32c}`` expand after the CAS
is known (CAS as the hex of its little-endian bytes, like the server).
"""

from __future__ import annotations

import copy
import json
import struct
import time
from dataclasses import dataclass
from typing import Any

from . import subdoc_paths as sp
from .data import Draft, Item, KvError, Store, absolute_expiry, is_json
from .protocol import Opcode, Status

MKDIR_P = 0x01
XATTR_PATH = 0x04
EXPAND_MACROS = 0x10
DOC_MKDOC = 0x01
DOC_ADD = 0x02
DOC_ACCESS_DELETED = 0x04
MAX_PATHS = 16
LOOKUP_OPS = {Opcode.SUBDOC_GET, Opcode.SUBDOC_EXISTS, Opcode.SUBDOC_GET_COUNT, Opcode.GET}
MUTATION_OPS = {
    Opcode.SUBDOC_DICT_ADD, Opcode.SUBDOC_DICT_UPSERT, Opcode.SUBDOC_DELETE,
    Opcode.SUBDOC_REPLACE, Opcode.SUBDOC_ARRAY_PUSH_LAST, Opcode.SUBDOC_ARRAY_PUSH_FIRST,
    Opcode.SUBDOC_ARRAY_INSERT, Opcode.SUBDOC_ARRAY_ADD_UNIQUE, Opcode.SUBDOC_COUNTER,
    Opcode.SET, Opcode.DELETE,
}
MACROS = ("${Mutation.CAS}", "${Mutation.seqno}", "${Mutation.value_crc32c}")


@dataclass
class Spec:
    opcode: int
    flags: int
    path: str
    value: bytes = b""

    @property
    def xattr(self) -> bool:
        return bool(self.flags & XATTR_PATH)


@dataclass
class Reply:
    status: Status
    value: bytes = b""
    item: Item | None = None


class _MultiFailure(Exception):
    def __init__(self, index: int, status: Status) -> None:
        super().__init__(status.name)
        self.index = index
        self.status = status


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def parse_specs(value: bytes, mutation: bool) -> list[Spec]:
    specs: list[Spec] = []
    i = 0
    while i < len(value):
        if mutation:
            op, flags, plen, vlen = struct.unpack_from(">BBHI", value, i)
            i += 8
        else:
            op, flags, plen = struct.unpack_from(">BBH", value, i)
            vlen = 0
            i += 4
        path = value[i : i + plen].decode()
        i += plen
        specs.append(Spec(op, flags, path, value[i : i + vlen]))
        i += vlen
    return specs


def _validate(specs: list[Spec], mutation: bool) -> Status | None:
    if not specs or len(specs) > MAX_PATHS:
        return Status.SUBDOC_INVALID_COMBO
    allowed = MUTATION_OPS if mutation else LOOKUP_OPS
    seen_body = False
    for spec in specs:
        if spec.opcode not in allowed:
            return Status.SUBDOC_INVALID_COMBO
        if spec.xattr and seen_body:
            return Status.SUBDOC_INVALID_XATTR_ORDER
        seen_body = seen_body or not spec.xattr
        if spec.flags & EXPAND_MACROS and not spec.xattr:
            return Status.SUBDOC_XATTR_INVALID_FLAG_COMBO
        if spec.opcode in (Opcode.GET, Opcode.SET, Opcode.DELETE) and (spec.path or spec.xattr):
            return Status.EINVAL
    return None


def _document_vattr(item: Item, store: Store) -> dict[str, Any]:
    datatype = ["json"] if item.is_json else ["raw"]
    if item.xattrs:
        datatype.append("xattr")
    uuid = store.vb_state(item.vbucket)[1][0][0]
    return {
        "CAS": f"0x{item.cas:016x}",
        "vbucket_uuid": f"0x{uuid:016x}",
        "seqno": f"0x{item.seqno:016x}",
        "revid": str(item.rev_seqno),
        "exptime": item.expiry,
        "flags": item.flags,
        "value_bytes": len(item.body),
        "datatype": datatype,
        "deleted": item.deleted,
        "last_modified": str(item.cas // 1_000_000_000),
        "value_crc32c": f"0x{_crc32c(item.body):08x}",
    }


def _vattrs(item: Item, store: Store) -> dict[str, Any]:
    return {
        "$document": _document_vattr(item, store),
        "$XTOC": list(item.xattrs),
        "$vbucket": {"HLC": {"now": str(int(time.time())), "mode": "real"}},
    }


def lookup_in(store: Store, cid: int, key: bytes, doc_flags: int, specs: list[Spec]) -> Reply:
    bad = _validate(specs, mutation=False)
    if bad is not None:
        return Reply(bad)
    item = store.lookup(cid, key, include_deleted=bool(doc_flags & DOC_ACCESS_DELETED))
    if item is None:
        return Reply(Status.KEY_ENOENT)
    body: Any = None
    body_error: Status | None = None
    if item.is_json:
        body = json.loads(item.body)
    else:
        body_error = Status.SUBDOC_DOC_NOT_JSON
    out = bytearray()
    failed = False
    for spec in specs:
        status, result = Status.SUCCESS, b""
        try:
            if spec.xattr:
                root = _vattrs(item, store) if spec.path.startswith("$") else item.xattrs
                if spec.path.startswith("$") and sp.xattr_key_of(spec.path) not in root:
                    raise sp.SubdocError(Status.SUBDOC_XATTR_UNKNOWN_VATTR)
                sp.xattr_key_of(spec.path)
                result = sp.lookup(spec.opcode, root, sp.parse_path(spec.path))
            elif spec.opcode == Opcode.GET:
                if not item.body:
                    raise sp.SubdocError(Status.SUBDOC_PATH_ENOENT)
                result = item.body
            else:
                if body_error is not None:
                    raise sp.SubdocError(body_error)
                result = sp.lookup(spec.opcode, body, sp.parse_path(spec.path))
        except sp.SubdocError as err:
            status, result, failed = err.status, b"", True
        out += struct.pack(">HI", status, len(result)) + result
    if failed:
        status = (Status.SUBDOC_MULTI_PATH_FAILURE_DELETED if item.deleted
                  else Status.SUBDOC_MULTI_PATH_FAILURE)
    else:
        status = Status.SUBDOC_SUCCESS_DELETED if item.deleted else Status.SUCCESS
    return Reply(status, bytes(out), item)


def _expand_virtual(spec: Spec, current: Item | None, store: Store) -> bytes:
    text = spec.value.strip()
    if current is not None and text.startswith(b'"${$document'):
        name = text[2:-2].decode()  # ${$document.CAS} -> $document.CAS
        try:
            value = sp.get(_vattrs(current, store), sp.parse_path(name))
        except sp.SubdocError as err:
            raise sp.SubdocError(Status.SUBDOC_XATTR_UNKNOWN_VATTR) from err
        return sp.dumps(value)
    if text.startswith(b'"${Mutation.') and text[1:-1].decode() not in MACROS:
        raise sp.SubdocError(Status.SUBDOC_XATTR_UNKNOWN_MACRO)
    return spec.value


def _substitute(node: Any, table: dict[str, str]) -> Any:
    if isinstance(node, str):
        return table.get(node, node)
    if isinstance(node, list):
        return [_substitute(v, table) for v in node]
    if isinstance(node, dict):
        return {k: _substitute(v, table) for k, v in node.items()}
    return node


def mutate_in(store: Store, cid: int, key: bytes, *, doc_flags: int, cas: int, expiry: int,
              preserve_expiry: bool, specs: list[Spec]) -> Reply:
    bad = _validate(specs, mutation=True)
    if bad is not None:
        return Reply(bad)
    if doc_flags & DOC_ADD and (doc_flags & DOC_MKDOC or cas):
        return Reply(Status.EINVAL)
    if doc_flags & ~(DOC_MKDOC | DOC_ADD | DOC_ACCESS_DELETED):
        return Reply(Status.NOT_SUPPORTED)
    results: list[tuple[int, bytes]] = []
    creating = bool(doc_flags & (DOC_MKDOC | DOC_ADD))

    def build(current: Item | None) -> Draft:
        results.clear()
        if current is not None and doc_flags & DOC_ADD and not current.deleted:
            raise KvError(Status.KEY_EEXISTS)
        if current is None and not creating:
            raise KvError(Status.KEY_ENOENT)
        base = current if current is not None and not current.deleted else None
        # deep copy: history items must never change when a later version is built
        xattrs = copy.deepcopy(current.xattrs) if current is not None else {}
        body_bytes = base.body if base is not None else b""
        body_is_json: bool | None = base.is_json if base is not None else True
        body: Any = None
        body_touched = False
        macro_keys: set[str] = set()
        deleting = False
        for index, spec in enumerate(specs):
            mkdir = bool(spec.flags & MKDIR_P) or creating
            try:
                if spec.xattr:
                    xkey = sp.xattr_key_of(spec.path)
                    if xkey.startswith("$"):
                        raise sp.SubdocError(Status.SUBDOC_XATTR_CANT_MODIFY_VATTR)
                    value = spec.value
                    if spec.flags & EXPAND_MACROS:
                        value = _expand_virtual(spec, current, store)
                        macro_keys.add(xkey)
                    xattrs, result = sp.mutate(spec.opcode, xattrs, sp.parse_path(spec.path),
                                               value, mkdir)
                elif spec.opcode == Opcode.SET:
                    body_bytes, body_is_json, body, body_touched = spec.value, None, None, False
                elif spec.opcode == Opcode.DELETE:
                    deleting = True
                    result = b""
                else:
                    if body is None:
                        if base is None:
                            body = [] if (spec.opcode in (Opcode.SUBDOC_ARRAY_PUSH_LAST,
                                          Opcode.SUBDOC_ARRAY_PUSH_FIRST) and not spec.path) else {}
                        elif not body_is_json:
                            raise sp.SubdocError(Status.SUBDOC_DOC_NOT_JSON)
                        else:
                            body = json.loads(body_bytes)
                    body, result = sp.mutate(spec.opcode, body, sp.parse_path(spec.path),
                                             spec.value, mkdir)
                    body_touched = True
                if spec.opcode == Opcode.SUBDOC_COUNTER:
                    results.append((index, result))
            except sp.SubdocError as err:
                raise _MultiFailure(index, err.status) from err
        if body_touched:
            body_bytes = sp.dumps(body)
            body_is_json = True
        elif body_is_json is None:
            body_is_json = is_json(body_bytes)
        elif base is None and creating and not deleting:
            body_bytes, body_is_json = b"{}", True
        draft = Draft(
            body=body_bytes,
            is_json=bool(body_is_json),
            flags=base.flags if base is not None else 0,
            expiry=base.expiry if (preserve_expiry and base is not None) else absolute_expiry(
                expiry),
            system_xattrs={k: v for k, v in xattrs.items() if k.startswith("_")},
            user_xattrs={k: v for k, v in xattrs.items() if not k.startswith("_")},
            deleted=deleting or (current is not None and current.deleted and not creating
                                 and not body_touched),
        )
        if macro_keys:
            def post(d: Draft, new_cas: int, seqno: int) -> None:
                table = {
                    MACROS[0]: "0x" + new_cas.to_bytes(8, "little").hex(),
                    MACROS[1]: f"0x{seqno:016x}",
                    MACROS[2]: f"0x{_crc32c(d.body):08x}",
                }
                for xattrs_map in (d.system_xattrs, d.user_xattrs):
                    for k in macro_keys & set(xattrs_map):
                        xattrs_map[k] = _substitute(xattrs_map[k], table)
            draft.post = post
        return draft

    try:
        item = store.apply(cid, key, build, cas=cas,
                           include_deleted=bool(doc_flags & DOC_ACCESS_DELETED))
    except _MultiFailure as fail:
        return Reply(Status.SUBDOC_MULTI_PATH_FAILURE,
                     struct.pack(">BH", fail.index, fail.status))
    assert item is not None
    out = b"".join(struct.pack(">BHI", i, 0, len(r)) + r for i, r in results)
    return Reply(Status.SUCCESS, out, item)
