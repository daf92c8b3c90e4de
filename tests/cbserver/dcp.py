"""DCP producer: DCP_OPEN, DCP_CONTROL, STREAM_REQ (validation, rollback, filters),
CLOSE_STREAM, BUFFER_ACK, NOOPs, failover logs and GET_ALL_VB_SEQNOS.

Everything here runs on the server loop. ``handle_dcp_request`` is called by
``kv.KvConnection.dispatch``; after DCP_OPEN the connection owns one ``DcpProducer`` with two
tasks: the pump (writes stream messages, honouring flow control) and the noop timer. Store
changes from other threads reach the producer through ``call_soon_threadsafe``.

Rules from kv_engine docs/dcp/documentation (stream-request.md, rollback.md,
flow-control.md, dead-connections.md, control.md) and the producer's control() validation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .dcp_stream import DcpStream, Filter, StreamOptions
from .protocol import (
    DcpOpenFlag,
    Feature,
    Frame,
    Opcode,
    Status,
    StreamEndReason,
    StreamFlag,
    response,
    server_request,
)
from .rollback import needs_rollback

if TYPE_CHECKING:
    from .kv import KvConnection

DEFAULT_NOOP_INTERVAL = 1.0
_ACCEPTED_CONTROLS = {
    "supports_cursor_dropping", "supports_cursor_dropping_vulcan", "supports_hifi_MFU",
    "consumer_name", "enable_out_of_order_snapshots",
}
_UNSUPPORTED_CONTROLS = {"stream_buffer_size", "enable_stream_id", "enable_sync_writes",
                         "change_streams", "flatbuffers_system_events", "cache_transfer"}


@dataclass
class DcpStats:
    """Counters of one DCP connection (a copy is handed to tests)."""

    name: str
    open_flags: int = 0
    buffer_size: int = 0
    noop_interval: float = DEFAULT_NOOP_INTERVAL
    noops_sent: int = 0
    noops_answered: int = 0
    bytes_sent: int = 0
    bytes_acked: int = 0
    unacked: int = 0
    max_unacked: int = 0
    items_sent: int = 0
    streams_opened: int = 0
    closed: bool = False
    close_reason: str = ""


class DcpProducer:
    """Producer side of one DCP connection; see the module docstring."""

    def __init__(self, conn: KvConnection, name: str, flags: int) -> None:
        self.conn = conn
        self.ctx = conn.ctx
        self.name = name
        self.flags = flags
        self.stats = DcpStats(name, open_flags=flags)
        self.streams: dict[int, DcpStream] = {}
        self.noop_enabled = False
        self.noop_interval = DEFAULT_NOOP_INTERVAL
        self.stream_end_on_close = False
        self.expiry_opcode = False
        self.had_stream = False
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.acked = asyncio.Event()
        self.last_send = self.loop.time()
        self.pending_noop: tuple[int, float] | None = None
        self._noop_opaque = 0x7E000000
        self.ctx.store.subscribe(self._on_store_event)
        self._tasks = [self.loop.create_task(self._pump()), self.loop.create_task(self._noops())]

    # -- lifecycle ----------------------------------------------------------------------------
    def _on_store_event(self, kind: str, vbid: int) -> None:
        """Store listener: any thread. Hands the event to the loop."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._store_event, kind, vbid)

    def _store_event(self, kind: str, vbid: int) -> None:
        if kind == "failover" and vbid in self.streams:
            self.streams[vbid].end_now(StreamEndReason.STATE_CHANGED)
        self.wake.set()

    def close(self, reason: str = "connection closed") -> None:
        """Stop tasks and forget streams (called when the socket goes away or is dropped)."""
        if self.closed:
            return
        self.closed = True
        self.stats.closed = True
        self.stats.close_reason = self.stats.close_reason or reason
        self.ctx.store.unsubscribe(self._on_store_event)
        for task in self._tasks:
            task.cancel()
        if self.ctx.dcp_producers.get(self.name) is self:
            del self.ctx.dcp_producers[self.name]
        self.wake.set()
        self.acked.set()

    def drop(self, reason: str) -> None:
        self.stats.close_reason = reason
        self.close(reason)
        self.conn.abort()

    # -- sending ------------------------------------------------------------------------------
    def _send(self, data: bytes, counted: bool = True) -> None:
        self.conn.write(data)
        self.last_send = self.loop.time()
        if counted:
            self.stats.bytes_sent += len(data)
            self.stats.unacked += len(data)
            self.stats.max_unacked = max(self.stats.max_unacked, self.stats.unacked)

    def _blocked(self) -> bool:
        return bool(self.stats.buffer_size) and self.stats.unacked >= self.stats.buffer_size

    async def _pump(self) -> None:
        try:
            while not self.closed:
                self.wake.clear()
                sent = False
                for vb in list(self.streams):
                    stream = self.streams.get(vb)
                    for _ in range(32):
                        if stream is None or self._blocked():
                            break
                        nxt = stream.next_frame()
                        if nxt is None:
                            break
                        data, is_item = nxt
                        self._send(data)
                        sent = True
                        if is_item:
                            self.stats.items_sent += 1
                            if self.ctx.faults.count_dcp_item():
                                drop_all_dcp(self.ctx, "fault: drop_dcp_connections")
                                return
                        if stream.ended and not stream.queue:
                            del self.streams[vb]
                            break
                if self._blocked():
                    self.acked.clear()
                    await self.acked.wait()
                elif sent:
                    await self.conn.writer.drain()
                else:
                    await self.wake.wait()
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def _noops(self) -> None:
        """Send a NOOP after an idle noop interval; disconnect if one goes unanswered for
        a whole interval (dead-connections.md). Starts after the first stream request."""
        try:
            while not self.closed:
                await asyncio.sleep(max(0.02, self.noop_interval / 10))
                if not self.noop_enabled or not self.had_stream:
                    continue
                now = self.loop.time()
                if self.pending_noop is not None:
                    if now - self.pending_noop[1] >= self.noop_interval:
                        self.drop("noop not answered")
                        return
                    continue
                if now - self.last_send >= self.noop_interval:
                    self._noop_opaque += 1
                    self.pending_noop = (self._noop_opaque, now)
                    self.stats.noops_sent += 1
                    self._send(server_request(Opcode.DCP_NOOP, opaque=self._noop_opaque),
                               counted=False)
        except (ConnectionError, asyncio.CancelledError):
            pass

    # -- requests and responses from the client ----------------------------------------------------
    def on_response(self, frame: Frame) -> None:
        pending = self.pending_noop
        if frame.opcode == Opcode.DCP_NOOP and pending is not None and frame.opaque == pending[0]:
            self.pending_noop = None
            self.stats.noops_answered += 1

    def handle(self, req: Frame) -> None:
        op = req.opcode
        if op == Opcode.DCP_CONTROL:
            self.write(response(req, self.control(req)))
        elif op == Opcode.DCP_STREAM_REQ:
            self.stream_request(req)
        elif op == Opcode.DCP_CLOSE_STREAM:
            self.close_stream(req)
        elif op == Opcode.DCP_BUFFER_ACK:
            if len(req.extras) != 4:
                self.write(response(req, Status.EINVAL))
                return
            (n,) = struct.unpack(">I", req.extras)
            self.stats.bytes_acked += n
            self.stats.unacked = max(0, self.stats.unacked - n)
            self.acked.set()
            self.wake.set()
        elif op == Opcode.DCP_NOOP:
            self.write(response(req))  # a consumer may ping us too
        else:
            self.write(response(req, Status.EINVAL))

    def write(self, data: bytes) -> None:
        self.conn.write(data)

    def control(self, req: Frame) -> Status:
        if req.extras or not req.key or not req.value:
            return Status.EINVAL
        key, value = req.key.decode(), req.value.decode()
        if key == "enable_noop":
            self.noop_enabled = value == "true"
        elif key == "set_noop_interval":
            try:
                interval = float(value)
            except ValueError:
                return Status.EINVAL
            if interval < self.ctx.dcp_connection_manager_interval:
                return Status.EINVAL
            self.noop_interval = self.stats.noop_interval = interval
        elif key == "connection_buffer_size":
            if not value.isdigit() or int(value) >= 2**32:
                return Status.EINVAL
            self.stats.buffer_size = int(value)
            self.acked.set()
        elif key == "send_stream_end_on_client_close_stream":
            self.stream_end_on_close = self.stream_end_on_close or value == "true"
        elif key == "enable_expiry_opcode":
            self.expiry_opcode = value == "true" and bool(
                self.flags & DcpOpenFlag.INCLUDE_DELETE_TIMES)
        elif key == "set_priority":
            return Status.SUCCESS if value in ("high", "medium", "low") else Status.EINVAL
        elif key == "backfill_order":
            return Status.SUCCESS if value in ("round-robin", "sequential") else Status.EINVAL
        elif key == "v7_dcp_status_codes":
            return Status.SUCCESS if value == "true" else Status.EINVAL
        elif key == "max_marker_version":
            if value != "2.2":
                return Status.EINVAL
            return Status.SUCCESS if self.conn.has(Feature.COLLECTIONS) else Status.NOT_SUPPORTED
        elif key in _UNSUPPORTED_CONTROLS:
            return Status.NOT_SUPPORTED
        elif key not in _ACCEPTED_CONTROLS:
            return Status.EINVAL
        return Status.SUCCESS

    def _filter(self, value: bytes) -> Filter | Status:
        """Stream-request value rules of kv_engine's Collections::VB::Filter: a JSON object
        with at least one of uid/collections/scope/sid/purge_seqno/cts; ids are hex strings;
        collections and scope together are invalid; sid needs enable_stream_id."""
        if not self.conn.has(Feature.COLLECTIONS):
            return Status.EINVAL if value else Filter(legacy=True)
        if not value:
            return Filter()
        try:
            spec = json.loads(value)
        except ValueError:
            return Status.EINVAL
        known = {"uid", "collections", "scope", "sid", "purge_seqno", "cts"}
        if not isinstance(spec, dict) or not known & set(spec):
            return Status.EINVAL
        if "collections" in spec and "scope" in spec:
            return Status.EINVAL
        if "sid" in spec:
            return Status.DCP_STREAMID_INVALID
        for key in ("uid", "purge_seqno"):
            if key in spec and not isinstance(spec[key], str):
                return Status.EINVAL
        manifest = self.ctx.store.manifest
        with self.ctx.store.lock:
            if "collections" in spec:
                if not isinstance(spec["collections"], list):
                    return Status.EINVAL
                cids = set()
                for text in spec["collections"]:
                    if not isinstance(text, str):
                        return Status.EINVAL
                    try:
                        cid = int(text, 16)
                    except ValueError:
                        return Status.EINVAL
                    if manifest.by_id(cid) is None:
                        return Status.UNKNOWN_COLLECTION
                    cids.add(cid)
                return Filter(cids=cids)
            if "scope" in spec:
                if not isinstance(spec["scope"], str):
                    return Status.EINVAL
                try:
                    sid = int(spec["scope"], 16)
                except ValueError:
                    return Status.EINVAL
                scope = manifest.scope_by_id(sid)
                if scope is None:
                    return Status.UNKNOWN_SCOPE
                return Filter(cids={c.cid for c in scope.collections.values()}, scope_id=sid)
        return Filter()

    def stream_request(self, req: Frame) -> None:
        store = self.ctx.store
        if len(req.extras) != 48 or req.key:
            self.write(response(req, Status.EINVAL))
            return
        flags, _, start, end, vbuuid, snap_start, snap_end = struct.unpack(">IIQQQQQ", req.extras)
        vb = req.vbucket
        if vb >= store.num_vbuckets or self.ctx.faults.take_not_my_vbucket(vb):
            self.write(response(req, Status.NOT_MY_VBUCKET, value=self.ctx.config_bytes()))
            return
        if self.ctx.faults.take_tmpfail(vb):
            self.write(response(req, Status.ETMPFAIL))
            return
        existing = self.streams.get(vb)
        if existing is not None and not existing.ended:
            self.write(response(req, Status.KEY_EEXISTS))
            return
        high, failover_log, purge = store.vb_state(vb)
        if flags & StreamFlag.FROM_LATEST:
            start = snap_start = snap_end = high
            vbuuid = vbuuid or failover_log[0][0]
        if (self.flags & DcpOpenFlag.INCLUDE_XATTRS or req.value) and not self.noop_enabled:
            self.write(response(req, Status.NOT_SUPPORTED))
            return
        if start > end or not snap_start <= start <= snap_end:
            self.write(response(req, Status.ERANGE))
            return
        flt = self._filter(req.value)
        if isinstance(flt, Status):
            self.write(self.conn.error(req, flt) if flt in (
                Status.UNKNOWN_COLLECTION, Status.UNKNOWN_SCOPE) else response(req, flt))
            return
        forced = self.ctx.faults.take_rollback(vb)
        rollback_to = forced if forced is not None else needs_rollback(
            start, high, vbuuid, snap_start, snap_end, failover_log,
            0 if flags & StreamFlag.IGNORE_PURGED_TOMBSTONES else purge,
            strict=bool(flags & StreamFlag.STRICT_VBUUID))
        if rollback_to is not None:
            self.write(response(req, Status.ROLLBACK, value=struct.pack(">Q", rollback_to)))
            return
        if flags & StreamFlag.TO_LATEST:
            if flt.cids is None and not flt.legacy:
                end = high
            else:
                wanted = {0} if flt.legacy else (flt.cids or set())
                end = max([store.collection_high_seqno(vb, c) for c in wanted] + [0])
                end = max(end, start)
        if start > end or start > high:
            self.write(response(req, Status.ERANGE))
            return
        log = b"".join(struct.pack(">QQ", u, s) for u, s in failover_log)
        self.write(response(req, value=log))
        opts = StreamOptions(self.flags, self.conn.has(Feature.COLLECTIONS),
                             self.conn.has(Feature.JSON), self.expiry_opcode)
        self.streams[vb] = DcpStream(store, opts, vb, req.opaque, start, end, flt, flags,
                                     snap_start)
        self.had_stream = True
        self.stats.streams_opened += 1
        self.wake.set()

    def close_stream(self, req: Frame) -> None:
        stream = self.streams.get(req.vbucket)
        if stream is None or stream.ended:
            self.write(response(req, Status.KEY_ENOENT))
            return
        self.write(response(req))
        if self.stream_end_on_close:
            stream.end_now(StreamEndReason.CLOSED)
            self.wake.set()
        else:
            del self.streams[req.vbucket]


def end_streams(ctx: Any, vbuckets: set[int], reason: int) -> None:
    """End the open streams of ``vbuckets`` on every producer (loop thread)."""
    for producer in list(ctx.dcp_producers.values()):
        for vb in vbuckets & set(producer.streams):
            producer.streams[vb].end_now(StreamEndReason(reason))
        producer.wake.set()


def drop_all_dcp(ctx: Any, reason: str) -> None:
    """Abort every DCP connection (loop thread)."""
    for producer in list(ctx.dcp_producers.values()):
        producer.drop(reason)
