"""The embedded default: a durable SQLite store that behaves like a small Couchbase bucket."""

from connector.embedded.backend import EmbeddedBackend
from connector.embedded.database import EmbeddedDatabase, GetResult, MutationResult, partition_of

__all__ = ["EmbeddedBackend", "EmbeddedDatabase", "GetResult", "MutationResult", "partition_of"]
