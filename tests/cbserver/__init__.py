"""Protocol-level Couchbase test server for cbembed's test suite.

The official ``couchbase`` SDK (sync and ``acouchbase``) and raw DCP clients connect to it
over loopback. Public entry point: ``CouchbaseTestServer`` (server.py)::

    with CouchbaseTestServer(collections={"inventory": ["hotels"]}) as srv:
        cluster = Cluster(srv.connection_string, ClusterOptions(PasswordAuthenticator(...)))

Modules, one job each: protocol (MCBP codec), scram (SASL), manifest / items / data (the
bucket: collections, vBuckets, seqnos, CAS, xattrs, history, failover logs), subdoc_paths /
subdoc (sub-document engine), kv (memcached connection handler), dcp / dcp_stream /
dcp_commands / rollback (DCP producer), http / mgmt / query / search / search_engine (HTTP
services), faults, context (shared state, cluster config), server (lifecycle, test API).
rawclient.py is a hand-framed client used only by the server's own tests.

Behaviour follows kv_engine's documentation and validators (see each module's docstring);
where it is stricter or different from couchbase-wire.md that is deliberate, e.g. full
document writes keep *all* xattrs (kv_engine MutationCommandContext) unless the server is
created with ``xattrs_on_full_write="keep_system_only"``.

Not implemented: range scans, GET_LOCKED/UNLOCK, APPEND/PREPEND/INCR/DECR, OBSERVE_SEQNO,
durability (SyncReplication frames are accepted and ignored), Snappy, TLS, DCP stream-ids,
OSO snapshots, FlatBuffers system events, snapshot marker v2.x, analytics/eventing/views.
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
