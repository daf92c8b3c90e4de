"""The connector on Couchbase: our DCP client reads the test server's change feed, the official
SDK writes vectors back. The server speaks the real protocols (tests/cbserver)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connector.config import EncoderConfig, Settings, load_settings
from connector.couchbase import sdk
from connector.errors import StorageError
from connector.hashing import pipeline_fingerprint, source_hash
from connector.service import Connector, run_until_idle
from encoders.registry import register_instance
from tests.cbserver import CouchbaseTestServer
from tests.conftest import RacingEncoder, dead_letters

KS = "default.inventory.hotels"


@pytest.fixture
def srv() -> Iterator[CouchbaseTestServer]:
    with CouchbaseTestServer(collections={"inventory": ["hotels", "other"]},
                             num_vbuckets=16) as server:
        yield server


def cb_settings(srv: CouchbaseTestServer, **over: Any) -> Settings:
    pipeline = {"name": "hotels", "keyspace": KS, "template": "{name}. {description}"}
    pipeline.update(over.pop("pipeline", {}))
    return load_settings(
        storage=srv.connection_string,
        couchbase={"password": "password", "timeout_s": 5, **over.pop("couchbase", {})},
        pipelines=[pipeline],
        connector={"poll_interval_s": 0.05, "max_wait_ms": 5, "checkpoint_interval_s": 0.2,
                   **over.pop("connector", {})},
        **over,
    )


@pytest.fixture
def hotels(srv: CouchbaseTestServer) -> Iterator[Any]:
    s = cb_settings(srv)
    cluster = sdk.connect_sync(s)
    yield cluster.bucket("default").scope("inventory").collection("hotels")
    cluster.close()


def text_of(i: int, version: int = 0) -> dict[str, Any]:
    return {"name": f"Hotel {i}", "description": f"room {i} near the harbour, version {version}",
            "stars": i % 5}


def expected_hash(s: Settings, doc: dict[str, Any]) -> str:
    fp = pipeline_fingerprint(s.pipelines[0])
    return source_hash(fp, f"{doc['name']}. {doc['description']}".encode())


def assert_all_current(srv: CouchbaseTestServer, s: Settings, keys: list[str]) -> None:
    """Every live document carries the hash (and a vector) of its current content."""
    for key in keys:
        d = srv.get("inventory", "hotels", key)
        assert d is not None and not d.deleted, key
        meta = d.system_xattrs["_cbembed"]["hotels"]
        assert meta["h"] == expected_hash(s, d.value), key
        assert len(d.value["embedding"]) == 384


def test_sdk_writes_are_embedded_and_readable_through_the_sdk(srv, hotels, minilm) -> None:
    s = cb_settings(srv)
    docs = {f"h{i}": text_of(i) for i in range(40)}
    for k, d in docs.items():
        hotels.upsert(k, d)
    hotels.upsert("broken", {"name": "No description"})
    summary = run_until_idle(s).pipelines["hotels"]
    assert summary["embedded"] == 40 and summary["failed"] == 1
    assert summary["skipped_unchanged"] == 40  # our own write-backs, seen on the feed, skipped
    got = hotels.get("h7").content_as[dict]
    want = minilm.encode(["Hotel 7. room 7 near the harbour, version 0"], normalize=True)
    assert np.allclose(np.array(got["embedding"], dtype=np.float32), want.vectors[0], atol=1e-6)
    assert got["stars"] == docs["h7"]["stars"]  # the rest of the document is untouched
    import couchbase.subdocument as SD

    meta = hotels.lookup_in("h7", [SD.get("_cbembed.hotels", xattr=True)]).content_as[dict](0)
    assert meta["h"] == expected_hash(s, docs["h7"]) and meta["d"] == 384
    letters = dead_letters(s)
    assert [(d.key, d.kind) for d in letters] == [("broken", "missing_field")]
    # Restart: nothing is read twice, nothing re-embedded, no document rewritten.
    cas_before = hotels.get("h3").cas
    again = run_until_idle(s).pipelines["hotels"]
    assert again == summary
    assert hotels.get("h3").cas == cas_before


@pytest.mark.parametrize("xattr_mode", ["preserve", "keep_system_only"])
def test_application_full_document_write_re_embeds_only_on_real_change(xattr_mode) -> None:
    with CouchbaseTestServer(collections={"inventory": ["hotels"]}, num_vbuckets=8,
                             xattrs_on_full_write=xattr_mode) as server:
        s = cb_settings(server)
        cluster = sdk.connect_sync(s)
        coll = cluster.bucket("default").scope("inventory").collection("hotels")
        for i in range(5):
            coll.upsert(f"h{i}", text_of(i))
        run_until_idle(s)
        # The application reads, changes an unrelated field and writes the whole body back
        # (keeping the vector it read): the system xattr survives, nothing is re-embedded.
        for i in range(5):
            body = coll.get(f"h{i}").content_as[dict]
            body["stars"] = 5
            coll.replace(f"h{i}", body)
        body = coll.get("h0").content_as[dict]
        body["description"] = "completely renovated"
        coll.replace("h0", body)
        # An application that writes the document back without the vector field (a projection,
        # say): the content is unchanged, the xattr still matches, but the vector is gone.
        coll.replace("h1", text_of(1))
        cluster.close()
        stats = run_until_idle(s).pipelines["hotels"]
        assert stats["embedded"] == 7
        assert_all_current(server, s, [f"h{i}" for i in range(5)])


def test_deleted_document_and_filter(srv, hotels) -> None:
    s = cb_settings(srv, pipeline={"filter": {"stars": {"gte": 2}}})
    for i in range(6):
        hotels.upsert(f"h{i}", text_of(i))
    run_until_idle(s)
    embedded = {k for k in (f"h{i}" for i in range(6))
                if "embedding" in srv.get("inventory", "hotels", k).value}
    assert embedded == {"h2", "h3", "h4"}
    hotels.remove("h2")
    doc = hotels.get("h3").content_as[dict]
    doc["stars"] = 0  # leaves the filter: its vector and metadata are removed
    hotels.replace("h3", doc)
    run_until_idle(s)
    h3 = srv.get("inventory", "hotels", "h3")
    assert "embedding" not in h3.value and "hotels" not in h3.system_xattrs.get("_cbembed", {})
    assert "embedding" in srv.get("inventory", "hotels", "h4").value


def test_connection_dropped_mid_snapshot_loses_nothing(srv, hotels) -> None:
    s = cb_settings(srv)
    keys = [f"h{i}" for i in range(120)]
    for i, k in enumerate(keys):
        hotels.upsert(k, text_of(i))
    srv.faults.drop_dcp_connections(after_items=30)
    stats = run_until_idle(s).pipelines["hotels"]
    assert stats["embedded"] == 120
    assert_all_current(srv, s, keys)


def test_rollback_after_failover_re_reads_what_the_server_lost(srv, hotels) -> None:
    s = cb_settings(srv)
    keys = [f"h{i}" for i in range(48)]
    for i, k in enumerate(keys):
        hotels.upsert(k, text_of(i))
    run_until_idle(s)
    # New versions of every document, then a failover that loses the newest history of one
    # vbucket: the checkpoint there is ahead of the new branch and must roll back.
    for i, k in enumerate(keys):
        hotels.upsert(k, text_of(i, version=1))
    run_until_idle(s)
    vb = srv.vbucket_of("h5")
    lost_after = srv.high_seqno(vb) - 3
    srv.failover(vb, lose_after_seqno=lost_after)
    for i in range(0, 48, 4):
        hotels.upsert(keys[i], text_of(i, version=2))
    run_until_idle(s)
    assert_all_current(srv, s, [k for k in keys if srv.get("inventory", "hotels", k)])


def test_forced_rollback_and_not_my_vbucket(srv, hotels) -> None:
    s = cb_settings(srv)
    keys = [f"h{i}" for i in range(32)]
    for i, k in enumerate(keys):
        hotels.upsert(k, text_of(i))
    run_until_idle(s)
    for vb in range(16):
        srv.faults.force_rollback(vb, to_seqno=0)
    srv.faults.not_my_vbucket({1, 2}, times=1)
    for i in range(0, 32, 3):
        hotels.upsert(keys[i], text_of(i, version=3))
    stats = run_until_idle(s).pipelines["hotels"]
    assert stats["embedded"] == 32 + 11
    assert_all_current(srv, s, keys)


def test_change_during_embedding_never_gets_the_stale_vector(srv, hotels, minilm) -> None:
    cfg = EncoderConfig(kind="racing", model="sentence-transformers/all-MiniLM-L6-v2",
                        options={"test": "couchbase"})
    s = cb_settings(srv, pipeline={"encoder": cfg.model_dump()})
    register_instance(cfg, RacingEncoder(minilm, lambda: hotels.upsert(
        "race", {"name": "Second", "description": "red bicycle"})))
    hotels.upsert("race", {"name": "First", "description": "blue kettle"})
    stats = run_until_idle(s).pipelines["hotels"]
    assert stats["cas_conflicts"] == 1
    doc = srv.get("inventory", "hotels", "race")
    want = minilm.encode(["Second. red bicycle"], normalize=True).vectors[0]
    assert np.allclose(np.array(doc.value["embedding"], dtype=np.float32), want, atol=1e-6)


def test_two_group_members_split_the_work(srv, hotels) -> None:
    keys = [f"h{i}" for i in range(60)]
    for i, k in enumerate(keys):
        hotels.upsert(k, text_of(i))
    counts = []
    for member in range(2):
        s = cb_settings(srv, connector={"group": "g2", "member": member, "members": 2})
        counts.append(run_until_idle(s).pipelines["hotels"]["embedded"])
    assert sum(counts) == 60 and min(counts) > 0
    assert_all_current(srv, cb_settings(srv), keys)


def test_start_from_now_skips_existing_documents(srv, hotels) -> None:
    hotels.upsert("old", text_of(1))
    s = cb_settings(srv, connector={"start_from": "now", "group": "fresh"})

    async def go() -> dict[str, int]:
        c = Connector(s)
        task = asyncio.create_task(c.run())
        while not c.workers or c.source is None:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(hotels.upsert, "new", text_of(2))
        for _ in range(200):
            if c.workers[0].stats.embedded:
                break
            await asyncio.sleep(0.05)
        c.stop()
        summary = await task
        await c.close()
        return summary.pipelines["hotels"]

    stats = asyncio.run(go())
    assert stats["embedded"] == 1
    assert "embedding" not in srv.get("inventory", "hotels", "old").value
    assert "embedding" in srv.get("inventory", "hotels", "new").value


def test_dropped_collection_stops_its_pipeline(srv, hotels) -> None:
    hotels.upsert("h1", text_of(1))
    s = cb_settings(srv)

    async def go() -> Connector:
        c = Connector(s)
        task = asyncio.create_task(c.run())
        while not (c.workers and c.workers[0].stats.embedded):
            await asyncio.sleep(0.05)
        await asyncio.to_thread(srv.drop_collection, "inventory", "hotels")
        await asyncio.wait_for(task, 30)
        await c.close()
        return c

    c = asyncio.run(go())
    assert c.stopped == {"hotels": "collection dropped"}


def test_unknown_collection_and_bad_password_are_clear_errors(srv) -> None:
    s = cb_settings(srv, pipeline={"keyspace": "default.inventory.nope"})
    with pytest.raises(Exception, match="nope"):
        run_until_idle(s)
    bad = cb_settings(srv, couchbase={"password": "wrong", "timeout_s": 2})
    with pytest.raises(StorageError, match="cannot connect"):
        run_until_idle(bad)


CONFIG = """
storage = "{connstr}"
[couchbase]
password = "password"
timeout_s = 5
[connector]
checkpoint_interval_s = 0.1
poll_interval_s = 0.05
[[pipelines]]
name = "hotels"
keyspace = "{ks}"
template = "{{name}}. {{description}}"
"""


@pytest.mark.slow
def test_kill_9_and_resume_exactly(srv, hotels, tmp_path: Path) -> None:
    cfg = tmp_path / "cb.toml"
    cfg.write_text(CONFIG.format(connstr=srv.connection_string, ks=KS))
    s = load_settings(cfg)
    keys = [f"h{i:04d}" for i in range(1500)]
    for i, k in enumerate(keys):
        hotels.upsert(k, text_of(i))

    def embedded() -> int:
        return sum(1 for k in keys if "embedding" in srv.get("inventory", "hotels", k).value)

    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "run", "--config", str(cfg),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while embedded() < 500:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for i in range(0, 1500, 7):  # the application keeps writing
        hotels.upsert(keys[i], text_of(i, version=1))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert embedded() < 1500, "the kill must land in the middle of the work"
    r = subprocess.run([sys.executable, "-m", "connector.cli", "run", "--config", str(cfg),
                        "--quiet", "--until-idle"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert_all_current(srv, s, keys)


LIVE = os.environ.get("CBEMBED_TEST_CONNSTR")


@pytest.mark.live_couchbase
@pytest.mark.skipif(not LIVE, reason="set CBEMBED_TEST_CONNSTR, CBEMBED_TEST_USER, "
                    "CBEMBED_TEST_PASSWORD, CBEMBED_TEST_BUCKET to run against a real cluster")
def test_live_cluster_end_to_end() -> None:  # pragma: no cover - needs a cluster
    from couchbase.auth import PasswordAuthenticator
    from couchbase.cluster import Cluster
    from couchbase.options import ClusterOptions

    bucket = os.environ.get("CBEMBED_TEST_BUCKET", "default")
    user = os.environ.get("CBEMBED_TEST_USER", "Administrator")
    password = os.environ.get("CBEMBED_TEST_PASSWORD", "password")
    s = load_settings(
        storage=LIVE, couchbase={"username": user, "password": password},
        pipelines=[{"name": "live", "keyspace": f"{bucket}._default._default",
                    "template": "{name}. {description}"}],
        connector={"group": f"live-{int(time.time())}", "poll_interval_s": 0.2},
    )
    cluster = Cluster(LIVE, ClusterOptions(PasswordAuthenticator(user, password)))
    cluster.wait_until_ready(timedelta(seconds=20))
    coll = cluster.bucket(bucket).default_collection()
    keys = [f"cbembed-live-{i}" for i in range(20)]
    for i, k in enumerate(keys):
        coll.upsert(k, text_of(i))
    run_until_idle(s)
    for k in keys:
        assert len(coll.get(k).content_as[dict]["embedding"]) == 384
        coll.remove(k)
    cluster.close()
