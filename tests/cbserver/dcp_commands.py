"""DCP connection-level commands: DCP_OPEN (with kv_engine's validator rules),
GET_ALL_VB_SEQNOS, GET_FAILOVER_LOG / DCP_GET_FAILOVER_LOG, and the dispatch of the other DCP
commands to the connection's ``DcpProducer``. Runs on the server loop, called by
``kv.KvConnection.dispatch``; ``drop_all_dcp``/``all_stats`` are for the server object.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .dcp import DcpProducer, DcpStats
from .protocol import Datatype, DcpOpenFlag, Feature, Frame, Opcode, Status, response

if TYPE_CHECKING:
    from .kv import KvConnection

_KNOWN_OPEN_FLAGS = (DcpOpenFlag.PRODUCER | DcpOpenFlag.INCLUDE_XATTRS | DcpOpenFlag.NO_VALUE
                     | DcpOpenFlag.INCLUDE_DELETE_TIMES
                     | DcpOpenFlag.NO_VALUE_WITH_UNDERLYING_DATATYPE
                     | DcpOpenFlag.INCLUDE_DELETED_USER_XATTRS
                     | DcpOpenFlag.SKIP_DELETES_IN_INITIAL_BACKFILL)
_KNOWN_STREAM_FLAGS = 0x01 | 0x02 | 0x04 | 0x10 | 0x20 | 0x40 | 0x80


def all_stats(ctx: Any) -> list[DcpStats]:
    """Copies of the counters of every DCP connection opened so far, oldest first."""
    return [DcpStats(**asdict(s)) for s in ctx.dcp_stats_log]


def _open_problem(conn: KvConnection, req: Frame) -> Status | None:
    if conn.dcp is not None or len(req.extras) != 8 or not req.key or len(req.key) > 200:
        return Status.EINVAL
    _, flags = struct.unpack(">II", req.extras)
    if flags & ~_KNOWN_OPEN_FLAGS:
        return Status.EINVAL
    if flags & DcpOpenFlag.NO_VALUE and flags & DcpOpenFlag.NO_VALUE_WITH_UNDERLYING_DATATYPE:
        return Status.EINVAL
    if (flags & DcpOpenFlag.INCLUDE_DELETED_USER_XATTRS
            and not flags & DcpOpenFlag.INCLUDE_XATTRS):
        return Status.EINVAL
    if flags & DcpOpenFlag.SKIP_DELETES_IN_INITIAL_BACKFILL and (
            not flags & DcpOpenFlag.PRODUCER or not conn.has(Feature.COLLECTIONS)):
        return Status.EINVAL
    if req.value:
        if req.datatype != Datatype.JSON:
            return Status.EINVAL
        try:
            if not isinstance(json.loads(req.value), dict):
                return Status.EINVAL
        except ValueError:
            return Status.EINVAL
    elif req.datatype != Datatype.RAW:
        return Status.EINVAL
    if not flags & DcpOpenFlag.PRODUCER:
        return Status.NOT_SUPPORTED  # this server has no DCP consumer side
    return None


def _shape_problem(conn: KvConnection, req: Frame) -> Status | None:
    """Header rules of kv_engine's DCP validators (RAW datatype, extras/key/value sizes)."""
    op = req.opcode
    if req.datatype != Datatype.RAW:
        return Status.EINVAL
    if op == Opcode.DCP_STREAM_REQ:
        if len(req.extras) != 48 or req.key:
            return Status.EINVAL
        if req.value and not conn.has(Feature.COLLECTIONS):
            return Status.EINVAL
        if struct.unpack_from(">I", req.extras)[0] & ~_KNOWN_STREAM_FLAGS:
            return Status.EINVAL
    elif op == Opcode.DCP_CONTROL:
        if req.extras or not req.key or not req.value:
            return Status.EINVAL
    elif op == Opcode.DCP_BUFFER_ACK:
        if len(req.extras) != 4 or req.key or req.value:
            return Status.EINVAL
    elif (op in (Opcode.DCP_CLOSE_STREAM, Opcode.DCP_GET_FAILOVER_LOG, Opcode.GET_FAILOVER_LOG)
          and (req.extras or req.key or req.value)):
        return Status.EINVAL
    return None


def handle_dcp_request(conn: KvConnection, req: Frame) -> None:
    """Entry point from the KV dispatcher for DCP and seqno/failover-log commands."""
    ctx = conn.ctx
    store = ctx.store
    op = req.opcode
    if op == Opcode.DCP_OPEN:
        problem = _open_problem(conn, req)
        if problem is not None:
            conn.write(response(req, problem))
            return
        _, flags = struct.unpack(">II", req.extras)
        name = req.key.decode(errors="replace")
        old = ctx.dcp_producers.get(name)
        if old is not None:
            old.drop("replaced by a connection with the same name")
        producer = DcpProducer(conn, name, flags)
        ctx.dcp_producers[name] = producer
        ctx.dcp_stats_log.append(producer.stats)
        conn.dcp = producer
        conn.write(response(req))
        return
    if op == Opcode.GET_ALL_VB_SEQNOS:
        state, cid = 0, None
        if len(req.extras) not in (0, 4, 8) or req.key or req.value or req.cas:
            conn.write(response(req, Status.EINVAL))
            return
        if len(req.extras) >= 4:
            (state,) = struct.unpack(">I", req.extras[:4])
            if state > 4:
                conn.write(response(req, Status.EINVAL))
                return
        if len(req.extras) == 8:
            if not conn.has(Feature.COLLECTIONS):
                conn.write(response(req, Status.EINVAL))
                return
            (cid,) = struct.unpack(">I", req.extras[4:])
            with store.lock:
                known = store.manifest.by_id(cid) is not None
            if not known:
                conn.write(conn.error(req, Status.UNKNOWN_COLLECTION))
                return
        out = b""
        if state in (0, 1):
            for vb in range(store.num_vbuckets):
                seqno = (store.vb_state(vb)[0] if cid is None
                         else store.collection_high_seqno(vb, cid))
                out += struct.pack(">HQ", vb, seqno)
        conn.write(response(req, value=out))
        return
    problem = _shape_problem(conn, req)
    if problem is None and op != Opcode.GET_FAILOVER_LOG and conn.dcp is None:
        problem = Status.EINVAL  # DCP commands need a DCP connection (0x96 does not)
    if problem is not None:
        conn.write(response(req, problem))
        return
    if op in (Opcode.GET_FAILOVER_LOG, Opcode.DCP_GET_FAILOVER_LOG):
        if req.vbucket >= store.num_vbuckets:
            conn.write(response(req, Status.NOT_MY_VBUCKET, value=ctx.config_bytes()))
            return
        log = store.vb_state(req.vbucket)[1]
        conn.write(response(req, value=b"".join(struct.pack(">QQ", u, s) for u, s in log)))
        return
    assert isinstance(conn.dcp, DcpProducer)
    conn.dcp.handle(req)
