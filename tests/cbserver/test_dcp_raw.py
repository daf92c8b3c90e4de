"""DCP producer checks with a hand-written raw client (see rawclient.py)."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator

import pytest

from tests.cbserver import CouchbaseTestServer
from tests.cbserver.rawclient import Msg, RawClient, dcp_connect, parse_xattrs, split_leb128

MUTATION, DELETION, EXPIRATION, MARKER, STREAM_END = 0x57, 0x58, 0x59, 0x56, 0x55
SYSTEM_EVENT, SEQNO_ADVANCED, NOOP = 0x5F, 0x64, 0x5C
VB = 3


@pytest.fixture
def srv() -> Iterator[CouchbaseTestServer]:
    server = CouchbaseTestServer(num_vbuckets=16, collections={"inventory": ["hotels", "photos"]},
                                 dcp_connection_manager_interval=0.05)
    server.start()
    yield server
    server.stop()


def marker(m: Msg) -> tuple[int, int, int]:
    assert m.opcode == MARKER, hex(m.opcode)
    return struct.unpack(">QQI", m.extras)


def seqno(m: Msg) -> int:
    return struct.unpack_from(">Q", m.extras)[0]


def failover_log(m: Msg) -> list[tuple[int, int]]:
    return [struct.unpack_from(">QQ", m.value, i) for i in range(0, len(m.value), 16)]


def resume(c: RawClient, srv: CouchbaseTestServer, start: int, **kw: object) -> Msg:
    """Stream from ``start`` (a complete snapshot) with the current vbucket uuid."""
    uuid = srv.failover_log(VB)[0][0]
    return c.stream_req(VB, start=start, vbuuid=uuid, **kw)  # type: ignore[arg-type]


def fill(srv: CouchbaseTestServer, n: int, coll: str = "hotels", size: int = 10) -> list[str]:
    keys = srv.keys_in_vbucket(VB, n, prefix=f"{coll}-")
    for i, k in enumerate(keys):
        srv.upsert("inventory", coll, k, {"i": i, "pad": "x" * size})
    return keys


def test_handshake_scram_and_controls(srv: CouchbaseTestServer) -> None:
    c = RawClient(srv.ports.kv)
    assert c.hello(0x12, 0x06, 0x07, 0x0B, 0x0A, 0x0C) == [0x12, 0x06, 0x07, 0x0B]
    c.auth_scram("Administrator", "password")
    assert c.select_bucket("nope") == 0x01
    assert c.select_bucket("default") == 0
    assert c.dcp_open("conn", 0x01) == 0
    assert c.control("enable_noop", "true") == 0
    assert c.control("set_noop_interval", "0.01") == 0x04  # below the manager interval
    assert c.control("set_noop_interval", "20") == 0
    assert c.control("connection_buffer_size", "1048576") == 0
    assert c.control("no_such_control", "true") == 0x04
    assert c.control("enable_stream_id", "true") == 0x83
    bad = c.request(0x5E, key=b"enable_noop", value=b"true", extras=b"\0\0\0\0")
    assert bad.status == 0x04  # the control.md example's extras are invalid
    c.close()
    wrong = RawClient(srv.ports.kv)
    wrong.hello(0x12)
    r = wrong.request(0x21, key=b"PLAIN", value=b"\0Administrator\0bad")
    assert r.status == 0x20
    assert wrong.request(0x53, extras=b"\0" * 48).status == 0x24  # not authenticated
    wrong.close()


def test_stream_request_validation(srv: CouchbaseTestServer) -> None:
    fill(srv, 2)
    c = dcp_connect(srv.ports.kv)
    assert c.stream_req(VB, start=2, snap_start=3, snap_end=5).status == 0x22
    assert c.stream_req(VB, start=5, end=4, snap_start=5, snap_end=5).status == 0x22
    assert c.stream_req(99).status == 0x07
    assert c.stream_req(VB, value=b'{"collections":["ff"]}').status == 0x88
    assert c.stream_req(VB, value=b'{"collections":["8"],"scope":"8"}').status == 0x04
    assert c.stream_req(VB, value=b"{not json").status == 0x04
    assert c.stream_req(VB, value=b"{}").status == 0x04  # no known key
    assert c.stream_req(VB, value=b'{"collections":[8]}').status == 0x04  # ids are strings
    assert c.stream_req(VB, value=b'{"scope":"77"}').status == 0x8C
    assert c.stream_req(VB).status == 0
    assert c.stream_req(VB).status == 0x02  # already streaming this vBucket
    c.close()
    quiet = dcp_connect(srv.ports.kv, "no-noop", controls={})
    assert quiet.stream_req(VB, value=b'{"collections":["8"]}').status == 0x83
    quiet.close()


def test_dcp_command_rules(srv: CouchbaseTestServer) -> None:
    plain = RawClient(srv.ports.kv)
    plain.hello(0x12, 0x06)
    assert plain.auth_plain("Administrator", "password") == 0
    assert plain.select_bucket("default") == 0
    assert plain.stream_req(VB).status == 0x04  # not a DCP connection
    assert plain.request(0x54, vbucket=VB).status == 0x04  # DCP_GET_FAILOVER_LOG too
    assert plain.request(0x96, vbucket=VB).status == 0  # GET_FAILOVER_LOG works anywhere
    assert plain.request(0x48, extras=struct.pack(">I", 9)).status == 0x04
    bad_flags = plain.request(0x50, key=b"x", extras=struct.pack(">II", 0, 0x01 | 0x02))
    assert bad_flags.status == 0x04
    only_deleted_user = plain.request(0x50, key=b"x", extras=struct.pack(">II", 0, 0x101))
    assert only_deleted_user.status == 0x04
    assert plain.dcp_open("x", 0x01) == 0
    assert plain.dcp_open("x", 0x01) == 0x04  # already a DCP connection
    assert plain.request(0x5E, key=b"enable_noop", value=b"true", datatype=0x01).status == 0x04
    assert plain.stream_req(VB, flags=0x08).status == 0x04  # NO_VALUE belongs to DCP_OPEN
    plain.close()


def test_failover_log_newest_first_and_seqnos(srv: CouchbaseTestServer) -> None:
    fill(srv, 3)
    first_uuid = srv.failover_log(VB)[0][0]
    new_uuid = srv.failover(VB)
    c = dcp_connect(srv.ports.kv)
    r = c.stream_req(VB)
    assert r.status == 0
    high = srv.high_seqno(VB)
    assert failover_log(r) == [(new_uuid, high), (first_uuid, 0)]
    r = c.request(0x54, vbucket=VB)
    assert failover_log(r) == [(new_uuid, high), (first_uuid, 0)]
    r = c.request(0x48)
    pairs = [struct.unpack_from(">HQ", r.value, i) for i in range(0, len(r.value), 10)]
    assert dict(pairs)[VB] == high and len(pairs) == 16
    hotels = srv.collection_id("inventory", "hotels")
    r = c.request(0x48, extras=struct.pack(">II", 0, hotels))
    per_vb = dict(struct.unpack_from(">HQ", r.value, i) for i in range(0, len(r.value), 10))
    assert per_vb[VB] == high
    c.close()


def test_backfill_disk_snapshot_then_live_memory_snapshot(srv: CouchbaseTestServer) -> None:
    keys = fill(srv, 3)
    srv.upsert("inventory", "hotels", keys[0], {"i": 99})  # de-duplicated in the backfill
    high = srv.high_seqno(VB)
    c = dcp_connect(srv.ports.kv, scram=True)
    assert c.stream_req(VB).status == 0
    start, end, flags = marker(c.expect())
    assert (start, end) == (0, high) and flags & 0x02 and not flags & 0x01
    msgs = c.collect(6)
    assert [m.opcode for m in msgs] == [SYSTEM_EVENT] * 3 + [MUTATION] * 3
    muts = msgs[3:]
    assert [seqno(m) for m in muts] == sorted(seqno(m) for m in muts) and seqno(muts[-1]) == high
    cid, key = split_leb128(muts[-1].key)
    assert key.decode() == keys[0] and cid == srv.collection_id("inventory", "hotels")
    assert json.loads(muts[-1].value) == {"i": 99} and muts[-1].datatype == 0x01
    stored = srv.get("inventory", "hotels", keys[0])
    assert stored is not None and muts[-1].cas == stored.cas
    assert c.next_dcp(timeout=0.2) is None
    live = srv.upsert("inventory", "hotels", keys[1], {"live": True})
    start, end, flags = marker(c.expect())
    assert flags & 0x01 and (start, end) == (live.seqno, live.seqno)
    m = c.expect()
    assert m.opcode == MUTATION and seqno(m) == live.seqno and m.vbucket == VB
    c.close()


def test_xattrs_and_deletion_v2(srv: CouchbaseTestServer) -> None:
    key = srv.keys_in_vbucket(VB, 1)[0]
    srv.upsert("inventory", "hotels", key, {"a": 1}, user_xattrs={"meta": {"u": 1}},
               system_xattrs={"_cbembed": {"h": "x"}})
    c = dcp_connect(srv.ports.kv, flags=0x01 | 0x04 | 0x20)
    base = srv.high_seqno(VB)
    assert resume(c, srv, base - 1).status == 0
    marker(c.expect())
    m = c.expect()
    assert m.opcode == MUTATION and m.datatype == 0x05
    xattrs, body = parse_xattrs(m.value)
    assert json.loads(xattrs["_cbembed"]) == {"h": "x"} and json.loads(xattrs["meta"]) == {"u": 1}
    assert json.loads(body) == {"a": 1}
    srv.remove("inventory", "hotels", key)
    marker(c.expect())
    d = c.expect()
    assert d.opcode == DELETION and len(d.extras) == 21
    by_seqno, _rev, delete_time, _ = struct.unpack(">QQIB", d.extras)
    assert by_seqno == srv.high_seqno(VB) and abs(delete_time - time.time()) < 5
    assert d.datatype == 0x04 and parse_xattrs(d.value)[0] == {"_cbembed": '{"h":"x"}'}
    c.close()
    v1 = dcp_connect(srv.ports.kv, "v1")
    assert resume(v1, srv, by_seqno - 1).status == 0
    marker(v1.expect())
    d1 = v1.expect()
    assert d1.opcode == DELETION and len(d1.extras) == 18 and d1.value == b""
    v1.close()


def test_noops_are_sent_and_unanswered_noop_closes(srv: CouchbaseTestServer) -> None:
    ctl = {"enable_noop": "true", "set_noop_interval": "0.2"}
    good = dcp_connect(srv.ports.kv, "good", controls=ctl)
    assert resume(good, srv, 3).status == 0
    assert good.next_dcp(timeout=1.0) is None  # noops answered inside next_dcp
    stats = {s.name: s for s in srv.dcp_stats}
    assert stats["good"].noops_answered >= 1 and not stats["good"].closed
    good.close()
    bad = dcp_connect(srv.ports.kv, "bad", controls=ctl)
    assert resume(bad, srv, 3).status == 0
    noop = bad.next_dcp(timeout=1.0, answer_noops=False)
    assert noop is not None and noop.opcode == NOOP and noop.magic == 0x80
    with pytest.raises(ConnectionError):
        bad.next_dcp(timeout=2.0, answer_noops=False)
    stats = {s.name: s for s in srv.dcp_stats}
    assert stats["bad"].noops_sent >= 1 and stats["bad"].noops_answered == 0
    assert stats["bad"].closed and "noop" in stats["bad"].close_reason


def test_flow_control_pauses_and_resumes(srv: CouchbaseTestServer) -> None:
    fill(srv, 40, size=100)
    c = dcp_connect(srv.ports.kv, controls={"enable_noop": "true",
                                            "connection_buffer_size": "1000"})
    assert c.stream_req(VB).status == 0
    got: list[Msg] = []
    while (m := c.next_dcp(timeout=0.5)) is not None:
        got.append(m)
    first_batch = sum(m.size for m in got)
    assert 1000 <= first_batch < 1000 + 200
    c.buffer_ack(first_batch)
    more: list[Msg] = []
    while (m := c.next_dcp(timeout=0.5)) is not None:
        more.append(m)
        c.buffer_ack(m.size)
    assert more
    total = [m for m in got + more if m.opcode == MUTATION]
    assert len(total) == 40
    stats = srv.dcp_stats[-1]
    assert stats.max_unacked < 1000 + 200 and stats.bytes_acked == sum(m.size for m in got + more)


def test_forced_rollback_and_rollback_after_lost_history(srv: CouchbaseTestServer) -> None:
    fill(srv, 4)
    c = dcp_connect(srv.ports.kv)
    srv.faults.force_rollback(VB, 2)
    r = c.stream_req(VB)
    assert r.status == 0x23 and struct.unpack(">Q", r.value)[0] == 2
    r = c.stream_req(VB)
    assert r.status == 0
    uuid0 = failover_log(r)[0][0]
    high = srv.high_seqno(VB)
    c.close()
    srv.failover(VB, lose_after_seqno=high - 2)
    c2 = dcp_connect(srv.ports.kv, "again")
    r = c2.stream_req(VB, start=high, vbuuid=uuid0, snap_start=high, snap_end=high)
    assert r.status == 0x23 and struct.unpack(">Q", r.value)[0] == high - 2
    r = c2.stream_req(VB, start=high - 2, vbuuid=uuid0)
    assert r.status == 0 and len(failover_log(r)) == 2
    r = c2.request(0x52, vbucket=VB)
    assert r.status == 0
    r = c2.stream_req(VB, start=1, vbuuid=12345)  # unknown history: back to zero
    assert r.status == 0x23 and struct.unpack(">Q", r.value)[0] == 0
    c2.close()


def test_failover_ends_open_stream_with_state_changed(srv: CouchbaseTestServer) -> None:
    c = dcp_connect(srv.ports.kv)
    assert resume(c, srv, 3).status == 0
    srv.failover(VB)
    end = c.expect()
    assert end.opcode == STREAM_END and struct.unpack(">I", end.extras)[0] == 2
    c.close()


def test_collection_filter_and_seqno_advanced(srv: CouchbaseTestServer) -> None:
    fill(srv, 2, "hotels")
    fill(srv, 1, "photos")  # last seqno belongs to photos
    hotels = srv.collection_id("inventory", "hotels")
    c = dcp_connect(srv.ports.kv)
    r = c.stream_req(VB, value=json.dumps({"collections": [f"{hotels:x}"]}).encode())
    assert r.status == 0
    marker(c.expect())
    msgs = c.collect(4)
    assert [m.opcode for m in msgs] == [SYSTEM_EVENT, MUTATION, MUTATION, SEQNO_ADVANCED]
    assert struct.unpack(">QIB", msgs[0].extras)[1:] == (0, 0) and msgs[0].key == b"hotels"
    assert all(split_leb128(m.key)[0] == hotels for m in msgs[1:3])
    assert seqno(msgs[3]) == srv.high_seqno(VB)
    c.close()


def test_collection_drop_sends_event_then_filter_empty(srv: CouchbaseTestServer) -> None:
    photos = srv.collection_id("inventory", "photos")
    start = srv.high_seqno(VB)
    c = dcp_connect(srv.ports.kv)
    r = resume(c, srv, start, value=json.dumps({"collections": [f"{photos:x}"]}).encode())
    assert r.status == 0
    srv.drop_collection("inventory", "photos")
    marker(c.expect())
    ev = c.expect()
    assert ev.opcode == SYSTEM_EVENT and struct.unpack(">QIB", ev.extras)[1] == 1
    assert struct.unpack(">QII", ev.value)[2] == photos
    end = c.expect()
    assert end.opcode == STREAM_END and struct.unpack(">I", end.extras)[0] == 7
    assert c.stream_req(VB, value=json.dumps({"collections": [f"{photos:x}"]}).encode()
                        ).status == 0x88
    c.close()


def test_scope_filter_follows_new_collections_until_scope_drop(srv: CouchbaseTestServer) -> None:
    srv.create_scope("media")
    sid = srv.ctx.store.manifest.scopes["media"].sid
    start = srv.high_seqno(VB)
    c = dcp_connect(srv.ports.kv)
    assert resume(c, srv, start, value=json.dumps({"scope": f"{sid:x}"}).encode()).status == 0
    cid = srv.create_collection("media", "clips")
    srv.upsert("media", "clips", srv.keys_in_vbucket(VB, 1)[0], {"clip": 1})
    seen: list[Msg] = []
    while not seen or seen[-1].opcode != MUTATION:
        seen.append(c.expect())
    srv.drop_collection("media", "clips")  # the scope filter carries on...
    srv.drop_scope("media")  # ...until its scope goes
    while (m := c.next_dcp(timeout=0.5)) is not None:
        seen.append(m)
    kinds = [(m.opcode, struct.unpack_from(">QI", m.extras)[1] if m.opcode == SYSTEM_EVENT
              else None) for m in seen if m.opcode != MARKER]
    assert kinds == [(SYSTEM_EVENT, 0), (MUTATION, None), (SYSTEM_EVENT, 1), (SYSTEM_EVENT, 4),
                     (STREAM_END, None)]
    assert split_leb128(seen[[m.opcode for m in seen].index(MUTATION)].key)[0] == cid
    assert struct.unpack(">I", seen[-1].extras)[0] == 7
    c.close()


def test_drop_dcp_connections_mid_snapshot(srv: CouchbaseTestServer) -> None:
    fill(srv, 10)
    c = dcp_connect(srv.ports.kv)
    srv.faults.drop_dcp_connections(after_items=5)
    assert c.stream_req(VB).status == 0
    got = []
    with pytest.raises(ConnectionError):
        while (m := c.next_dcp(timeout=2.0)) is not None:
            got.append(m)
    items = [m for m in got if m.opcode in (MUTATION, SYSTEM_EVENT)]
    assert got[0].opcode == MARKER and len(items) == 5


def test_not_my_vbucket_fault_carries_config(srv: CouchbaseTestServer) -> None:
    c = dcp_connect(srv.ports.kv)
    rev = json.loads(c.request(0xB5).value)["rev"]
    srv.faults.not_my_vbucket({VB}, times=1)
    r = c.stream_req(VB)
    assert r.status == 0x07 and json.loads(r.value)["rev"] > rev
    assert c.stream_req(VB).status == 0
    c.close()


def test_tmpfail_and_end_streams_faults(srv: CouchbaseTestServer) -> None:
    c = dcp_connect(srv.ports.kv)
    srv.faults.tmpfail({VB})
    assert c.stream_req(VB).status == 0x86
    assert resume(c, srv, 3).status == 0
    srv.faults.end_streams({VB})
    end = c.expect()
    assert end.opcode == STREAM_END and struct.unpack(">I", end.extras)[0] == 4
    assert resume(c, srv, 3).status == 0  # the vBucket can be streamed again
    c.close()


def test_close_stream_sends_stream_end_closed(srv: CouchbaseTestServer) -> None:
    c = dcp_connect(srv.ports.kv, controls={"enable_noop": "true",
                                            "send_stream_end_on_client_close_stream": "true"})
    assert resume(c, srv, 3).status == 0
    assert c.request(0x52, vbucket=VB).status == 0
    end = c.expect()
    assert end.opcode == STREAM_END and struct.unpack(">I", end.extras)[0] == 1
    assert c.request(0x52, vbucket=VB).status == 0x01
    c.close()


def test_to_latest_ends_stream_and_restart_keeps_ports(srv: CouchbaseTestServer) -> None:
    fill(srv, 2)
    c = dcp_connect(srv.ports.kv)
    assert c.stream_req(VB, flags=0x04).status == 0
    msgs = c.collect(10, timeout=0.5)
    assert msgs[-1].opcode == STREAM_END and struct.unpack(">I", msgs[-1].extras)[0] == 0
    port = srv.ports.kv
    srv.restart()
    with pytest.raises((ConnectionError, OSError)):
        c.next_dcp(timeout=1.0)
    assert srv.ports.kv == port
    again = dcp_connect(port, "after-restart")
    assert again.stream_req(VB).status == 0
    again.close()


def test_same_name_replaces_connection_and_expiry_opcode(srv: CouchbaseTestServer) -> None:
    old = dcp_connect(srv.ports.kv, "dup")
    new = dcp_connect(srv.ports.kv, "dup", flags=0x01 | 0x20,
                      controls={"enable_noop": "true", "enable_expiry_opcode": "true"})
    with pytest.raises((ConnectionError, OSError)):
        old.next_dcp(timeout=1.0)
    key = srv.keys_in_vbucket(VB, 1)[0]
    srv.upsert("inventory", "hotels", key, {"ttl": 1}, expiry=1)
    start = srv.high_seqno(VB)
    assert resume(new, srv, start).status == 0
    time.sleep(1.1)
    assert srv.expire_due() == 1
    marker(new.expect())
    exp = new.expect()
    assert exp.opcode == EXPIRATION and len(exp.extras) == 20
    new.close()
