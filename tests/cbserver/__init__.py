"""Protocol-level Couchbase test server for cbembed's test suite.

The official ``couchbase`` SDK (sync and ``acouchbase``) and raw DCP clients connect to it
over loopback. See ``server.CouchbaseTestServer`` for the public API.
"""

from .context import CapturedRequest
from .data import Item, SysEvent
from .dcp import DcpStats
from .faults import Faults
from .query import QueryArgs, QueryError, QueryIndex, QueryRecord
from .server import CouchbaseTestServer, StoredDoc

__all__ = [
    "CapturedRequest",
    "CouchbaseTestServer",
    "DcpStats",
    "Faults",
    "Item",
    "QueryArgs",
    "QueryError",
    "QueryIndex",
    "QueryRecord",
    "StoredDoc",
    "SysEvent",
]
