"""One asyncio KV connection: the handshake pipeline, a full-duplex reader, request matching.

Who calls what, all on the client's event loop:
- `client.py` opens connections with `Connection.open(...)`, which runs `handshake.py` in order:
  HELLO -> SASL (SCRAM, or PLAIN over TLS) -> SELECT_BUCKET -> for DCP connections DCP_OPEN and
  one DCP_CONTROL per setting. A bootstrap ("control") connection stops after SELECT_BUCKET.
- `call()` sends a request and awaits the response with the same opaque.
- `send_routed()` sends a request whose response must stay in order with the DCP messages
  (STREAM_REQ): that response goes to the `sink` like a DCP message instead of a future.
- The reader task answers DCP_NOOP at once (even when the consumer is not pulling), passes every
  DCP message to `sink(conn, frame)` and counts its bytes in `flow` (flow control).
- A watchdog closes a DCP connection that heard nothing for 2x the noop interval; `on_closed`
  then tells the client, which reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Callable
from typing import Any

from connector.dcp import requests
from connector.dcp.connstr import HostPort
from connector.dcp.errors import DcpConnectionError, DcpProtocolError, KvStatusError
from connector.dcp.flow_control import FlowControl
from connector.dcp.frames import HEADER_LEN, Frame, FrameError, packet_body_len, split_frames
from connector.dcp.handshake import handshake
from connector.dcp.opcodes import (
    DCP_MESSAGE_OPCODES,
    REQUEST_MAGICS,
    RESPONSE_MAGICS,
    Opcode,
    Status,
)
from connector.dcp.settings import DcpSettings

log = logging.getLogger(__name__)

_opaques = itertools.count(1)


def next_opaque() -> int:
    """Opaques are unique across all connections of the process (they also name streams)."""
    return next(_opaques) & 0xFFFFFFFF or next(_opaques)


Sink = Callable[["Connection", Frame], None]


class Connection:
    def __init__(
        self,
        address: HostPort,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settings: DcpSettings,
        *,
        dcp: bool,
    ) -> None:
        self.address = address
        self.settings = settings
        self.dcp = dcp
        self.features: frozenset[int] = frozenset()
        self.flow = FlowControl(settings.buffer_size)
        self.sink: Sink | None = None
        self.on_closed: Callable[[Connection, BaseException | None], None] | None = None
        self.noops_answered = 0
        self.closed = False
        self.close_reason: BaseException | None = None
        self._reader = reader
        self._writer = writer
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._routed: set[int] = set()
        self.max_queued = 2 * settings.buffer_size
        """Bytes queued for the consumer above which reading pauses (see _wait_for_room)."""
        self._room = asyncio.Event()
        self._overrun_logged = False
        self._watchdog: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self.last_rx = loop.time()
        self._read_task = loop.create_task(self._read_loop(), name=f"dcp-read-{address}")

    # -- opening --------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        address: HostPort,
        settings: DcpSettings,
        *,
        tls: ssl.SSLContext | None,
        dcp: bool,
        sink: Sink | None = None,
    ) -> Connection:
        """Connect and run the handshake; raises DcpConnectionError / DcpAuthError."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    address.host,
                    address.port,
                    ssl=tls,
                    server_hostname=address.host if tls else None,
                    limit=1 << 20,
                ),
                settings.connect_timeout_s,
            )
        except (OSError, TimeoutError) as e:
            raise DcpConnectionError(f"cannot connect to {address}: {e!r}") from e
        conn = cls(address, reader, writer, settings, dcp=dcp)
        conn.sink = sink
        try:
            await asyncio.wait_for(handshake(conn, tls is not None), settings.connect_timeout_s)
        except TimeoutError as e:
            conn.abort(DcpConnectionError(f"handshake with {address} timed out"))
            raise DcpConnectionError(f"handshake with {address} timed out") from e
        except BaseException as e:
            conn.abort(e if isinstance(e, Exception) else None)
            raise
        if dcp:
            conn.start_watchdog()
        return conn

    def start_watchdog(self) -> None:
        """Close this connection once it has heard nothing for 2x the noop interval."""
        if self._watchdog is None and not self.closed:
            self._watchdog = asyncio.get_running_loop().create_task(
                self._watch(), name=f"dcp-watchdog-{self.address}"
            )

    # -- requests -------------------------------------------------------------------------------

    async def call(
        self,
        build: Callable[..., bytes],
        *args: Any,
        check: bool = True,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Frame:
        """Send `build(*args, opaque=..., **kwargs)` and await its response.

        With `check`, a non-success status raises KvStatusError."""
        if self.closed:
            raise DcpConnectionError(f"connection to {self.address} is closed")
        opaque = next_opaque()
        packet = build(*args, opaque=opaque, **kwargs)
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[opaque] = fut
        self._writer.write(packet)
        try:
            reply = await asyncio.wait_for(fut, timeout or self.settings.request_timeout_s)
        except TimeoutError as e:
            self._pending.pop(opaque, None)
            raise DcpConnectionError(
                f"no reply to opcode 0x{packet[1]:02x} from {self.address} in time"
            ) from e
        if check and reply.status != Status.SUCCESS:
            raise KvStatusError(reply.opcode, reply.status, _error_text(reply))
        return reply

    def send_routed(self, build: Callable[..., bytes], *args: Any, **kwargs: Any) -> int:
        """Send a request whose response goes to `sink` in stream order; returns its opaque."""
        if self.closed:
            raise DcpConnectionError(f"connection to {self.address} is closed")
        opaque = next_opaque()
        self._routed.add(opaque)
        self._writer.write(build(*args, opaque=opaque, **kwargs))
        return opaque

    def send(self, packet: bytes) -> None:
        """Fire and forget (BUFFER_ACK has no reply). Ignored once closed."""
        if not self.closed:
            self._writer.write(packet)

    def acknowledge(self, nbytes: int) -> None:
        """Flow control: the consumer took a message of `nbytes` from this connection."""
        n = self.flow.consumed(nbytes)
        if n and not self.closed:
            self._writer.write(requests.buffer_ack(n, opaque=next_opaque()))
        if self.flow.queued <= self.max_queued:
            self._room.set()

    async def _wait_for_room(self) -> None:
        """Hard bound on what a producer can pile up in the client, should it ever ignore flow
        control: stop reading (TCP pushes back) until the consumer drains below the bound.
        With a conforming producer this never triggers (it stops at `buffer_size`)."""
        if not self._overrun_logged:
            self._overrun_logged = True
            log.warning(
                "%s sent %d bytes beyond what was acknowledged (buffer %d): the "
                "producer ignores flow control; pausing reads",
                self.address,
                self.flow.queued,
                self.settings.buffer_size,
            )
        self._room.clear()
        await self._room.wait()

    # -- reading --------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        # Chunks are joined only once the next packet is complete, so a large document
        # arriving in many reads is copied once, not once per read.
        chunks: list[bytes] = []
        have, need = 0, HEADER_LEN
        loop = asyncio.get_running_loop()
        error: BaseException | None = None
        try:
            while True:
                data = await self._reader.read(1 << 18)
                if not data:
                    raise DcpConnectionError(f"{self.address} closed the connection")
                self.last_rx = loop.time()
                chunks.append(data)
                have += len(data)
                if have < need:
                    continue
                buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                frames, used = split_frames(buf)
                rest = buf[used:]
                chunks = [rest] if rest else []
                have = len(rest)
                need = HEADER_LEN + packet_body_len(rest) if have >= HEADER_LEN else HEADER_LEN
                for frame in frames:
                    self._dispatch(frame)
                if self.flow.queued > self.max_queued:
                    await self._wait_for_room()
        except asyncio.CancelledError:
            return
        except FrameError as e:
            error = DcpProtocolError(f"garbage from {self.address}: {e}")
        except (OSError, DcpConnectionError) as e:
            error = (
                e
                if isinstance(e, DcpConnectionError)
                else DcpConnectionError(f"connection to {self.address} failed: {e!r}")
            )
        except Exception as e:  # a bug in a sink must not leave the connection half-alive
            log.exception("DCP reader for %s failed", self.address)
            error = e
        self.abort(error)

    def _dispatch(self, frame: Frame) -> None:
        magic = frame.magic
        if magic in REQUEST_MAGICS:
            op = frame.opcode
            if op == Opcode.DCP_NOOP:
                self._writer.write(requests.noop_response(frame.opaque))
                self.noops_answered += 1
            elif op in DCP_MESSAGE_OPCODES:
                self.flow.on_received(frame.nbytes)
                if self.sink is not None:
                    self.sink(self, frame)
                else:  # nobody streams here: acknowledge so the server never stalls
                    self.acknowledge(frame.nbytes)
            else:
                log.debug("%s: ignoring server request 0x%02x", self.address, op)
        elif magic in RESPONSE_MAGICS:
            opaque = frame.opaque
            if opaque in self._routed:
                self._routed.discard(opaque)
                if self.sink is not None:
                    self.sink(self, frame)
                return
            fut = self._pending.pop(opaque, None)
            if fut is not None and not fut.done():
                fut.set_result(frame)
        # 0x82 server requests (cluster map notifications) are not negotiated; ignore.

    async def _watch(self) -> None:
        dead_after = 2 * self.settings.noop_interval_s
        loop = asyncio.get_running_loop()
        while not self.closed:
            await asyncio.sleep(min(max(dead_after / 4, 0.05), 5.0))
            silent = loop.time() - self.last_rx
            if silent > dead_after:
                self.abort(
                    DcpConnectionError(
                        f"{self.address} silent for {silent:.1f}s (> 2x noop interval): dead"
                    )
                )
                return

    # -- closing --------------------------------------------------------------------------------

    def abort(self, reason: BaseException | None = None) -> None:
        """Close now; fail waiting calls; tell `on_closed` (once) if this was not our choice."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        err = DcpConnectionError(
            f"connection to {self.address} closed" + (f": {reason}" if reason else "")
        )
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        self._writer.close()
        current = asyncio.current_task()
        if self._read_task is not current and not self._read_task.done():
            self._read_task.cancel()
        if self._watchdog is not None and self._watchdog is not current:
            self._watchdog.cancel()
        if reason is not None and self.on_closed is not None:
            self.on_closed(self, reason)

    async def close(self) -> None:
        """Deliberate close (no `on_closed` callback)."""
        self.on_closed = None
        self.abort(None)
        tasks = [t for t in (self._read_task, self._watchdog) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.CancelledError):
            await self._writer.wait_closed()

    def __repr__(self) -> str:
        kind = "dcp" if self.dcp else "kv"
        return f"<Connection {kind} {self.address}{' closed' if self.closed else ''}>"


def _error_text(frame: Frame) -> str:
    """XError bodies are JSON {"error": {"context": ..., "ref": ...}}; show them as text."""
    value = frame.value
    if not value:
        return ""
    try:
        return value.decode()[:300]
    except UnicodeDecodeError:
        return f"{len(value)} bytes"
