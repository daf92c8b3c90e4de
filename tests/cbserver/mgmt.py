"""Cluster manager (ns_server) endpoints the SDK and tools may call, on the mgmt port.

Runs on the server loop (called by ``http.serve_http``). Covers ``GET /`` (ping), ``/pools``
(implementationVersion), ``/pools/default`` (nodes with version and services),
``/pools/default/buckets[/<b>]``, ``/pools/default/b/<b>`` (the bucket config) and the
collections manifest endpoints ``/pools/default/buckets/<b>/scopes[...]``.
"""

from __future__ import annotations

from .context import ServerContext
from .http import HttpReply, HttpRequest
from .manifest import ManifestError


def _node(ctx: ServerContext) -> dict[str, object]:
    return {
        "hostname": f"{ctx.host}:{ctx.ports.mgmt}",
        "thisNode": True,
        "version": ctx.version_string,
        "status": "healthy",
        "clusterMembership": "active",
        "services": ["fts", "index", "kv", "n1ql"],
        "ports": {"direct": ctx.ports.kv},
        "nodeUUID": ctx.bucket_uuid[:16],
    }


def _bucket(ctx: ServerContext) -> dict[str, object]:
    cfg = ctx.config()
    cfg.update({
        "bucketType": "membase",
        "storageBackend": "couchstore",
        "evictionPolicy": "valueOnly",
        "durabilityMinLevel": "none",
        "replicaNumber": 0,
        "quota": {"ram": 100 * 1024 * 1024, "rawRAM": 100 * 1024 * 1024},
        "controllers": {"flush": f"/pools/default/buckets/{ctx.bucket}/controller/doFlush"},
        "nodes": [_node(ctx)],
        "maxTTL": 0,
        "compressionMode": "passive",
        "conflictResolutionType": "seqno",
        "numVBuckets": ctx.store.num_vbuckets,
    })
    return cfg


async def route(ctx: ServerContext, req: HttpRequest) -> HttpReply:
    parts = req.parts()
    if not parts and req.method == "GET":
        return HttpReply(200, {})
    if parts == ["pools"]:
        return HttpReply(200, {
            "isAdminCreds": True, "isEnterprise": True, "uuid": ctx.bucket_uuid,
            "implementationVersion": ctx.version_string,
            "componentsVersion": {"ns_server": ctx.version_string},
            "pools": [{"name": "default", "uri": "/pools/default?uuid=" + ctx.bucket_uuid}],
        })
    if parts == ["pools", "default"]:
        return HttpReply(200, {
            "name": "default", "nodes": [_node(ctx)],
            "buckets": {"uri": "/pools/default/buckets"},
            "clusterName": "cbembed-test", "balanced": True,
        })
    if parts == ["pools", "default", "nodeServices"]:
        cfg = ctx.config(with_bucket=False)
        return HttpReply(200, {"rev": cfg["rev"], "nodesExt": cfg["nodesExt"]})
    if parts == ["pools", "default", "buckets"]:
        return HttpReply(200, [_bucket(ctx)])
    if len(parts) >= 4 and parts[:3] in (["pools", "default", "buckets"],
                                          ["pools", "default", "b"]):
        if parts[3] != ctx.bucket:
            return HttpReply(404, "Requested resource not found.\r\n", "text/plain")
        rest = parts[4:]
        if not rest:
            return HttpReply(200, ctx.config() if parts[2] == "b" else _bucket(ctx))
        if rest[0] == "scopes":
            return _collections(ctx, req, rest[1:])
    return HttpReply(404, "Not found.", "text/plain")


def _collections(ctx: ServerContext, req: HttpRequest, rest: list[str]) -> HttpReply:
    store = ctx.store
    try:
        if req.method == "GET" and not rest:
            with store.lock:
                return HttpReply(200, store.manifest.to_json())
        if req.method == "POST" and not rest:
            store.create_scope(req.form().get("name", ""))
        elif req.method == "DELETE" and len(rest) == 1:
            store.drop_scope(rest[0])
        elif req.method == "POST" and len(rest) == 2 and rest[1] == "collections":
            form = req.form()
            store.create_collection(rest[0], form.get("name", ""), int(form.get("maxTTL", 0)))
        elif req.method == "DELETE" and len(rest) == 3 and rest[1] == "collections":
            store.drop_collection(rest[0], rest[2])
        else:
            return HttpReply(404, "Not found.", "text/plain")
    except ManifestError as err:
        text = str(err)
        return HttpReply(400 if "already exists" in text else 404, {"errors": {"_": text}})
    ctx.bump_rev()
    with store.lock:
        return HttpReply(200, {"uid": f"{store.manifest.uid:x}"})
