"""`cbembed search TEXT`, `cbembed search --image FILE [TEXT]` and
`cbembed search --queries FILE.jsonl --json` (bulk, for evaluation)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from connector.config import load_settings
from connector.errors import ConfigError
from connector.search import Searcher


def register(sub: Any) -> None:
    from connector.cli import add_config_option

    p = sub.add_parser("search", help="vector, keyword or hybrid search over a pipeline")
    add_config_option(p)
    p.add_argument("text", nargs="?", help="the query")
    p.add_argument("--queries", type=Path,
                   help='JSON lines {"qid": ..., "query": ...}: one result line per query')
    p.add_argument("--image", type=Path, metavar="FILE",
                   help="search with an image (or audio clip) for pipelines whose encoder takes "
                   "one; with TEXT in hybrid mode, TEXT drives the keyword leg; alone: vector")
    p.add_argument("--mode", choices=["hybrid", "vector", "keyword"], default="hybrid")
    p.add_argument("-k", type=int, default=10, help="how many hits (10)")
    p.add_argument("--pipeline", help="which pipeline (default: the first)")
    p.add_argument("--filter", type=json.loads, help='JSON, e.g. \'{"type": "hotel"}\'')
    p.add_argument("--fields", default="", help="comma-separated fields to return")
    p.add_argument("--fusion", choices=["rrf", "weighted", "server"], default="rrf",
                   help="hybrid: rrf, weighted, or server (one Search-service request)")
    p.add_argument("--alpha", type=float, default=0.5, help="vector weight for weighted fusion")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=handle)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "pipeline": args.pipeline, "k": args.k, "filter": args.filter,
        "fields": [f for f in args.fields.split(",") if f] or None,
    }
    if args.mode == "hybrid":
        opts.update(fusion=args.fusion, alpha=args.alpha)
    return opts


def handle(args: argparse.Namespace) -> int:
    if args.image is not None:
        _check_image_args(args)
    elif (args.text is None) == (args.queries is None):
        raise ConfigError([("search", "give either a query TEXT or --queries FILE")])
    settings = load_settings(args.config)
    searcher = Searcher.from_settings(settings)
    try:
        if args.queries is not None:
            return _bulk(searcher, args)
        if args.image is not None and args.mode == "hybrid":
            hits = searcher.hybrid(args.text, image=args.image, **_options(args))
        elif args.image is not None:
            hits = searcher.vector(args.image, **_options(args))
        else:
            hits = searcher.search(args.mode, args.text, **_options(args))
        if args.json:
            print(json.dumps({"hits": [h.as_dict() for h in hits]}))
            return 0
        for n, h in enumerate(hits, start=1):
            extra = "  ".join(f"{k}={v}" for k, v in h.fields.items())
            ranks = " ".join(f"{leg}#{r}" for leg, r in h.ranks.items())
            print(f"{n:>3}. {h.id}  score={h.score:.4f}  {ranks}  {extra}".rstrip())
        return 0
    finally:
        searcher.close()


def _check_image_args(args: argparse.Namespace) -> None:
    if args.queries is not None:
        raise ConfigError([("--image", "cannot be combined with --queries")])
    if not args.image.is_file():
        raise ConfigError([("--image", f"{str(args.image)!r} is not a file")])
    if args.mode == "keyword":
        raise ConfigError([("--image", "needs --mode vector or hybrid")])
    if args.text is None:
        args.mode = "vector"  # hybrid needs TEXT for its keyword leg
    elif args.mode == "vector":
        raise ConfigError([("--image", "--mode vector takes TEXT or --image, not both")])


def _bulk(searcher: Searcher, args: argparse.Namespace) -> int:
    if not args.queries.is_file():
        raise ConfigError([("--queries", f"{str(args.queries)!r} does not exist")])
    bad = 0
    with args.queries.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                q = json.loads(line)
                text = q["query"]
            except (json.JSONDecodeError, KeyError, TypeError):
                print(f"cbembed: {args.queries}:{n}: expected a JSON object with a 'query'",
                      file=sys.stderr)
                bad += 1
                continue
            hits = searcher.search(args.mode, text, **_options(args))
            out = {"qid": q.get("qid", n), "query": text, "hits": [h.as_dict() for h in hits]}
            print(json.dumps(out), flush=True)
    return 1 if bad else 0
