"""DcpClient: the public entry point. Owns the config, the connections and the session.

Runs on one asyncio event loop (the caller's). Layering, after java-dcp-client:
`connection.py` (transport + handshake) <- `client.py` (conductor: config, one control
connection, one DCP connection per KV node) <- `stream.py` (per-vbucket state machine and the
async iterator the consumer pulls). Codecs (`frames`, `requests`, `messages`) are stateless.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

from connector.dcp import requests
from connector.dcp.connection import Connection
from connector.dcp.connstr import HostPort, parse_connection_string
from connector.dcp.errors import (
    DcpAuthError,
    DcpConnectionError,
    DcpError,
    KvStatusError,
    UnknownCollectionError,
)
from connector.dcp.messages import decode_collection_id, decode_failover_log, decode_vb_seqnos
from connector.dcp.opcodes import Status, VBucketState
from connector.dcp.settings import DcpSettings
from connector.dcp.stream import DcpStream
from connector.dcp.topology import BucketConfig, parse_bucket_config
from connector.errors import ConfigError
from connector.events import PartitionOffset, Snapshot

log = logging.getLogger(__name__)


class DcpClient:
    """An asyncio DCP consumer for one bucket. One `stream()` at a time."""

    def __init__(self, settings: DcpSettings) -> None:
        self.settings = settings
        self._connstr = parse_connection_string(settings.connection_string)
        self.tls = self._connstr.tls
        if settings.sasl_mechanism == "PLAIN" and not self.tls:
            raise ConfigError(
                [("sasl_mechanism", "PLAIN needs couchbases:// (TLS)")], source="DcpSettings"
            )
        self._ssl: ssl.SSLContext | None = self._make_ssl() if self.tls else None
        self._config: BucketConfig | None = None
        self._control: Connection | None = None
        self._control_lock = asyncio.Lock()
        self._dcp: dict[HostPort, Connection] = {}
        self._dcp_locks: dict[HostPort, asyncio.Lock] = {}
        self._stream: DcpStream | None = None
        self._cids: dict[str, int] = {}
        self._closed = False

    def _make_ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.settings.ca_cert)
        if not self.settings.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    # -- bootstrap and config -------------------------------------------------------------------

    async def connect(self) -> None:
        """Bootstrap: open a KV connection to the first reachable seed, read the bucket config.
        DCP connections open lazily, one per KV node that owns a vbucket we ask about."""
        self._closed = False
        await self.refresh_config()

    @property
    def config(self) -> BucketConfig:
        if self._config is None:
            raise DcpError("not connected: await client.connect() first")
        return self._config

    @property
    def num_vbuckets(self) -> int:
        return self.config.num_vbuckets

    def _seeds(self) -> list[HostPort]:
        seeds = list(self._connstr.hosts)
        if self._config is not None:
            for node in self._config.nodes:
                try:
                    addr = node.address(self.tls)
                except ValueError:
                    continue
                if addr not in seeds:
                    seeds.append(addr)
        return seeds

    async def _control_conn(self) -> Connection:
        async with self._control_lock:
            if self._control is not None and not self._control.closed:
                return self._control
            errors: list[str] = []
            for seed in self._seeds():
                try:
                    self._control = await Connection.open(
                        seed, self.settings, tls=self._ssl, dcp=False
                    )
                    return self._control
                except (DcpAuthError, KvStatusError):
                    raise
                except DcpError as e:
                    errors.append(str(e))
            raise DcpConnectionError("no seed node reachable: " + "; ".join(errors))

    async def refresh_config(self) -> BucketConfig:
        """GET_CLUSTER_CONFIG on the control connection; keeps the newest (revEpoch, rev)."""
        conn = await self._control_conn()
        reply = await conn.call(requests.get_cluster_config)
        config = parse_bucket_config(reply.value, conn.address.host)
        if config.is_newer_than(self._config):
            self._config = config
        return self.config

    # -- collections ----------------------------------------------------------------------------

    async def collection_ids(self, paths: Iterable[str]) -> dict[str, int]:
        """{"scope.collection": collection id}; UnknownCollectionError names a missing one."""
        out: dict[str, int] = {}
        for path in paths:
            parts = path.split(".")
            if len(parts) != 2 or not all(parts):
                raise ConfigError([("collections", f"{path!r} must be 'scope.collection'")])
            conn = await self._control_conn()
            reply = await conn.call(requests.get_collection_id, path, check=False)
            if reply.status in (Status.UNKNOWN_COLLECTION, Status.UNKNOWN_SCOPE):
                raise UnknownCollectionError(path, self.settings.bucket)
            if reply.status != Status.SUCCESS:
                raise KvStatusError(reply.opcode, reply.status, path)
            _uid, cid = decode_collection_id(reply)
            out[path] = self._cids[path] = cid
        return out

    async def collections_manifest(self) -> dict[str, Any]:
        """GET_COLLECTIONS_MANIFEST as JSON ({} if the server does not support it)."""
        conn = await self._control_conn()
        reply = await conn.call(requests.get_collections_manifest, check=False)
        if reply.status != Status.SUCCESS:
            log.warning(
                "no collections manifest (%s): unknown collection ids will be named by number",
                Status.describe(reply.status),
            )
            return {}
        doc: dict[str, Any] = json.loads(reply.value)
        return doc

    # -- DCP connections ------------------------------------------------------------------------

    async def _dcp_connection(self, address: HostPort) -> Connection:
        lock = self._dcp_locks.setdefault(address, asyncio.Lock())
        async with lock:
            conn = self._dcp.get(address)
            if conn is not None and not conn.closed:
                return conn
            sink = self._stream._on_frame if self._stream is not None else None
            conn = await Connection.open(address, self.settings, tls=self._ssl, dcp=True, sink=sink)
            conn.on_closed = self._on_dcp_closed
            self._dcp[address] = conn
            return conn

    def _on_dcp_closed(self, conn: Connection, reason: BaseException | None) -> None:
        if self._dcp.get(conn.address) is conn:
            del self._dcp[conn.address]
        if self._stream is not None:
            self._stream._on_connection_lost(conn)

    async def current_positions(self, vbuckets: Iterable[int]) -> dict[int, PartitionOffset]:
        """Where each vbucket is now ("from now"): high seqno + newest failover entry."""
        vbs = sorted(set(vbuckets))
        out: dict[int, PartitionOffset] = {}
        for node, node_vbs in self.config.vbuckets_by_node(vbs).items():
            conn = await self._dcp_connection(node.address(self.tls))
            reply = await conn.call(requests.get_all_vb_seqnos, VBucketState.ACTIVE)
            seqnos = decode_vb_seqnos(reply.value)
            logs = await asyncio.gather(
                *(conn.call(requests.get_failover_log, vb) for vb in node_vbs)
            )
            for vb, flog_reply in zip(node_vbs, logs, strict=True):
                if vb not in seqnos:
                    raise DcpError(f"vbucket {vb} is not active on {node.host}:{node.port}")
                flog = decode_failover_log(flog_reply.value)
                seqno = seqnos[vb]
                out[vb] = PartitionOffset(
                    flog[0].vbuuid if flog else 0, seqno, Snapshot(seqno, seqno)
                )
        return out

    async def collection_high_seqnos(
        self, vbuckets: Iterable[int], collections: Iterable[str]
    ) -> dict[int, int]:
        """Per vbucket, the highest seqno of any of `collections` ("scope.collection"): where a
        filtered stream is caught up (writes to other collections do not count)."""
        vbs = sorted(set(vbuckets))
        cids = list((await self.collection_ids(collections)).values())
        out = dict.fromkeys(vbs, 0)
        for node in self.config.vbuckets_by_node(vbs):
            conn = await self._dcp_connection(node.address(self.tls))
            for cid in cids:
                reply = await conn.call(requests.get_all_vb_seqnos, VBucketState.ACTIVE, cid)
                for vb, seqno in decode_vb_seqnos(reply.value).items():
                    if vb in out:
                        out[vb] = max(out[vb], seqno)
        return out

    # -- streaming ------------------------------------------------------------------------------

    def stream(
        self,
        vbuckets: Iterable[int],
        offsets: Mapping[int, PartitionOffset],
        collections: list[str],
    ) -> DcpStream:
        """Stream `vbuckets` from `offsets` (missing: from zero), only `collections`
        ("scope.collection"; empty list: every collection). Iterate with `async for`."""
        return DcpStream(self, vbuckets, offsets, collections)

    async def _attach_stream(self, stream: DcpStream) -> None:
        if self._stream is not None and self._stream is not stream:
            raise DcpError("this client already has an open stream; close it first")
        if self._config is None:
            await self.connect()
        self._stream = stream
        for conn in self._dcp.values():
            conn.sink = stream._on_frame

    async def _detach_stream(self, stream: DcpStream) -> None:
        if self._stream is stream:
            self._stream = None
            await self._close_dcp()

    async def _close_dcp(self) -> None:
        conns, self._dcp = list(self._dcp.values()), {}
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    def connection_stats(self) -> list[dict[str, Any]]:
        """Per DCP connection: address, bytes received/acked/unacked, NOOPs answered."""
        return [
            {
                "address": str(addr),
                "received": c.flow.received,
                "acked": c.flow.acked,
                "unacked": c.flow.unacked,
                "noops_answered": c.noops_answered,
            }
            for addr, c in self._dcp.items()
        ]

    async def close(self) -> None:
        self._closed = True
        if self._stream is not None:
            await self._stream.aclose()
        await self._close_dcp()
        if self._control is not None:
            await self._control.close()
            self._control = None

    async def __aenter__(self) -> DcpClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
