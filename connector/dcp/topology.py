"""Bucket configuration (the JSON of GET_CLUSTER_CONFIG) reduced to what DCP routing needs.

Pure. `client.py` parses every config it fetches and keeps the newest (`is_newer_than`, by
(revEpoch, rev)). A vbucket's active copy is `vBucketServerMap.vBucketMap[vb][0]`, an index into
`serverList` ("host:kvport"); the node's TLS KV port comes from the `nodesExt` entry with the
same host and `services.kv`. A host of `$HOST` stands for the address the config was fetched from.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from connector.dcp.connstr import HostPort
from connector.events import Keyspace


class TopologyError(ValueError):
    """A config without what DCP needs (no vbucket map, a vbucket without an active node)."""


@dataclass(frozen=True, slots=True)
class KvNode:
    host: str
    port: int
    tls_port: int | None = None

    def address(self, tls: bool) -> HostPort:
        if tls:
            if self.tls_port is None:
                raise TopologyError(f"node {self.host} advertises no kvSSL port")
            return HostPort(self.host, self.tls_port)
        return HostPort(self.host, self.port)


@dataclass(frozen=True, slots=True)
class BucketConfig:
    name: str
    uuid: str
    rev: int
    rev_epoch: int
    nodes: tuple[KvNode, ...]
    vbucket_map: tuple[int, ...]
    """Index into `nodes` of each vbucket's active copy (-1: none right now)."""
    manifest_uid: int = 0

    @property
    def num_vbuckets(self) -> int:
        return len(self.vbucket_map)

    @property
    def version(self) -> tuple[int, int]:
        return (self.rev_epoch, self.rev)

    def is_newer_than(self, other: BucketConfig | None) -> bool:
        return other is None or self.version > other.version

    def node_for(self, vb: int) -> KvNode:
        if not 0 <= vb < len(self.vbucket_map):
            raise TopologyError(f"vbucket {vb} outside 0..{len(self.vbucket_map) - 1}")
        idx = self.vbucket_map[vb]
        if idx < 0 or idx >= len(self.nodes):
            raise TopologyError(f"vbucket {vb} has no active node in config rev {self.rev}")
        return self.nodes[idx]

    def vbuckets_by_node(self, vbuckets: list[int] | None = None) -> dict[KvNode, list[int]]:
        out: dict[KvNode, list[int]] = {}
        for vb in range(self.num_vbuckets) if vbuckets is None else vbuckets:
            out.setdefault(self.node_for(vb), []).append(vb)
        return out


def _split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise TopologyError(f"serverList entry {text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def parse_bucket_config(raw: bytes | str | dict[str, Any], origin_host: str) -> BucketConfig:
    """Parse a bucket config; `origin_host` replaces `$HOST` placeholders."""
    doc: dict[str, Any] = json.loads(raw) if isinstance(raw, bytes | str) else raw
    vsm = doc.get("vBucketServerMap")
    if not isinstance(vsm, dict) or not vsm.get("vBucketMap"):
        raise TopologyError("config has no vBucketServerMap.vBucketMap (not a vbucket bucket?)")

    def fix(host: str) -> str:
        return origin_host if host in ("$HOST", "") else host.replace("$HOST", origin_host)

    tls_ports: dict[tuple[str, int], int | None] = {}
    ext_nodes: list[KvNode] = []
    for n in doc.get("nodesExt") or []:
        services = n.get("services") or {}
        host = fix(n.get("hostname", "$HOST"))
        if "kv" in services:
            tls_ports[(host, int(services["kv"]))] = services.get("kvSSL")
            ext_nodes.append(KvNode(host, int(services["kv"]), services.get("kvSSL")))
    server_list = vsm.get("serverList") or []
    nodes: list[KvNode] = []
    for entry in server_list:
        host, port = _split_hostport(entry)
        host = fix(host)
        nodes.append(KvNode(host, port, tls_ports.get((host, port))))
    if not nodes:
        nodes = ext_nodes
    vbmap = []
    for vb, chain in enumerate(vsm["vBucketMap"]):
        if not isinstance(chain, list) or not chain:
            raise TopologyError(f"vBucketMap entry {vb} is {chain!r}")
        vbmap.append(int(chain[0]))
    uid_text = doc.get("collectionsManifestUid")
    return BucketConfig(
        name=str(doc.get("name", "")),
        uuid=str(doc.get("uuid", "")),
        rev=int(doc.get("rev", 0)),
        rev_epoch=int(doc.get("revEpoch", 0)),
        nodes=tuple(nodes),
        vbucket_map=tuple(vbmap),
        manifest_uid=int(uid_text, 16) if isinstance(uid_text, str) and uid_text else 0,
    )


def vbucket_of(key: bytes, num_vbuckets: int) -> int:
    """The CRC32 hash KV uses to place a key (the collection prefix is not part of it)."""
    return ((zlib.crc32(key) >> 16) & 0x7FFF) % num_vbuckets


def parse_manifest(
    bucket: str, manifest: dict[str, Any]
) -> tuple[dict[int, Keyspace], dict[int, str]]:
    """GET_COLLECTIONS_MANIFEST JSON -> ({collection id: Keyspace}, {scope id: scope name}).
    Ids are hex strings in the manifest."""
    keyspaces: dict[int, Keyspace] = {}
    scopes: dict[int, str] = {}
    for scope in manifest.get("scopes", []):
        scopes[int(scope["uid"], 16)] = scope["name"]
        for coll in scope.get("collections", []):
            keyspaces[int(coll["uid"], 16)] = Keyspace(bucket, scope["name"], coll["name"])
    return keyspaces, scopes
