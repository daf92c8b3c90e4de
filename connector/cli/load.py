"""`cbembed load FILE.jsonl --keyspace K [--key-field F]`: write documents into the storage."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from connector.backends import open_embedded
from connector.config import load_settings
from connector.errors import ConfigError
from connector.events import Keyspace


def register(sub: Any) -> None:
    from connector.cli import add_config_option

    p = sub.add_parser("load", help="load a JSON-lines file into a keyspace")
    add_config_option(p)
    p.add_argument("file", type=Path, help="JSON lines, one document per line")
    p.add_argument("--keyspace", required=True, help="bucket.scope.collection")
    p.add_argument("--key-field", default="id", help="field holding the document key (id)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=handle)


def read_jsonl(
    path: Path, key_field: str, problems: list[str]
) -> Iterator[tuple[str, Any]]:
    """Yield (key, document) per good line; each bad line adds 'FILE:LINE: reason'."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{n}: not JSON ({e.msg} at column {e.colno})")
                continue
            key = doc.get(key_field) if isinstance(doc, dict) else None
            if not isinstance(key, str | int) or isinstance(key, bool) or key == "":
                problems.append(f"{path}:{n}: no usable key in field {key_field!r}")
                continue
            yield str(key), doc


def load_file(
    settings: Any, path: Path, keyspace: str, key_field: str, *, progress: bool = True
) -> tuple[int, list[str]]:
    try:
        ks = Keyspace.parse(keyspace)
    except ValueError as e:
        raise ConfigError([("--keyspace", str(e))]) from None
    if not path.is_file():
        raise ConfigError([("FILE", f"{str(path)!r} does not exist")])
    if not settings.is_embedded:
        from connector.couchbase.loading import load_documents

        problems: list[str] = []
        n = load_documents(settings, ks, read_jsonl(path, key_field, problems), progress=progress)
        return n, problems
    db = open_embedded(settings)
    problems = []
    try:
        lines = read_jsonl(path, key_field, problems)
        bar = tqdm(lines, desc=f"loading {path.name}", unit="doc", disable=not progress)
        n = db.upsert_many(ks, bar)
        bar.close()
    finally:
        db.close()
    return n, problems


def handle(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    n, problems = load_file(
        settings, args.file, args.keyspace, args.key_field,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    for p in problems:
        print(f"cbembed: skipped {p}", file=sys.stderr)
    print(f"loaded {n} documents into {args.keyspace}" + (
        f"; {len(problems)} lines skipped" if problems else ""))
    return 1 if problems else 0
