"""The cbembed error tree.

    CbembedError                     root of everything cbembed raises on purpose
    ├── ConfigError                  the configuration is invalid (one line per problem)
    ├── InvalidOffsetError           a resume point that cannot exist
    ├── DocumentError                one document cannot be processed (-> dead letter)
    │   ├── ExtractError             not JSON, a field missing or of the wrong type
    │   └── SourceError              an image/audio source unreadable, too large, unsupported
    ├── EncoderError                 the model failed (retriable=False unless it says otherwise)
    │   └── EncoderNotFoundError     no encoder of that kind is installed
    ├── StorageError                 the backend failed (retriable: temporary)
    │   └── CasMismatch              the document changed since the event (never retried)
    ├── DocumentNotFoundError        a key-value read or write found no document
    ├── DocumentExistsError          an insert found the key taken
    ├── SearchError                  a search request cannot be answered as asked
    │   └── IndexDefinitionError     an index is missing or does not match the encoder
    └── ServerVersionError           the cluster is too old for a feature

`retriable` on the class says whether trying again later may succeed.
"""

from __future__ import annotations


class CbembedError(Exception):
    retriable: bool = False


class ConfigError(CbembedError):
    """Invalid configuration. `problems` holds (path, reason) pairs, one per problem."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"invalid configuration{where}:"]
        lines += [f"  {path}: {reason}" for path, reason in problems]
        super().__init__("\n".join(lines))


class InvalidOffsetError(CbembedError, ValueError):
    pass


class DocumentError(CbembedError):
    """A document the pipeline cannot handle; `kind` is a short machine-readable reason class."""

    kind = "document"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class ExtractError(DocumentError):
    kind = "extract"


class SourceError(DocumentError):
    kind = "source"


class EncoderError(CbembedError):
    pass


class EncoderNotFoundError(EncoderError):
    pass


class StorageError(CbembedError):
    retriable = True


class CasMismatch(StorageError):
    retriable = False


class SearchError(CbembedError):
    pass


class DocumentNotFoundError(CbembedError, KeyError):
    """A key-value read or CAS write found no (live) document."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "document not found"


class DocumentExistsError(CbembedError):
    """An insert found a document under that key already."""


class IndexDefinitionError(SearchError):
    """A vector index is missing, or its field, dimension or similarity does not match the
    pipeline's encoder (searching it would return wrong or no results)."""


class ServerVersionError(CbembedError):
    """The Couchbase Server version is too old for a feature (the message names both)."""
