"""Connection strings, bucket configs and vbucket hashing."""

from __future__ import annotations

import json
import zlib

import pytest

from connector.dcp.connstr import HostPort, parse_connection_string
from connector.dcp.topology import TopologyError, parse_bucket_config, parse_manifest, vbucket_of
from connector.errors import ConfigError
from connector.events import Keyspace


@pytest.mark.parametrize(
    ("text", "tls", "hosts", "bucket", "options"),
    [
        ("couchbase://127.0.0.1", False, [("127.0.0.1", 11210)], None, {}),
        ("couchbase://127.0.0.1:12000", False, [("127.0.0.1", 12000)], None, {}),
        ("couchbases://db.example.com", True, [("db.example.com", 11207)], None, {}),
        ("couchbase://a,b:11300;c", False, [("a", 11210), ("b", 11300), ("c", 11210)], None, {}),
        (
            "couchbase://[::1]:11210,[fe80::2]",
            False,
            [("::1", 11210), ("fe80::2", 11210)],
            None,
            {},
        ),
        (
            "couchbase://h/travel-sample?kv_timeout=2500&network=external",
            False,
            [("h", 11210)],
            "travel-sample",
            {"kv_timeout": "2500", "network": "external"},
        ),
        ("couchbase://h:8091", False, [("h", 11210)], None, {}),  # management port -> KV
        ("couchbase://h:9000=http", False, [("h", 11210)], None, {}),
        ("couchbase://h:9000=mcd", False, [("h", 9000)], None, {}),
        ("127.0.0.1:11999", False, [("127.0.0.1", 11999)], None, {}),
        ("couchbase://h?x=a%2Cb&flag", False, [("h", 11210)], None, {"x": "a,b", "flag": ""}),
        ("couchbase://h,h", False, [("h", 11210)], None, {}),
    ],
)
def test_parse(text, tls, hosts, bucket, options):
    cs = parse_connection_string(text)
    assert cs.tls is tls
    assert [(h.host, h.port) for h in cs.hosts] == hosts
    assert cs.bucket == bucket and cs.options == options


@pytest.mark.parametrize(
    "text",
    [
        "http://h",
        "couchbase://",
        "couchbase://h:0",
        "couchbase://h:99999",
        "couchbase://::1",
        "couchbase://[::1",
        "couchbase://h=bogus",
        "couchbase://h:x",
    ],
)
def test_parse_errors(text):
    with pytest.raises(ConfigError):
        parse_connection_string(text)


def test_hostport_str():
    assert str(HostPort("::1", 5)) == "[::1]:5" and str(HostPort("a", 5)) == "a:5"


def config_doc(n_vb=8, rev=10, epoch=1):
    return {
        "rev": rev,
        "revEpoch": epoch,
        "name": "default",
        "uuid": "abc",
        "nodeLocator": "vbucket",
        "collectionsManifestUid": "1a",
        "nodesExt": [
            {"hostname": "$HOST", "thisNode": True, "services": {"kv": 11210, "kvSSL": 11207}},
            {"hostname": "10.0.0.2", "services": {"kv": 11210, "kvSSL": 11207, "mgmt": 8091}},
            {"hostname": "10.0.0.9", "services": {"mgmt": 8091}},  # no KV service
        ],
        "vBucketServerMap": {
            "hashAlgorithm": "CRC",
            "numReplicas": 1,
            "serverList": ["$HOST:11210", "10.0.0.2:11210"],
            "vBucketMap": [[vb % 2, (vb + 1) % 2] for vb in range(n_vb)],
        },
    }


def test_parse_bucket_config():
    cfg = parse_bucket_config(json.dumps(config_doc()).encode(), "192.168.1.5")
    assert cfg.num_vbuckets == 8 and cfg.manifest_uid == 0x1A and cfg.version == (1, 10)
    assert cfg.node_for(0).address(False) == HostPort("192.168.1.5", 11210)
    assert cfg.node_for(1).address(True) == HostPort("10.0.0.2", 11207)
    by_node = cfg.vbuckets_by_node([0, 1, 2, 3])
    assert sorted(by_node.values()) == [[0, 2], [1, 3]]


@pytest.mark.parametrize(
    ("a", "b", "newer"),
    [
        ((1, 10), (1, 9), True),
        ((1, 10), (1, 10), False),
        ((2, 1), (1, 99), True),
        ((1, 99), (2, 1), False),
    ],
)
def test_rev_epoch_ordering(a, b, newer):
    ca = parse_bucket_config(config_doc(epoch=a[0], rev=a[1]), "h")
    cb = parse_bucket_config(config_doc(epoch=b[0], rev=b[1]), "h")
    assert ca.is_newer_than(cb) is newer
    assert ca.is_newer_than(None)


def test_vbucket_without_active_node():
    doc = config_doc()
    doc["vBucketServerMap"]["vBucketMap"][3] = [-1, 0]
    cfg = parse_bucket_config(doc, "h")
    with pytest.raises(TopologyError):
        cfg.node_for(3)
    with pytest.raises(TopologyError):
        cfg.node_for(99)


def test_config_without_map():
    with pytest.raises(TopologyError):
        parse_bucket_config({"rev": 1}, "h")


def test_missing_tls_port():
    doc = config_doc()
    doc["nodesExt"][1]["services"].pop("kvSSL")
    cfg = parse_bucket_config(doc, "h")
    assert cfg.node_for(0).address(True) == HostPort("h", 11207)
    with pytest.raises(TopologyError):
        cfg.node_for(1).address(True)


@pytest.mark.parametrize("key", [b"hotel::1", b"a", b"", "ключ".encode()])
@pytest.mark.parametrize("n", [64, 1024])
def test_vbucket_hash(key, n):
    assert vbucket_of(key, n) == ((zlib.crc32(key) >> 16) & 0x7FFF) % n


def test_parse_manifest():
    manifest = {
        "uid": "3",
        "scopes": [
            {"name": "_default", "uid": "0", "collections": [{"name": "_default", "uid": "0"}]},
            {
                "name": "inventory",
                "uid": "8",
                "collections": [{"name": "hotels", "uid": "8"}, {"name": "photos", "uid": "a"}],
            },
        ],
    }
    keyspaces, scopes = parse_manifest("b", manifest)
    assert keyspaces == {
        0: Keyspace("b", "_default", "_default"),
        8: Keyspace("b", "inventory", "hotels"),
        10: Keyspace("b", "inventory", "photos"),
    }
    assert scopes == {0: "_default", 8: "inventory"}
    assert parse_manifest("b", {}) == ({}, {})
