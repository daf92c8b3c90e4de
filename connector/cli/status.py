"""`cbembed status` and `cbembed deadletter`: what the pipelines did, and what they could not do."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import Any

from connector.config import load_settings
from connector.status import dead_letters, pipeline_status


def register(sub: Any) -> None:
    from connector.cli import add_config_option

    p = sub.add_parser("status", help="per pipeline: embedded, skipped, failed, lag")
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=handle_status)

    d = sub.add_parser("deadletter", help="documents a pipeline could not handle, and why")
    add_config_option(d)
    d.add_argument("--pipeline", help="only this pipeline")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(handler=handle_deadletter)


def handle_status(args: argparse.Namespace) -> int:
    rows = asyncio.run(pipeline_status(load_settings(args.config)))
    if args.json:
        print(json.dumps({"pipelines": rows}))
        return 0
    for r in rows:
        print(f"{r['name']} ({r['keyspace']}, {r['model']})")
        for k in ("embedded", "skipped_unchanged", "skipped_filter", "failed", "dead_letters",
                  "removed", "cas_conflicts", "truncated", "lag"):
            print(f"  {k:<18} {r[k]}")
    return 0


def handle_deadletter(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.pipeline:
        settings.pipeline(args.pipeline)  # a clear error for an unknown name
    letters = asyncio.run(dead_letters(settings, args.pipeline))
    if args.json:
        print(json.dumps({"dead_letters": [
            {"pipeline": d.pipeline, "keyspace": d.keyspace, "key": d.key, "seqno": d.seqno,
             "cas": d.cas, "kind": d.kind, "reason": d.reason, "at": d.at} for d in letters
        ]}))
        return 0
    if not letters:
        print("no dead letters")
    for d in letters:
        when = dt.datetime.fromtimestamp(d.at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{d.pipeline}  {d.keyspace}  {d.key}  [{d.kind}] {d.reason}  ({when} UTC)")
    return 0
