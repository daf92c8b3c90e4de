"""Collections manifest of the one test bucket: scopes and collections with ids and a uid.

Not thread-safe by itself: ``data.Store`` owns one and only touches it under its lock.
Ids follow Couchbase's conventions: ``_default`` scope and collection are 0, user scopes and
collections are numbered from 8, and every change increments the manifest uid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FIRST_USER_ID = 8


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    cid: int
    scope: str
    scope_id: int
    max_ttl: int = 0


@dataclass
class ScopeInfo:
    name: str
    sid: int
    collections: dict[str, CollectionInfo] = field(default_factory=dict)


class ManifestError(Exception):
    """Unknown or duplicate scope/collection; ``kind`` is 'scope' or 'collection'."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Manifest:
    """Scopes and collections; ``uid`` grows by one per change."""

    def __init__(self) -> None:
        self.uid = 0
        self._next_cid = FIRST_USER_ID
        self._next_sid = FIRST_USER_ID
        default = ScopeInfo("_default", 0)
        default.collections["_default"] = CollectionInfo("_default", 0, "_default", 0)
        self.scopes: dict[str, ScopeInfo] = {"_default": default}

    def lookup(self, scope: str, collection: str) -> CollectionInfo:
        s = self.scopes.get(scope)
        if s is None:
            raise ManifestError("scope", f'Scope with name "{scope}" is not found')
        c = s.collections.get(collection)
        if c is None:
            raise ManifestError(
                "collection", f'Collection with name "{collection}" in scope "{scope}" is not found'
            )
        return c

    def by_id(self, cid: int) -> CollectionInfo | None:
        for s in self.scopes.values():
            for c in s.collections.values():
                if c.cid == cid:
                    return c
        return None

    def scope_by_id(self, sid: int) -> ScopeInfo | None:
        for s in self.scopes.values():
            if s.sid == sid:
                return s
        return None

    def create_scope(self, name: str) -> ScopeInfo:
        if name in self.scopes:
            raise ManifestError("scope", f'Scope with name "{name}" already exists')
        scope = ScopeInfo(name, self._next_sid)
        self._next_sid += 1
        self.scopes[name] = scope
        self.uid += 1
        return scope

    def create_collection(self, scope: str, name: str, max_ttl: int = 0) -> CollectionInfo:
        s = self.scopes.get(scope)
        if s is None:
            raise ManifestError("scope", f'Scope with name "{scope}" is not found')
        if name in s.collections:
            raise ManifestError(
                "collection", f'Collection with name "{name}" in scope "{scope}" already exists'
            )
        info = CollectionInfo(name, self._next_cid, scope, s.sid, max_ttl)
        self._next_cid += 1
        s.collections[name] = info
        self.uid += 1
        return info

    def drop_collection(self, scope: str, name: str) -> CollectionInfo:
        info = self.lookup(scope, name)
        del self.scopes[scope].collections[name]
        self.uid += 1
        return info

    def drop_scope(self, name: str) -> ScopeInfo:
        if name == "_default":
            raise ManifestError("scope", "the _default scope cannot be dropped")
        s = self.scopes.pop(name, None)
        if s is None:
            raise ManifestError("scope", f'Scope with name "{name}" is not found')
        self.uid += 1
        return s

    def scope_of(self, cid: int) -> int | None:
        c = self.by_id(cid)
        return None if c is None else c.scope_id

    def to_json(self) -> dict[str, object]:
        """The manifest in the JSON shape KV and ns_server return (ids as hex strings)."""
        scopes = []
        for s in self.scopes.values():
            cols = []
            for c in s.collections.values():
                entry: dict[str, object] = {"name": c.name, "uid": f"{c.cid:x}"}
                if c.max_ttl:
                    entry["maxTTL"] = c.max_ttl
                cols.append(entry)
            scopes.append({"name": s.name, "uid": f"{s.sid:x}", "collections": cols})
        return {"uid": f"{self.uid:x}", "scopes": scopes}
