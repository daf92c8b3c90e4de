"""DcpClient against the project's protocol-level Couchbase test server (tests/cbserver).

The server runs on the test's own event loop (`start_async`), so every test is one asyncio
task talking to it over loopback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from connector.dcp import (
    CollectionDroppedEvent,
    DcpAuthError,
    DcpClient,
    DcpSettings,
    DcpStream,
    RollbackEvent,
    SeqnoAdvancedEvent,
    StreamEndEvent,
    StreamEndReason,
    UnknownCollectionError,
)
from connector.events import ChangeEvent, ChangeKind, Keyspace, PartitionOffset
from tests.cbserver import CouchbaseTestServer

NUM_VB = 16
HOTELS = Keyspace("default", "inventory", "hotels")
PHOTOS = Keyspace("default", "inventory", "photos")


@pytest.fixture
async def srv() -> AsyncIterator[CouchbaseTestServer]:
    server = CouchbaseTestServer(
        num_vbuckets=NUM_VB,
        collections={"inventory": ["hotels", "photos"]},
        dcp_connection_manager_interval=0.05,
    )
    await server.start_async()
    yield server
    await server.stop_async()


def settings(srv: CouchbaseTestServer, **kw: Any) -> DcpSettings:
    base: dict[str, Any] = dict(
        connection_string=srv.connection_string,
        username="Administrator",
        password="password",
        bucket="default",
        connection_name="cbembed/test/member-0",
        reconnect_base_s=0.02,
        reconnect_max_s=0.2,
        max_reconnect_attempts=50,
    )
    base.update(kw)
    return DcpSettings(**base)


@pytest.fixture
async def client(srv: CouchbaseTestServer) -> AsyncIterator[DcpClient]:
    c = DcpClient(settings(srv))
    await c.connect()
    yield c
    await c.close()


def fill(srv: CouchbaseTestServer, n: int, coll: str = "hotels", prefix: str = "h") -> list[str]:
    keys = [f"{prefix}{i}" for i in range(n)]
    for i, k in enumerate(keys):
        srv.upsert("inventory", coll, k, {"i": i, "name": f"{coll} {i}", "pad": "x" * 200})
    return keys


async def pull(
    stream: DcpStream,
    until: Callable[[list[Any]], bool],
    timeout: float = 10.0,
    items: list[Any] | None = None,
) -> list[Any]:
    """Pull items (appended to `items`) until `until(items)` holds; fail after `timeout`."""
    items = [] if items is None else items

    async def go() -> None:
        async for item in stream:
            items.append(item)
            if until(items):
                return

    await asyncio.wait_for(go(), timeout)
    return items


def changes(items: list[Any]) -> list[ChangeEvent]:
    return [i for i in items if isinstance(i, ChangeEvent)]


def keys_seen(items: list[Any]) -> set[str]:
    return {e.key for e in changes(items)}


def has_keys(keys: set[str]) -> Callable[[list[Any]], bool]:
    return lambda items: keys <= keys_seen(items)


def assert_per_vb_increasing(items: list[Any]) -> None:
    last: dict[int, int] = defaultdict(int)
    for e in changes(items):
        assert e.seqno > last[e.partition], f"vb {e.partition}: {e.seqno} after {last}"
        last[e.partition] = e.seqno
        assert e.snapshot.start <= e.seqno <= e.snapshot.end


# --- basics -----------------------------------------------------------------------------------


async def test_bootstrap_and_collection_ids(client: DcpClient, srv: CouchbaseTestServer) -> None:
    assert client.num_vbuckets == NUM_VB
    ids = await client.collection_ids(["inventory.hotels", "inventory.photos"])
    assert ids == {
        "inventory.hotels": srv.collection_id("inventory", "hotels"),
        "inventory.photos": srv.collection_id("inventory", "photos"),
    }
    with pytest.raises(UnknownCollectionError, match="inventory.nope"):
        await client.collection_ids(["inventory.nope"])
    with pytest.raises(UnknownCollectionError):
        await client.collection_ids(["nowhere.hotels"])


async def test_wrong_password_is_an_auth_error(srv: CouchbaseTestServer) -> None:
    c = DcpClient(settings(srv, password="wrong"))
    with pytest.raises(DcpAuthError):
        await c.connect()
    await c.close()


async def test_stream_from_zero(client: DcpClient, srv: CouchbaseTestServer) -> None:
    keys = fill(srv, 120)
    fill(srv, 30, coll="photos", prefix="p")
    srv.upsert(
        "inventory",
        "hotels",
        "x1",
        {"a": 1},
        user_xattrs={"cbembed": {"h": "abc"}},
        system_xattrs={"_sync": {"rev": 3}},
    )
    stream = client.stream(range(NUM_VB), {}, ["inventory.hotels"])
    items = await pull(stream, has_keys(set(keys) | {"x1"}))
    await stream.aclose()
    evs = {e.key: e for e in changes(items)}
    assert set(evs) == set(keys) | {"x1"}  # photos filtered out
    for key in keys[:20]:
        e, doc = evs[key], srv.get("inventory", "hotels", key)
        assert doc is not None
        assert e.kind is ChangeKind.MUTATION and e.keyspace == HOTELS
        assert (e.partition, e.seqno, e.cas) == (doc.vbucket, doc.seqno, doc.cas)
        assert json.loads(e.body or b"") == doc.value and e.xattrs == {} and e.meta == {}
    x1 = evs["x1"]
    assert json.loads(x1.body or b"") == {"a": 1}
    assert x1.xattrs == {"cbembed": {"h": "abc"}, "_sync": {"rev": 3}}
    assert_per_vb_increasing(items)
    # filtered photos / system events surface as seqno advances, checkpointable
    adv = [i for i in items if isinstance(i, SeqnoAdvancedEvent)]
    assert adv and all(isinstance(a.offset, PartitionOffset) for a in adv)


async def test_live_mutations_deletions_expirations(
    client: DcpClient, srv: CouchbaseTestServer
) -> None:
    keys = fill(srv, 40)
    stream = client.stream(range(NUM_VB), {}, ["inventory.hotels"])
    await pull(stream, has_keys(set(keys)))
    srv.upsert("inventory", "hotels", "live", {"v": 2})
    srv.remove("inventory", "hotels", keys[0])
    srv.upsert("inventory", "hotels", "short", {"v": 3}, expiry=int(time.time()) - 5)
    srv.expire_due()
    items = await pull(
        stream,
        lambda it: (
            {(e.key, e.kind) for e in changes(it)}
            >= {
                ("live", ChangeKind.MUTATION),
                (keys[0], ChangeKind.DELETION),
                ("short", ChangeKind.EXPIRATION),
            }
        ),
    )
    await stream.aclose()
    kinds = {(e.key, e.kind): e for e in changes(items)}
    assert kinds[(keys[0], ChangeKind.DELETION)].body is None
    assert kinds[("short", ChangeKind.EXPIRATION)].is_removal
    assert json.loads(kinds[("live", ChangeKind.MUTATION)].body or b"") == {"v": 2}


async def test_resume_from_offsets_without_duplicates(srv: CouchbaseTestServer) -> None:
    old = fill(srv, 80)
    c1 = DcpClient(settings(srv))
    stream = c1.stream(range(NUM_VB), {}, ["inventory.hotels"])
    await pull(stream, has_keys(set(old)))
    offsets = {vb: stream.offset(vb) for vb in range(NUM_VB)}
    await c1.close()

    new = fill(srv, 30, prefix="n")
    srv.upsert("inventory", "hotels", old[0], {"changed": True})
    c2 = DcpClient(settings(srv, connection_name="cbembed/test/member-0b"))
    stream = c2.stream(range(NUM_VB), offsets, ["inventory.hotels"])
    items = await pull(stream, has_keys(set(new) | {old[0]}))
    await asyncio.sleep(0.1)  # anything else queued would show up now
    while stream.queued:
        items.append(await stream.__anext__())
    await c2.close()
    got = [e.key for e in changes(items)]
    assert sorted(got) == sorted(new + [old[0]])  # nothing from before the checkpoint


async def test_from_now(client: DcpClient, srv: CouchbaseTestServer) -> None:
    fill(srv, 50)
    now = await client.current_positions(range(NUM_VB))
    assert all(now[vb].seqno == srv.high_seqno(vb) for vb in range(NUM_VB))
    assert all(now[vb].vbuuid == srv.failover_log(vb)[0][0] for vb in range(NUM_VB))
    new = fill(srv, 10, prefix="late")
    stream = client.stream(range(NUM_VB), now, ["inventory.hotels"])
    items = await pull(stream, has_keys(set(new)))
    assert keys_seen(items) == set(new)


# --- recovery ---------------------------------------------------------------------------------


async def test_forced_rollback(client: DcpClient, srv: CouchbaseTestServer) -> None:
    vb = 3
    keys = srv.keys_in_vbucket(vb, 10, prefix="r")
    for k in keys:
        srv.upsert("inventory", "hotels", k, {"k": k})
    high = srv.high_seqno(vb)
    uuid = srv.failover_log(vb)[0][0]
    srv.faults.force_rollback(vb, 4)
    start = PartitionOffset.at(high, uuid)
    stream = client.stream([vb], {vb: start}, ["inventory.hotels"])
    items = await pull(
        stream, lambda it: any(isinstance(e, ChangeEvent) and e.seqno == high for e in it)
    )
    assert isinstance(items[0], RollbackEvent)
    assert items[0].vb == vb and items[0].offset.seqno == 4
    assert items[0].offset.vbuuid == uuid
    redelivered = [e.seqno for e in changes(items)]
    assert redelivered and min(redelivered) > 4 and max(redelivered) == high


async def test_failover_with_lost_history_rolls_back(
    client: DcpClient, srv: CouchbaseTestServer
) -> None:
    vb = 5
    keys = srv.keys_in_vbucket(vb, 12, prefix="f")
    for k in keys[:6]:
        srv.upsert("inventory", "hotels", k, {"k": k})
    branch = srv.high_seqno(vb)
    for k in keys[6:]:
        srv.upsert("inventory", "hotels", k, {"k": k})
    stream = client.stream([vb], {}, ["inventory.hotels"])
    await pull(stream, has_keys(set(keys)))
    srv.failover(vb, lose_after_seqno=branch)  # the new active never had keys[6:]
    srv.upsert("inventory", "hotels", "after", {"x": 1})  # lands on some vb; maybe not ours
    later = srv.keys_in_vbucket(vb, 1, prefix="after-")[0]
    srv.upsert("inventory", "hotels", later, {"x": 2})
    items = await pull(stream, has_keys({later}))
    rb = [i for i in items if isinstance(i, RollbackEvent)]
    assert rb and rb[0].offset.seqno <= branch
    assert rb[0].offset.vbuuid != srv.failover_log(vb)[0][0]  # resumed on the old branch id
    assert stream.offset(vb).vbuuid == srv.failover_log(vb)[0][0]


async def test_connection_drop_mid_snapshot(client: DcpClient, srv: CouchbaseTestServer) -> None:
    keys = fill(srv, 200)
    srv.faults.drop_dcp_connections(after_items=37)
    stream = client.stream(range(NUM_VB), {}, ["inventory.hotels"])
    items = await pull(stream, has_keys(set(keys)), timeout=20)
    assert stream.reopens >= 1
    assert len(srv.dcp_stats) >= 2 and srv.dcp_stats[0].closed
    assert_per_vb_increasing(items)  # resumed from delivered state: no duplicates at all


async def test_server_restart(client: DcpClient, srv: CouchbaseTestServer) -> None:
    keys = fill(srv, 30)
    stream = client.stream(range(NUM_VB), {}, ["inventory.hotels"])
    await pull(stream, has_keys(set(keys)))
    await srv.restart_async(keep_data=True)
    more = fill(srv, 10, prefix="after-restart")
    items = await pull(stream, has_keys(set(more)), timeout=20)
    assert keys_seen(items) == set(more)


async def test_not_my_vbucket_refreshes_config(client: DcpClient, srv: CouchbaseTestServer) -> None:
    keys = fill(srv, 60)
    rev0 = client.config.rev
    srv.faults.not_my_vbucket({0, 1, 2}, times=2)
    stream = client.stream(range(NUM_VB), {}, ["inventory.hotels"])
    items = await pull(stream, has_keys(set(keys)))
    assert client.config.rev > rev0
    assert_per_vb_increasing(items)


# --- collections ------------------------------------------------------------------------------


async def test_unfiltered_stream_names_every_collection(
    client: DcpClient, srv: CouchbaseTestServer
) -> None:
    fill(srv, 5)
    fill(srv, 5, coll="photos", prefix="p")
    srv.create_collection("inventory", "reviews")
    srv.upsert("inventory", "reviews", "rev1", {"stars": 5})
    stream = client.stream(range(NUM_VB), {}, [])
    items = await pull(stream, has_keys({"h0", "p0", "rev1"}))
    ks = {e.key: e.keyspace for e in changes(items)}
    assert ks["h0"] == HOTELS and ks["p0"] == PHOTOS
    assert ks["rev1"] == Keyspace("default", "inventory", "reviews")


async def test_collection_drop(client: DcpClient, srv: CouchbaseTestServer) -> None:
    fill(srv, 20, coll="photos", prefix="p")
    stream = client.stream(range(NUM_VB), {}, ["inventory.photos"])
    await pull(stream, has_keys({f"p{i}" for i in range(20)}))
    srv.drop_collection("inventory", "photos")
    items = []
    async for item in stream:  # ends by itself: every vbucket's filter is empty
        items.append(item)
    dropped = [i for i in items if isinstance(i, CollectionDroppedEvent)]
    ends = [i for i in items if isinstance(i, StreamEndEvent)]
    assert dropped and {d.keyspace for d in dropped} == {PHOTOS}
    assert {d.vb for d in dropped} == set(range(NUM_VB))
    assert {e.vb for e in ends} == set(range(NUM_VB))
    assert all(e.reason is StreamEndReason.FILTER_EMPTY for e in ends)


# --- flow control, noops ----------------------------------------------------------------------


async def test_backpressure_bounds_unacked_bytes(srv: CouchbaseTestServer) -> None:
    buffer = 16 * 1024
    keys = fill(srv, 600)  # ~300 bytes each: ~180 KB, >10x the buffer
    c = DcpClient(settings(srv, buffer_size=buffer))
    stream = c.stream(range(NUM_VB), {}, ["inventory.hotels"])
    items = await pull(stream, lambda it: len(changes(it)) >= 10)
    await asyncio.sleep(0.3)  # the consumer stops pulling; the server must stop too
    stats = srv.dcp_stats[-1]
    biggest = 400
    assert stats.max_unacked <= buffer + biggest
    sent_while_stalled = stats.bytes_sent
    await asyncio.sleep(0.2)
    assert srv.dcp_stats[-1].bytes_sent == sent_while_stalled
    assert 0 < stream.queued * 300 <= buffer + biggest
    await pull(stream, has_keys(set(keys)), timeout=20, items=items)
    assert_per_vb_increasing(items)
    final = srv.dcp_stats[-1]
    assert final.max_unacked <= buffer + biggest and final.bytes_acked > 5 * buffer
    await c.close()


async def test_noops_are_answered(srv: CouchbaseTestServer) -> None:
    c = DcpClient(settings(srv, noop_interval_s=1))
    stream = c.stream(range(NUM_VB), {}, ["inventory.hotels"])
    with pytest.raises(TimeoutError):  # no documents: we just sit on the connection
        await pull(stream, lambda it: False, timeout=2.6)
    stats = srv.dcp_stats[-1]
    assert stats.noops_sent >= 2 and stats.noops_answered >= 2 and not stats.closed
    assert c.connection_stats()[0]["noops_answered"] >= 2
    srv.upsert("inventory", "hotels", "late", {"a": 1})
    items = await pull(stream, has_keys({"late"}))
    assert keys_seen(items) == {"late"}
    await c.close()


async def test_large_document_spanning_many_reads(
    client: DcpClient, srv: CouchbaseTestServer
) -> None:
    big = {"text": "y" * (3 * 1024 * 1024)}  # many 256 KiB socket reads
    srv.upsert("inventory", "hotels", "big", big)
    srv.upsert("inventory", "hotels", "small", {"a": 1})
    stream = client.stream(range(NUM_VB), {}, ["inventory.hotels"])
    items = await pull(stream, has_keys({"big", "small"}))
    evs = {e.key: e for e in changes(items)}
    assert json.loads(evs["big"].body or b"") == big


async def test_tmpfail_stream_requests_are_retried(
    client: DcpClient, srv: CouchbaseTestServer
) -> None:
    keys = fill(srv, 40)
    srv.faults.tmpfail({0, 1, 2}, times=2)
    stream = client.stream(range(NUM_VB), {}, ["inventory.hotels"])
    items = await pull(stream, has_keys(set(keys)))
    assert_per_vb_increasing(items)


@pytest.mark.parametrize("reason", [2, 3, 4, 5])
async def test_transient_stream_end_reopens_from_delivered_state(
    client: DcpClient, srv: CouchbaseTestServer, reason: int
) -> None:
    keys = fill(srv, 40)
    stream = client.stream(range(NUM_VB), {}, ["inventory.hotels"])
    items = await pull(stream, has_keys(set(keys)))
    srv.faults.end_streams(set(range(NUM_VB)), reason=reason)
    await asyncio.sleep(0.05)
    more = fill(srv, 20, prefix="m")
    await pull(stream, has_keys(set(keys) | set(more)), items=items)
    assert not any(isinstance(i, StreamEndEvent) for i in items)  # handled inside
    assert stream.reopens >= 1
    assert_per_vb_increasing(items)  # no duplicates after the reopen


@pytest.mark.parametrize("reason", [StreamEndReason.CLOSED, StreamEndReason.LOST_PRIVILEGES])
async def test_terminal_stream_end_is_delivered_and_ends_iteration(
    client: DcpClient, srv: CouchbaseTestServer, reason: StreamEndReason
) -> None:
    keys = fill(srv, 10)
    stream = client.stream(range(NUM_VB), {}, ["inventory.hotels"])
    items = await pull(stream, has_keys(set(keys)))
    srv.faults.end_streams(set(range(NUM_VB)), reason=int(reason))
    rest = [item async for item in stream]  # ends by itself
    ends = [i for i in rest if isinstance(i, StreamEndEvent)]
    assert {e.vb for e in ends} == set(range(NUM_VB)) and {e.reason for e in ends} == {reason}
    assert all(e.offset is not None and e.offset.seqno == srv.high_seqno(e.vb) for e in ends)
    assert items
