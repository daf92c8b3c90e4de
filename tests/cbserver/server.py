"""``CouchbaseTestServer``: one Couchbase node with one bucket, on loopback ports.

Threads and loops: ``start()`` runs the server on its own event loop in a daemon thread
(for the sync SDK, which blocks its caller); ``await start_async()`` runs it on the
caller's loop instead (for ``acouchbase`` and asyncio clients). Handlers only ever run on
that one loop. The data/fault/inspection methods below are thread-safe and may be called
from any thread; ``restart``/``stop`` must not be called from the server's own loop (use the
``*_async`` forms there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .context import CapturedRequest, Ports, ServerContext
from .data import Draft, Item, KvError, Store, XattrMode
from .dcp import DcpStats, drop_all_dcp, end_streams
from .dcp_commands import all_stats
from .faults import Faults
from .http import HttpReply, HttpRequest, Router, serve_http
from .kv import KvConnection
from .mgmt import route as mgmt_route
from .query import QueryHandler, QueryIndex, QueryRecord, QueryService
from .search import SearchService

FMT_JSON = 0x02000000
FMT_BYTES = 0x03000002


@dataclass(frozen=True)
class StoredDoc:
    """A document as the server holds it (tombstones have ``deleted=True``)."""

    scope: str
    collection: str
    key: str
    body: bytes
    value: Any
    is_json: bool
    cas: int
    seqno: int
    rev_seqno: int
    vbucket: int
    flags: int
    expiry: int
    user_xattrs: dict[str, Any] = field(default_factory=dict)
    system_xattrs: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False

    @property
    def xattrs(self) -> dict[str, Any]:
        return {**self.system_xattrs, **self.user_xattrs}


class CouchbaseTestServer:
    """Protocol-level Couchbase test server (KV + DCP + mgmt/query/search HTTP)."""

    def __init__(
        self,
        bucket: str = "default",
        username: str = "Administrator",
        password: str = "password",
        num_vbuckets: int = 64,
        collections: dict[str, list[str]] | None = None,
        server_version: str = "7.6.4",
        *,
        xattrs_on_full_write: XattrMode = "preserve",
        dcp_connection_manager_interval: float = 1.0,
        host: str = "127.0.0.1",
    ) -> None:
        self._collections = {k: list(v) for k, v in (collections or {}).items()}
        self._num_vbuckets = num_vbuckets
        self._xattr_mode: XattrMode = xattrs_on_full_write
        self.faults = Faults()
        self.ctx = ServerContext(self._new_store(), bucket, username, password, server_version,
                                 self.faults, dcp_connection_manager_interval, host=host)
        self.faults.on_not_my_vbucket = self.ctx.bump_rev
        self.faults.on_drop_now = self._drop_dcp_now
        self.faults.on_end_streams = self._end_streams
        self.query = QueryService(self.ctx)
        self.search = SearchService(self.ctx)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def _new_store(self) -> Store:
        store = Store(self._num_vbuckets, self._xattr_mode)
        for scope, names in self._collections.items():
            if scope != "_default":
                store.create_scope(scope)
            for name in names:
                store.create_collection(scope, name)
        return store

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def connection_string(self) -> str:
        return f"couchbase://{self.ctx.host}:{self.ctx.ports.kv}"

    @property
    def ports(self) -> Ports:
        return self.ctx.ports

    def start(self) -> CouchbaseTestServer:
        """Start on a private loop in a daemon thread; returns once every port listens."""
        if self._loop is not None:
            raise RuntimeError("server already started")
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="cbserver", daemon=True)
        self._thread.start()
        self._loop = loop
        asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout=10)
        return self

    async def start_async(self) -> CouchbaseTestServer:
        """Start on the running loop (the caller's)."""
        if self._loop is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        await self._listen()
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if thread is None:
            raise RuntimeError("started with start_async(): use await stop_async()")
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    async def stop_async(self) -> None:
        if self._loop is None:
            return
        await self._shutdown()
        self._loop = None

    def __enter__(self) -> CouchbaseTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> CouchbaseTestServer:
        return await self.start_async()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    def restart(self, keep_data: bool = True) -> None:
        """Close every connection and listen again on the same ports (threaded mode)."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("not started with start(): use await restart_async()")
        asyncio.run_coroutine_threadsafe(self.restart_async(keep_data), self._loop).result(10)

    async def restart_async(self, keep_data: bool = True) -> None:
        await self._shutdown()
        if not keep_data:
            self.ctx.store = self._new_store()
            self.query.indexes.clear()
            self.search.indexes.clear()
            self.faults.clear()
        await self._listen()

    async def _listen(self) -> None:
        ports = self.ctx.ports
        routers = {"mgmt": self._mgmt, "n1ql": self.query.handle, "fts": self.search.handle}
        self._servers = [await asyncio.start_server(self._on_kv, self.ctx.host, ports.kv,
                                                    reuse_address=True)]
        ports.kv = self._servers[0].sockets[0].getsockname()[1]
        for service, router in routers.items():
            srv = await asyncio.start_server(self._http_acceptor(service, router), self.ctx.host,
                                             getattr(ports, service), reuse_address=True)
            setattr(ports, service, srv.sockets[0].getsockname()[1])
            self._servers.append(srv)

    async def _shutdown(self) -> None:
        for srv in self._servers:
            srv.close()
        drop_all_dcp(self.ctx, "server shutdown")
        for writer in list(self.ctx.writers):
            transport = writer.transport
            if transport is not None:
                transport.abort()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 2)
        self._servers = []
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    def _http_acceptor(self, service: str, router: Router) -> Callable[
            [asyncio.StreamReader, asyncio.StreamWriter], None]:
        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._spawn(serve_http(self.ctx, service, router, reader, writer))
        return accept

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_kv(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)  # type: ignore[arg-type]
            task.add_done_callback(self._tasks.discard)  # type: ignore[arg-type]
        await KvConnection(self.ctx, reader, writer).run()

    async def _mgmt(self, req: HttpRequest) -> HttpReply:
        return await mgmt_route(self.ctx, req)

    def _drop_dcp_now(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(drop_all_dcp, self.ctx, "fault: drop_dcp_connections")

    def _end_streams(self, vbuckets: set[int], reason: int) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(end_streams, self.ctx, vbuckets, reason)

    # -- data (any thread) --------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.ctx.store

    def _cid(self, scope: str, collection: str) -> int:
        return self.store.resolve(scope, collection).cid

    def _doc(self, scope: str, collection: str, item: Item) -> StoredDoc:
        value = json.loads(item.body) if item.is_json else None
        return StoredDoc(scope, collection, item.key.decode(), item.body, value, item.is_json,
                         item.cas, item.seqno, item.rev_seqno, item.vbucket, item.flags,
                         item.expiry, dict(item.user_xattrs), dict(item.system_xattrs),
                         item.deleted)

    def get(self, scope: str, collection: str, key: str) -> StoredDoc | None:
        """The stored version of ``key`` (a tombstone too), or None if never written."""
        item = self.store.lookup(self._cid(scope, collection), key.encode(), include_deleted=True)
        return None if item is None else self._doc(scope, collection, item)

    def upsert(self, scope: str, collection: str, key: str, value: Any, *, expiry: int = 0,
               flags: int | None = None, user_xattrs: dict[str, Any] | None = None,
               system_xattrs: dict[str, Any] | None = None) -> StoredDoc:
        """Write a document as a KV SET would (new seqno and CAS, DCP mutation). ``bytes``
        are stored as is; anything else as JSON. Given xattr dicts replace the stored ones."""
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        fmt = flags if flags is not None else (FMT_BYTES if isinstance(value, bytes) else FMT_JSON)
        draft = self.store.full_write_draft(body, fmt, expiry)

        def build(cur: Item | None) -> Draft:
            base = self.store.keep_xattrs(cur, draft)
            if user_xattrs is not None:
                base.user_xattrs = dict(user_xattrs)
            if system_xattrs is not None:
                base.system_xattrs = dict(system_xattrs)
            return base

        item = self.store.apply(self._cid(scope, collection), key.encode(), build)
        assert item is not None
        return self._doc(scope, collection, item)

    def remove(self, scope: str, collection: str, key: str) -> StoredDoc:
        """Delete as a KV DELETE would; returns the tombstone. KeyError if absent."""
        try:
            item = self.store.delete(self._cid(scope, collection), key.encode())
        except KvError as err:
            raise KeyError(key) from err
        return self._doc(scope, collection, item)

    def create_scope(self, scope: str) -> int:
        sid = self.store.create_scope(scope)
        self.ctx.bump_rev()
        return sid

    def drop_scope(self, scope: str) -> None:
        self.store.drop_scope(scope)
        self.ctx.bump_rev()

    def create_collection(self, scope: str, name: str, max_ttl: int = 0) -> int:
        """Create a collection (system event at a new seqno in every vBucket); returns its id."""
        cid = self.store.create_collection(scope, name, max_ttl)
        self.ctx.bump_rev()
        return cid

    def drop_collection(self, scope: str, name: str) -> None:
        self.store.drop_collection(scope, name)
        self.ctx.bump_rev()

    def collection_id(self, scope: str, name: str) -> int:
        return self._cid(scope, name)

    def failover(self, vbucket: int, lose_after_seqno: int | None = None) -> int:
        """New failover entry (returns the new vbucket uuid); DCP streams on the vBucket end
        with StateChanged. ``lose_after_seqno`` drops history above it."""
        return self.store.failover(vbucket, lose_after_seqno)

    def vbucket_of(self, key: str) -> int:
        return self.store.vbucket_of(key.encode())

    def high_seqno(self, vbucket: int) -> int:
        return self.store.vb_state(vbucket)[0]

    def failover_log(self, vbucket: int) -> list[tuple[int, int]]:
        return self.store.vb_state(vbucket)[1]

    def expire_due(self) -> int:
        """Run the expiry pager: expire every document whose TTL has passed."""
        return self.store.expire_due()

    def keys_in_vbucket(self, vbucket: int, count: int, prefix: str = "k") -> list[str]:
        """``count`` distinct keys that hash to ``vbucket`` (handy for DCP tests)."""
        out: list[str] = []
        i = 0
        while len(out) < count:
            key = f"{prefix}{i}"
            if self.vbucket_of(key) == vbucket:
                out.append(key)
            i += 1
        return out

    # -- inspection ------------------------------------------------------------------------------
    @property
    def http_requests(self) -> list[CapturedRequest]:
        with self.ctx.lock:
            return list(self.ctx.http_requests)

    def clear_http_requests(self) -> None:
        with self.ctx.lock:
            self.ctx.http_requests.clear()

    @property
    def auth_mechanisms(self) -> list[str]:
        """SASL mechanism of every SASL_AUTH received, in order."""
        with self.ctx.lock:
            return list(self.ctx.auth_mechanisms)

    @property
    def queries(self) -> list[QueryRecord]:
        with self.ctx.lock:
            return list(self.query.records)

    @property
    def query_handler(self) -> QueryHandler | None:
        return self.query.handler

    @query_handler.setter
    def query_handler(self, fn: QueryHandler | None) -> None:
        """``fn(statement, args) -> rows``; return None to fall back to the default handler,
        raise ``QueryError`` to answer with an error. Called on the server loop."""
        self.query.handler = fn

    @property
    def query_indexes(self) -> list[QueryIndex]:
        with self.ctx.lock:
            return list(self.query.indexes.values())

    @property
    def search_indexes(self) -> dict[str, dict[str, Any]]:
        """Search index definitions by name (scoped ones as ``scope.name``)."""
        return {(f"{s}.{n}" if s else n): d for (s, n), d in list(self.search.indexes.items())}

    @property
    def dcp_stats(self) -> list[DcpStats]:
        """Counters of every DCP connection opened so far (copies), oldest first."""
        return all_stats(self.ctx)

    def dcp_connection_names(self) -> Iterable[str]:
        return list(self.ctx.dcp_producers)
