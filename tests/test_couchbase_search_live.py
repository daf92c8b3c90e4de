"""The search helpers against a real cluster: run only when CBEMBED_TEST_CONNSTR,
CBEMBED_TEST_USER, CBEMBED_TEST_PASSWORD and CBEMBED_TEST_BUCKET are set (Server 7.6.4+ with
the Search service; the SQL++ part needs 8.0+ and the Query + Index services)."""

from __future__ import annotations

import contextlib
import os
import time
from datetime import timedelta

import pytest

from connector.config import load_settings
from connector.couchbase import query_helpers as qh
from connector.couchbase.index_manager import apply_indexes, check_indexes, detect_server_version
from connector.couchbase.xattrs import vector_json
from connector.search import SearchHit
from encoders.base import Encoder
from index_defs.versions import ServerVersion

LIVE = os.environ.get("CBEMBED_TEST_CONNSTR")
pytestmark = [
    pytest.mark.live_couchbase,
    pytest.mark.skipif(not LIVE, reason="set CBEMBED_TEST_CONNSTR, CBEMBED_TEST_USER, "
                       "CBEMBED_TEST_PASSWORD, CBEMBED_TEST_BUCKET to run against a real "
                       "cluster"),
]
DOCS = {
    "cbembed-live-ski": ("Alpine Lodge", "Ski-in ski-out chalet with a fireplace", "hotel"),
    "cbembed-live-sea": ("Quiet Dunes Inn", "A quiet beach hotel with sea views", "hotel"),
    "cbembed-live-bar": ("Old Town Hostel", "Dorm beds above a lively bar", "hostel"),
}


def test_live_apply_check_and_hybrid(minilm: Encoder) -> None:  # pragma: no cover - cluster
    from couchbase.auth import PasswordAuthenticator
    from couchbase.cluster import Cluster
    from couchbase.options import ClusterOptions

    assert LIVE is not None
    bucket = os.environ.get("CBEMBED_TEST_BUCKET", "default")
    user = os.environ.get("CBEMBED_TEST_USER", "Administrator")
    password = os.environ.get("CBEMBED_TEST_PASSWORD", "password")
    name = f"cbembed_live_{int(time.time())}"
    s = load_settings(storage=LIVE, couchbase={"username": user, "password": password},
                      pipelines=[{"name": "live", "keyspace": f"{bucket}._default._default",
                                  "template": "{name}. {description}",
                                  "filter": {"type": {"in": ["hotel", "hostel"]}},
                                  "index": {"name": name, "gsi": "none"}}])
    p = s.pipelines[0]
    cluster = Cluster(LIVE, ClusterOptions(PasswordAuthenticator(user, password)))
    cluster.wait_until_ready(timedelta(seconds=20))
    coll = cluster.bucket(bucket).default_collection()
    scope = cluster.bucket(bucket).default_scope()
    try:
        vecs = minilm.encode([f"{n}. {d}" for n, d, _ in DOCS.values()], normalize=True).vectors
        for (key, (title, desc, kind)), vec in zip(DOCS.items(), vecs, strict=True):
            coll.upsert(key, {"name": title, "description": desc, "type": kind,
                              "embedding": vector_json(vec)})
        version = detect_server_version(cluster)
        if version is not None and version < ServerVersion(7, 6, 4):
            pytest.skip(f"needs Server 7.6.4+ (pre-filters), this is {version}")
        actions, _ = apply_indexes(cluster, s, {"live": 384}, server_version=version)
        assert [a.action for a in actions] == ["created"], actions
        assert check_indexes(cluster, s, {"live": 384}, version)
        deadline = time.monotonic() + 90
        hits: list[SearchHit] = []
        while time.monotonic() < deadline:  # the Search index ingests asynchronously
            hits = qh.hybrid_search(cluster, p, "skiing holiday", k=3, filter={"type": "hotel"},
                                    fields=["name"])
            if hits and hits[0].id == "cbembed-live-ski":
                break
            time.sleep(2)
        assert hits and hits[0].id == "cbembed-live-ski" and hits[0].ranks
        assert all(h.id != "cbembed-live-bar" for h in hits)  # the pre-filter held
        one = qh.hybrid_search(scope, p, "skiing holiday", k=3, fusion="server")
        assert "cbembed-live-ski" in {h.id for h in one}
    finally:
        for key in DOCS:  # best-effort cleanup
            with contextlib.suppress(Exception):
                coll.remove(key)
        with contextlib.suppress(Exception):
            scope.search_indexes().drop_index(name)
        cluster.close()
