"""Dead connections, reconnect backoff, and the public surface of connector.dcp."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import connector.dcp as dcp
from connector.dcp import DcpClient, DcpConnectionError, DcpSettings
from connector.dcp.connection import Connection
from connector.dcp.connstr import HostPort
from connector.dcp.stream import backoff_delay
from connector.dcp.topology import KvNode
from connector.errors import ConfigError
from connector.events import ChangeEvent
from tests.cbserver import CouchbaseTestServer


class FreezableProxy:
    """TCP proxy in front of the test server; `freeze()` silences the live connections (as a
    network partition would) while new connections still pass."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._frozen: list[asyncio.Event] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        for ev in self._frozen:
            ev.set()
        self._frozen = []

    async def _on_conn(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        frozen = asyncio.Event()
        self._frozen.append(frozen)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while not frozen.is_set():
                data = await r.read(65536)
                if not data or frozen.is_set():
                    break
                w.write(data)

        await asyncio.gather(pipe(cr, sw), pipe(sr, cw), return_exceptions=True)
        await frozen.wait()  # keep both sockets open, silent

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def srv() -> AsyncIterator[CouchbaseTestServer]:
    server = CouchbaseTestServer(
        num_vbuckets=8, collections={"inventory": ["hotels"]}, dcp_connection_manager_interval=0.05
    )
    await server.start_async()
    yield server
    await server.stop_async()


def settings(port: int, **kw: Any) -> DcpSettings:
    base: dict[str, Any] = dict(
        connection_string=f"couchbase://127.0.0.1:{port}",
        username="Administrator",
        password="password",
        bucket="default",
        connection_name="cbembed/liveness",
        reconnect_base_s=0.02,
        reconnect_max_s=0.2,
        max_reconnect_attempts=50,
    )
    return DcpSettings(**{**base, **kw})


async def test_silent_connection_is_declared_dead_and_replaced(srv: CouchbaseTestServer) -> None:
    proxy = FreezableProxy(srv.ports.kv)
    await proxy.start()
    c = DcpClient(settings(srv.ports.kv, noop_interval_s=1))
    await c.connect()
    # route the DCP connections through the proxy (same rev: later refreshes keep it)
    c._config = dataclasses.replace(c.config, nodes=(KvNode("127.0.0.1", proxy.port),))
    stream = c.stream(range(8), {}, ["inventory.hotels"])
    srv.upsert("inventory", "hotels", "a", {"v": 1})
    async for item in stream:
        if isinstance(item, ChangeEvent):
            break
    proxy.freeze()
    t0 = time.monotonic()
    srv.upsert("inventory", "hotels", "b", {"v": 2})

    async def until_b() -> None:
        async for item in stream:
            if isinstance(item, ChangeEvent) and item.key == "b":
                return

    await asyncio.wait_for(until_b(), 10)
    waited = time.monotonic() - t0
    assert 1.5 < waited < 6  # ~2x the noop interval of silence, then a reconnect
    assert stream.reopens >= 1
    await c.close()
    await proxy.stop()


async def test_watchdog_closes_a_silent_socket() -> None:
    async def mute(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = Connection(
        HostPort("127.0.0.1", port), reader, writer, settings(port, noop_interval_s=1), dcp=True
    )
    lost: list[BaseException | None] = []
    conn.on_closed = lambda c, reason: lost.append(reason)
    conn.start_watchdog()
    await asyncio.sleep(2.6)
    assert conn.closed and len(lost) == 1
    assert isinstance(lost[0], DcpConnectionError) and "silent" in str(lost[0])
    with pytest.raises(DcpConnectionError):
        await conn.call(lambda opaque: b"")
    server.close()


async def test_unreachable_seed_is_a_connection_error() -> None:
    c = DcpClient(settings(1, connect_timeout_s=1))
    with pytest.raises(DcpConnectionError):
        await c.connect()
    await c.close()


@pytest.mark.parametrize("attempt", [0, 1, 3, 10, 100])
def test_backoff_full_jitter(attempt: int) -> None:
    rng = random.Random(1)
    cap, base = 10.0, 0.1
    ceiling = min(cap, base * 2**attempt)
    draws = [backoff_delay(attempt, base, cap, rng) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in draws)
    assert max(draws) > ceiling * 0.8  # spread over the whole range (full jitter)


@pytest.mark.parametrize(
    "kw",
    [
        {"bucket": ""},
        {"connection_name": "x" * 201},
        {"buffer_size": 10},
        {"noop_interval_s": 0.5},
        {"sasl_mechanism": "MD5"},
        {"reconnect_max_s": 0.001},
    ],
)
def test_settings_validation(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        settings(11210, **kw)


def test_plain_needs_tls() -> None:
    with pytest.raises(ConfigError):
        DcpClient(settings(11210, sasl_mechanism="PLAIN"))


def test_public_api() -> None:
    for name in (
        "DcpClient",
        "DcpSettings",
        "StreamEndEvent",
        "SeqnoAdvancedEvent",
        "RollbackEvent",
        "CollectionDroppedEvent",
    ):
        assert name in dcp.__all__
    assert sorted(dcp.__all__) == dcp.__all__
    for name in dcp.__all__:
        assert getattr(dcp, name) is not None


async def test_one_stream_at_a_time_and_reuse(srv: CouchbaseTestServer) -> None:
    c = DcpClient(settings(srv.ports.kv))
    await c.connect()
    srv.upsert("inventory", "hotels", "k", {"v": 1})
    first = c.stream(range(8), {}, ["inventory.hotels"])
    async for item in first:
        if isinstance(item, ChangeEvent):
            break
    second = c.stream(range(8), {}, ["inventory.hotels"])
    with pytest.raises(dcp.DcpError, match="already has an open stream"):
        await second.__anext__()
    await first.aclose()
    third = c.stream(range(8), {}, ["inventory.hotels"])
    async with third:
        async for item in third:
            if isinstance(item, ChangeEvent):
                assert item.key == "k"
                break
    await c.close()


async def test_reading_pauses_if_a_producer_ignores_flow_control() -> None:
    """A producer that never waits for BUFFER_ACK cannot pile up more than ~2x the buffer."""
    msg = struct.pack(">BBHBBHIIQ", 0x80, 0x57, 2, 31, 0, 0, 31 + 2 + 1000, 1, 0)
    msg += b"\0" * 31 + b"\x00k" + b"v" * 1000
    flood_done = asyncio.Event()

    async def flood(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            for _ in range(30_000):  # ~30 MB: more than the kernel buffers hold
                w.write(msg)
                await w.drain()
        except ConnectionError:
            pass
        flood_done.set()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = Connection(
        HostPort("127.0.0.1", port), reader, writer, settings(port, buffer_size=8192), dcp=True
    )
    taken: list[int] = []
    conn.sink = lambda c, frame: taken.append(frame.nbytes)
    await asyncio.sleep(0.3)
    chunk = 1 << 18  # one socket read may overshoot the bound
    assert conn.flow.received <= conn.max_queued + chunk
    assert not flood_done.is_set()  # TCP pushed back on the producer
    while not flood_done.is_set():  # the consumer drains: reading resumes
        while taken:
            conn.acknowledge(taken.pop())
        await asyncio.sleep(0.01)
    await conn.close()
    server.close()
