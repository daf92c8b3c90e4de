"""State shared by every handler of one test server, and the cluster/bucket config JSON.

Created by ``CouchbaseTestServer``; read by KV, DCP and HTTP handlers on the server loop and
by the test thread. Mutable counters are guarded by ``lock``; the store and faults have
their own locks.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .data import Store
from .faults import Faults

if TYPE_CHECKING:
    import asyncio

    from .dcp import DcpProducer


def parse_version(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.split("-")[0].split(".")[:3]]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


@dataclass
class CapturedRequest:
    """One HTTP request as the server received it (for golden-file tests)."""

    method: str
    path: str
    headers: dict[str, str]
    json_body: Any
    service: str = ""
    body: bytes = b""
    query: str = ""


@dataclass
class Ports:
    kv: int = 0
    mgmt: int = 0
    n1ql: int = 0
    fts: int = 0


@dataclass
class ServerContext:
    store: Store
    bucket: str
    username: str
    password: str
    server_version: str
    faults: Faults
    dcp_connection_manager_interval: float = 1.0
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"
    bucket_uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    rev: int = 1
    rev_epoch: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)
    http_requests: list[CapturedRequest] = field(default_factory=list)
    dcp_producers: dict[str, DcpProducer] = field(default_factory=dict)
    dcp_stats_log: list[Any] = field(default_factory=list)
    auth_mechanisms: list[str] = field(default_factory=list)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def version(self) -> tuple[int, int, int]:
        return parse_version(self.server_version)

    def at_least(self, *v: int) -> bool:
        return self.version >= tuple(v)

    @property
    def version_string(self) -> str:
        return f"{self.server_version}-0000-enterprise"

    def bump_rev(self) -> None:
        with self.lock:
            self.rev += 1

    # -- config ------------------------------------------------------------------------
    def cluster_capabilities(self) -> dict[str, list[str]]:
        n1ql = ["costBasedOptimizer", "indexAdvisor", "javaScriptFunctions", "inlineFunctions",
                "enhancedPreparedStatements"]
        if self.at_least(7, 6):
            n1ql.append("readFromReplica")
        caps: dict[str, list[str]] = {"n1ql": n1ql}
        if self.at_least(7, 6):
            caps["search"] = ["vectorSearch", "scopedSearchIndex"]
        return caps

    def bucket_capabilities(self) -> list[str]:
        caps = ["collections", "durableWrite", "tombstonedUserXAttrs", "couchapi",
                "subdoc.ReplicaRead", "subdoc.AccessDeleted", "subdoc.ReplaceBodyWithXattr",
                "subdoc.DocumentMacroSupport", "subdoc.ReviveDocument", "dcp", "cbhello",
                "touch", "cccp", "xdcrCheckpointing", "nodesExt", "xattr"]
        if self.at_least(7, 2):
            caps.append("dcp.IgnorePurgedTombstones")
        if self.at_least(7, 5):
            caps.append("rangeScan")
        return caps

    def node_services(self) -> dict[str, int]:
        p = self.ports
        return {"kv": p.kv, "mgmt": p.mgmt, "n1ql": p.n1ql, "fts": p.fts}

    def config(self, with_bucket: bool = True) -> dict[str, Any]:
        """The cluster config (CCCP) as KV GET_CLUSTER_CONFIG and NOT_MY_VBUCKET return it."""
        with self.lock:
            rev = self.rev
        cfg: dict[str, Any] = {
            "rev": rev,
            "revEpoch": self.rev_epoch,
            "nodesExt": [
                {"services": self.node_services(), "thisNode": True, "hostname": self.host}
            ],
            "clusterCapabilitiesVer": [1, 0],
            "clusterCapabilities": self.cluster_capabilities(),
        }
        if not with_bucket:
            return cfg
        with self.store.lock:
            manifest_uid = self.store.manifest.uid
        kv = f"{self.host}:{self.ports.kv}"
        cfg.update(
            {
                "name": self.bucket,
                "uuid": self.bucket_uuid,
                "bucketType": "membase",
                "nodeLocator": "vbucket",
                "collectionsManifestUid": f"{manifest_uid:x}",
                "ddocs": {"uri": f"/pools/default/buckets/{self.bucket}/ddocs"},
                "nodes": [
                    {
                        "couchApiBase": f"http://{self.host}:{self.ports.mgmt}/{self.bucket}",
                        "hostname": f"{self.host}:{self.ports.mgmt}",
                        "ports": {"direct": self.ports.kv},
                    }
                ],
                "vBucketServerMap": {
                    "hashAlgorithm": "CRC",
                    "numReplicas": 0,
                    "serverList": [kv],
                    "vBucketMap": [[0] for _ in range(self.store.num_vbuckets)],
                },
                "bucketCapabilitiesVer": "",
                "bucketCapabilities": self.bucket_capabilities(),
            }
        )
        return cfg

    def config_bytes(self, with_bucket: bool = True) -> bytes:
        return json.dumps(self.config(with_bucket)).encode()
