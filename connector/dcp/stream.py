"""DcpStream: the async iterator `DcpClient.stream()` returns; the conductor of one session.

Event-loop story (everything runs on the loop that iterates the stream):
- Connection reader tasks call `_on_frame(conn, frame)` for every DCP message and every
  STREAM_REQ reply; it only appends to `_queue` (never blocks, never decodes). The queue is
  bounded by flow control: a connection's un-acknowledged bytes never exceed its buffer size.
- `__anext__` (the consumer) first acknowledges the bytes of the item it returned last time
  (the consumer has taken it), then pops frames in arrival order, updates the vbucket's
  `PartitionState` (delivery order = state order), and returns the first item the consumer
  must see. Markers and stream replies are consumed internally and acknowledged at once.
- Transient ends (StreamEnd state-changed/too-slow/disconnected, NOT_MY_VBUCKET, a lost
  connection) mark the vbucket REOPENING; one reopen task refreshes the config, reconnects with
  exponential backoff and full jitter, and requests again from the delivered state. Frames
  still queued from a dead connection are dropped (their vbuckets resume from what was
  delivered, so nothing is lost; at-least-once).
- Rollback replies trim the state (java-dcp-client model), are re-requested at once, and yield
  a RollbackEvent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from connector.dcp import requests
from connector.dcp.errors import DcpError, DcpStreamError
from connector.dcp.events import (
    CollectionDroppedEvent,
    DcpItem,
    RollbackEvent,
    SeqnoAdvancedEvent,
    StreamEndEvent,
)
from connector.dcp.frames import Frame
from connector.dcp.messages import (
    decode_change,
    decode_failover_log,
    decode_rollback_seqno,
    decode_seqno_advanced,
    decode_snapshot_marker,
    decode_stream_end,
    decode_system_event,
    item_seqno,
)
from connector.dcp.opcodes import (
    REOPEN_REASONS,
    REQUEST_MAGICS,
    Opcode,
    Status,
    StreamRequestFlag,
    SystemEventType,
)
from connector.dcp.state import PartitionState, StreamStatus
from connector.dcp.topology import TopologyError, parse_manifest
from connector.events import ZERO_OFFSET, ChangeEvent, Keyspace, PartitionOffset

if TYPE_CHECKING:
    from connector.dcp.client import DcpClient
    from connector.dcp.connection import Connection

log = logging.getLogger(__name__)

_CHANGES = frozenset({Opcode.DCP_MUTATION, Opcode.DCP_DELETION, Opcode.DCP_EXPIRATION})
_RETRY_LATER = frozenset({Status.ETMPFAIL, Status.EBUSY, Status.ENOMEM})
STREAM_FLAGS = StreamRequestFlag.ACTIVE_VB_ONLY


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""
    return rng.uniform(0, min(cap, base * (2 ** min(attempt, 30))))


class DcpStream:
    """Iterate with `async for`; close with `await stream.aclose()` (or `async with`)."""

    def __init__(
        self,
        client: DcpClient,
        vbuckets: Iterable[int],
        offsets: Mapping[int, PartitionOffset],
        collections: list[str],
    ) -> None:
        self._client = client
        self._vbuckets = sorted(set(vbuckets))
        self._offsets = dict(offsets)
        self._collections = list(collections)
        self.states: dict[int, PartitionState] = {}
        self._vb_conn: dict[int, Connection] = {}
        self._routed_vb: dict[int, int] = {}
        self._queue: deque[tuple[Connection | None, Frame | DcpItem]] = deque()
        self._wake = asyncio.Event()
        self._last: tuple[Connection, int] | None = None
        self._keyspaces: dict[int, Keyspace] = {}
        self._scopes: dict[int, str] = {}
        self._filter = b""
        self._start_task: asyncio.Task[None] | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._to_reopen: set[int] = set()
        self._reopen_task: asyncio.Task[None] | None = None
        self._rng = random.Random()
        self.reopens = 0
        """Batches of vbuckets requested again after a transient end or a lost connection."""

    # -- public ---------------------------------------------------------------------------------

    def __aiter__(self) -> DcpStream:
        return self

    async def __aenter__(self) -> DcpStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def offset(self, vb: int) -> PartitionOffset:
        """The delivered position of `vb` (checkpoint only what you have processed)."""
        return self.states[vb].offset()

    def offset_of(self, event: ChangeEvent) -> PartitionOffset:
        """A resume point just after `event`: its seqno and snapshot, the stream's vbuuid."""
        return PartitionOffset(self.states[event.partition].vbuuid, event.seqno, event.snapshot)

    @property
    def queued(self) -> int:
        """Messages received and not yet taken by the consumer."""
        return len(self._queue)

    async def aclose(self) -> None:
        """Stop: no more items; the client's DCP connections are closed (streams die with them)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._reopen_task is not None:
            self._reopen_task.cancel()
        await self._client._detach_stream(self)

    async def __anext__(self) -> DcpItem:
        if self._start_task is None:
            self._start_task = asyncio.get_running_loop().create_task(self._start())
        if not self._start_task.done():
            # shielded: a consumer's timeout must not leave half the streams requested
            await asyncio.shield(self._start_task)
        self._start_task.result()
        last, self._last = self._last, None
        if last is not None and not last[0].closed:
            last[0].acknowledge(last[1])
        queue = self._queue
        while True:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            if not queue:
                if all(s.status is StreamStatus.ENDED for s in self.states.values()):
                    raise StopAsyncIteration
                self._wake.clear()
                await self._wake.wait()
                continue
            conn, payload = queue.popleft()
            if conn is None:
                return payload  # type: ignore[return-value]  # a ready-made control event
            if conn.closed:
                continue  # from a dead connection: its vbuckets resume from delivered state
            frame: Frame = payload  # type: ignore[assignment]
            item = self._process(conn, frame)
            is_message = frame.magic in REQUEST_MAGICS
            if item is None:
                if is_message:
                    conn.acknowledge(frame.nbytes)
                continue
            if is_message:
                self._last = (conn, frame.nbytes)
            return item

    # -- wiring (called by the client) ----------------------------------------------------------

    def _on_frame(self, conn: Connection, frame: Frame) -> None:
        """Connection reader -> queue. Never blocks: flow control bounds the queue."""
        self._queue.append((conn, frame))
        self._wake.set()

    def _push(self, item: DcpItem) -> None:
        self._queue.append((None, item))
        self._wake.set()

    def _on_connection_lost(self, conn: Connection) -> None:
        """Client callback: `conn` died. Every vbucket it carried is reopened elsewhere/later."""
        lost = [
            vb
            for vb, c in self._vb_conn.items()
            if c is conn
            and self.states[vb].status in (StreamStatus.OPENING, StreamStatus.STREAMING)
        ]
        if lost:
            log.warning(
                "DCP connection %s lost (%s); resuming %d vbuckets",
                conn.address,
                conn.close_reason,
                len(lost),
            )
            self._schedule_reopen(lost)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._wake.set()

    # -- start ----------------------------------------------------------------------------------

    async def _start(self) -> None:
        client = self._client
        await client._attach_stream(self)
        bucket = client.settings.bucket
        if self._collections:
            ids = await client.collection_ids(self._collections)
            for path, cid in ids.items():
                scope, coll = path.split(".", 1)
                self._keyspaces[cid] = Keyspace(bucket, scope, coll)
            self._filter = requests.collection_filter(sorted(ids.values()))
        else:
            manifest = await client.collections_manifest()
            self._keyspaces, self._scopes = parse_manifest(bucket, manifest)
        for vb in self._vbuckets:
            if not 0 <= vb < client.num_vbuckets:
                raise ValueError(f"vbucket {vb} outside 0..{client.num_vbuckets - 1}")
            self.states[vb] = PartitionState.from_offset(vb, self._offsets.get(vb, ZERO_OFFSET))
        config = client.config
        by_node = config.vbuckets_by_node(self._vbuckets)
        for node, vbs in by_node.items():
            conn = await client._dcp_connection(node.address(client.tls))
            for vb in vbs:
                self._request(vb, conn)

    def _unknown_keyspace(self, cid: int) -> Keyspace:
        return Keyspace(self._client.settings.bucket, "_unknown", f"cid-0x{cid:x}")

    def _request(self, vb: int, conn: Connection) -> None:
        """Send STREAM_REQ for `vb` from its delivered state; its reply comes through the queue."""
        st = self.states[vb]
        start, vbuuid, snap_start, snap_end = st.stream_request_params()
        opaque = conn.send_routed(
            requests.stream_request,
            vb,
            start_seqno=start,
            vbuuid=vbuuid,
            snap_start=snap_start,
            snap_end=snap_end,
            flags=STREAM_FLAGS,
            filter_json=self._filter,
        )
        st.opaque = opaque
        st.status = StreamStatus.OPENING
        self._vb_conn[vb] = conn
        self._routed_vb[opaque] = vb

    # -- processing, in delivery order ----------------------------------------------------------

    def _process(self, conn: Connection, frame: Frame) -> DcpItem | None:
        if frame.magic not in REQUEST_MAGICS:
            return self._on_stream_reply(conn, frame)
        st = self.states.get(frame.vbucket)
        if st is None or st.opaque != frame.opaque or self._vb_conn.get(st.vb) is not conn:
            log.debug("dropping %r: no live stream with that opaque", frame)
            return None
        op = frame.opcode
        if op in _CHANGES:
            snapshot = st.on_item(item_seqno(frame))
            return decode_change(frame, snapshot, self._keyspaces, self._unknown_keyspace)
        if op == Opcode.DCP_SNAPSHOT_MARKER:
            marker = decode_snapshot_marker(frame)
            st.on_snapshot_marker(marker.start, marker.end)
            return None
        if op == Opcode.DCP_SEQNO_ADVANCED:
            seqno = decode_seqno_advanced(frame)
            snapshot = st.on_seqno_advanced(seqno)
            return SeqnoAdvancedEvent(st.vb, seqno, snapshot, st.vbuuid)
        if op == Opcode.DCP_SYSTEM_EVENT:
            return self._on_system_event(st, frame)
        if op == Opcode.DCP_STREAM_END:
            return self._on_stream_end(st, frame)
        return None  # OSO markers, sync-write messages: not negotiated, nothing to deliver

    def _on_system_event(self, st: PartitionState, frame: Frame) -> DcpItem:
        ev = decode_system_event(frame)
        snapshot = st.on_item(ev.seqno)
        if ev.manifest_uid is not None:
            st.on_manifest(ev.manifest_uid)
        cid = ev.collection_id
        if ev.event == SystemEventType.COLLECTION_DROPPED and cid in self._keyspaces:
            return CollectionDroppedEvent(self._keyspaces[cid], st.vb, st.offset())
        if ev.event == SystemEventType.SCOPE_CREATED and ev.scope_id is not None:
            self._scopes[ev.scope_id] = ev.key.decode()
        if (
            ev.event == SystemEventType.COLLECTION_CREATED
            and not self._collections
            and cid is not None
            and ev.scope_id in self._scopes
        ):
            self._keyspaces.setdefault(
                cid,
                Keyspace(self._client.settings.bucket, self._scopes[ev.scope_id], ev.key.decode()),
            )
        return SeqnoAdvancedEvent(st.vb, ev.seqno, snapshot, st.vbuuid)

    def _on_stream_end(self, st: PartitionState, frame: Frame) -> DcpItem | None:
        reason = decode_stream_end(frame)
        if reason in REOPEN_REASONS:
            log.info(
                "vb %d stream ended (%s); reopening from %s",
                st.vb,
                getattr(reason, "name", reason),
                st.offset().describe(),
            )
            self._schedule_reopen([st.vb])
            return None
        st.status = StreamStatus.ENDED
        return StreamEndEvent(st.vb, reason, st.offset())

    def _on_stream_reply(self, conn: Connection, frame: Frame) -> DcpItem | None:
        vb = self._routed_vb.pop(frame.opaque, None)
        if vb is None or frame.opcode != Opcode.DCP_STREAM_REQ:
            return None
        st = self.states[vb]
        if st.opaque != frame.opaque:
            return None
        status = frame.status
        if status == Status.SUCCESS:
            st.on_failover_log(decode_failover_log(frame.value))
            st.status = StreamStatus.STREAMING
            return None
        if status == Status.ROLLBACK:
            offset = st.rollback(decode_rollback_seqno(frame.value))
            log.warning("vb %d rolled back to %s", vb, offset.describe())
            self._request(vb, conn)
            return RollbackEvent(vb, offset)
        if status == Status.NOT_MY_VBUCKET or status in _RETRY_LATER:
            self._schedule_reopen([vb])
            return None
        st.status = StreamStatus.ENDED
        raise DcpStreamError(
            vb,
            status,
            f"requested from {st.offset().describe()}"
            + (f"; server says {frame.value[:200]!r}" if frame.value else ""),
        )

    # -- reopening ------------------------------------------------------------------------------

    def _schedule_reopen(self, vbs: Iterable[int]) -> None:
        for vb in vbs:
            self.states[vb].status = StreamStatus.REOPENING
            self.states[vb].opaque = -1
            self._to_reopen.add(vb)
        if self._reopen_task is None or self._reopen_task.done():
            self._reopen_task = asyncio.get_running_loop().create_task(
                self._reopen_loop(), name="dcp-reopen"
            )

    async def _reopen_loop(self) -> None:
        """Refresh the config once per batch, connect to each vbucket's node, request again."""
        s = self._client.settings
        attempt = 0
        while self._to_reopen and not self._closed:
            await asyncio.sleep(
                backoff_delay(attempt, s.reconnect_base_s, s.reconnect_max_s, self._rng)
                if attempt
                else 0.01
            )
            batch, self._to_reopen = self._to_reopen, set()
            try:
                await self._client.refresh_config()
                config = self._client.config
                by_node = config.vbuckets_by_node(sorted(batch))
                for node, vbs in by_node.items():
                    conn = await self._client._dcp_connection(node.address(self._client.tls))
                    for vb in vbs:
                        if self.states[vb].status is StreamStatus.REOPENING:
                            self._request(vb, conn)
                self.reopens += 1
                attempt = 0
            except (DcpError, OSError, TopologyError) as e:
                if isinstance(e, DcpError) and not e.retriable:
                    self._fail(e)
                    return
                self._to_reopen |= {
                    vb for vb in batch if self.states[vb].status is StreamStatus.REOPENING
                }
                attempt += 1
                if s.max_reconnect_attempts is not None and attempt > s.max_reconnect_attempts:
                    self._fail(e)
                    return
                log.warning("reopening %d vbuckets failed (attempt %d): %s", len(batch), attempt, e)
