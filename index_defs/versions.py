"""Which Couchbase Server version each vector feature needs, and a clear error when it is missing.

Sources (couchbase docs-devex): vector fields in Search indexes from 7.6.0; `dims` above 2048
and `vector_base64` from 7.6.2; `cosine` similarity and knn `filter` (pre-filtering) from
7.6.4; Hyperscale / Composite vector indexes (CREATE VECTOR INDEX, `VECTOR` index keys) and
APPROX_VECTOR_DISTANCE from 8.0.0.

    v = ServerVersion.parse("8.0.0-3777-enterprise")
    require("gsi_vector_index", v)          # passes
    require("search_knn_prefilter", ServerVersion.parse("7.6.2"))   # ServerVersionError
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.errors import ServerVersionError


@dataclass(frozen=True, order=True, slots=True)
class ServerVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> ServerVersion:
        """'8.0.0', '7.6.4-5146-enterprise' or '7.6' -> ServerVersion."""
        head = text.strip().split("-")[0]
        try:
            parts = [int(p) for p in head.split(".")[:3]]
        except ValueError:
            raise ValueError(f"not a Couchbase Server version: {text!r}") from None
        if not parts or len(parts) < 2:
            raise ValueError(f"not a Couchbase Server version: {text!r}")
        while len(parts) < 3:
            parts.append(0)
        return cls(parts[0], parts[1], parts[2])

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True, slots=True)
class Feature:
    minimum: ServerVersion
    what: str


FEATURES: dict[str, Feature] = {
    "search_vector": Feature(ServerVersion(7, 6, 0), "a vector field in a Search index"),
    "search_dims_4096": Feature(ServerVersion(7, 6, 2), "a Search vector field above 2048 dims"),
    "search_vector_base64": Feature(ServerVersion(7, 6, 2), "a vector_base64 field or query"),
    "search_cosine": Feature(ServerVersion(7, 6, 4), "the cosine similarity in a Search index"),
    "search_knn_prefilter": Feature(
        ServerVersion(7, 6, 4), "a vector search pre-filter (knn filter)"
    ),
    "gsi_vector_index": Feature(
        ServerVersion(8, 0, 0), "a Hyperscale or Composite vector index (Query service)"
    ),
    "approx_vector_distance": Feature(ServerVersion(8, 0, 0), "APPROX_VECTOR_DISTANCE()"),
}

#: the largest `dims` a Search vector field accepts (7.6.2+); 2048 before
MAX_SEARCH_DIMS = 4096


def supports(feature: str, version: ServerVersion | None) -> bool | None:
    """True/False, or None when the version is unknown."""
    if version is None:
        return None
    return version >= FEATURES[feature].minimum


def require(feature: str, version: ServerVersion | None, hint: str = "") -> None:
    """Raise ServerVersionError when `version` is known and too old; unknown passes (the server
    then answers for itself)."""
    f = FEATURES[feature]
    if version is not None and version < f.minimum:
        tail = f" ({hint})" if hint else ""
        raise ServerVersionError(
            f"{f.what} needs Couchbase Server {f.minimum} or later; this cluster runs "
            f"{version}{tail}"
        )
