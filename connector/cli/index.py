"""`cbembed index plan|apply|check`: the vector indexes of the pipelines on Couchbase.

    plan    print every Search index definition and GSI statement (no cluster needed)
    apply   create / update them (idempotent), build deferred GSI indexes that can be trained
    check   every index exists and matches its encoder (field, dimension, similarity); exit 1
            with every problem listed otherwise
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from connector.config import Settings, load_settings
from connector.errors import ConfigError
from index_defs.versions import ServerVersion


def register(sub: Any) -> None:
    from connector.cli import add_config_option

    p = sub.add_parser("index", help="vector indexes on Couchbase: plan, apply, check")
    isub = p.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    for name, handler, text in (
        ("plan", handle_plan, "print the index definitions the pipelines need"),
        ("apply", handle_apply, "create or update the indexes (idempotent)"),
        ("check", handle_check, "verify the indexes match the encoders"),
    ):
        a = isub.add_parser(name, help=text)
        add_config_option(a)
        a.add_argument("--server-version", metavar="X.Y.Z",
                       help="gate features for this Couchbase Server version (default: ask the "
                       "cluster; plan: no gating)")
        if name == "apply":
            a.add_argument("--replace", action="store_true",
                           help="drop and re-create a GSI vector index that differs")
        a.add_argument("--json", action="store_true", help="machine-readable output")
        a.set_defaults(handler=handler)


def _version(args: argparse.Namespace) -> ServerVersion | None:
    if not args.server_version:
        return None
    try:
        return ServerVersion.parse(args.server_version)
    except ValueError as e:
        raise ConfigError([("--server-version", str(e))]) from None


def encoder_dims(settings: Settings) -> dict[str, int]:
    """Each pipeline's vector dimension, from its (loaded) encoder."""
    from encoders.registry import load_encoder

    if not settings.pipelines:
        raise ConfigError([("pipelines", "no pipeline is configured")])
    return {p.name: load_encoder(p.encoder).dimension for p in settings.pipelines}


def _checked_first(settings: Settings, args: argparse.Namespace) -> ServerVersion | None:
    """What can be refused before loading models and connecting: storage, password, version."""
    from connector.couchbase import sdk

    if settings.is_embedded:
        raise ConfigError([("storage", "index apply/check need a couchbase:// storage (the "
                            "embedded store keeps its own search structures)")])
    sdk.cluster_options(settings)  # a missing password is a ConfigError now
    return _version(args)


def handle_plan(args: argparse.Namespace) -> int:
    from index_defs.plan import plan_indexes

    settings = load_settings(args.config)
    version = _version(args)
    plan = plan_indexes(settings, encoder_dims(settings), version)
    if args.json:
        print(json.dumps({
            "indexes": [{"pipeline": i.pipeline, "kind": i.kind, "name": i.name,
                         "keyspace": i.keyspace, "minimum_version": i.minimum_version,
                         "definition": i.definition,
                         "statement": i.gsi.create_statement() if i.gsi else None}
                        for i in plan.indexes],
            "skipped": [{"pipeline": p, "kind": k, "reason": r} for p, k, r in plan.skipped],
        }))
        return 0
    for i in plan.indexes:
        print(i.describe() + "\n")
    for pipeline, kind, reason in plan.skipped:
        print(f"-- {pipeline}: {kind} index skipped: {reason}")
    return 0


def handle_apply(args: argparse.Namespace) -> int:
    from connector.couchbase import sdk
    from connector.couchbase.index_manager import apply_indexes, detect_server_version

    settings = load_settings(args.config)
    version = _checked_first(settings, args)
    dims = encoder_dims(settings)
    cluster = sdk.connect_sync(settings)
    try:
        version = version or detect_server_version(cluster)
        actions, _plan = apply_indexes(cluster, settings, dims, server_version=version,
                                       replace=args.replace)
    finally:
        cluster.close()
    failed = [a for a in actions if a.action == "error"]
    if args.json:
        print(json.dumps({"server_version": str(version) if version else None, "actions": [
            {"pipeline": a.pipeline, "kind": a.kind, "name": a.name, "action": a.action,
             "detail": a.detail} for a in actions]}))
    else:
        for a in actions:
            print(a.line(), file=sys.stderr if a.action == "error" else sys.stdout)
    return 1 if failed else 0


def handle_check(args: argparse.Namespace) -> int:
    from connector.couchbase import sdk
    from connector.couchbase.index_manager import check_indexes, detect_server_version

    settings = load_settings(args.config)
    version = _checked_first(settings, args)
    dims = encoder_dims(settings)
    cluster = sdk.connect_sync(settings)
    try:
        lines = check_indexes(cluster, settings, dims, version or detect_server_version(cluster))
    finally:
        cluster.close()
    if args.json:
        print(json.dumps({"ok": lines}))
    else:
        for line in lines:
            print(line)
    return 0
