"""An asyncio DCP (Database Change Protocol) client for Couchbase.

    from connector.dcp import DcpClient, DcpSettings
    client = DcpClient(DcpSettings(connection_string="couchbase://127.0.0.1", username="u",
                                   password="p", bucket="default", connection_name="cbembed/x"))
    await client.connect()
    async for item in client.stream(range(client.num_vbuckets), {}, ["inventory.hotels"]):
        ...

Modules: opcodes (constants), frames (header codec), requests/messages (pure encode/decode),
snappy, scram, connstr, topology, state (PartitionState), flow_control, connection (asyncio
transport + handshake), stream (per-vbucket state machine, the async iterator), client.
"""

from connector.dcp.client import DcpClient
from connector.dcp.errors import (
    DcpAuthError,
    DcpConnectionError,
    DcpError,
    DcpProtocolError,
    DcpStreamError,
    KvStatusError,
    UnknownCollectionError,
)
from connector.dcp.events import (
    CollectionDroppedEvent,
    DcpItem,
    RollbackEvent,
    SeqnoAdvancedEvent,
    StreamEndEvent,
)
from connector.dcp.opcodes import StreamEndReason
from connector.dcp.settings import DcpSettings
from connector.dcp.stream import DcpStream

__all__ = [
    "CollectionDroppedEvent",
    "DcpAuthError",
    "DcpClient",
    "DcpConnectionError",
    "DcpError",
    "DcpItem",
    "DcpProtocolError",
    "DcpSettings",
    "DcpStream",
    "DcpStreamError",
    "KvStatusError",
    "RollbackEvent",
    "SeqnoAdvancedEvent",
    "StreamEndEvent",
    "StreamEndReason",
    "UnknownCollectionError",
]
