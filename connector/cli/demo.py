"""`cbembed demo`: load the bundled travel corpus and a gallery of generated pictures, embed
them (MiniLM for text, a tiny CLIP for pictures), show hybrid and text-to-image search, on the
embedded store. Runs again in seconds: unchanged documents are skipped by their source hash."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from connector.backends import open_embedded
from connector.cli.load import load_file
from connector.cli.run import run_connector
from connector.config import Settings, load_settings
from connector.demo.config import (
    DEMO_KEYSPACE,
    DEMO_QUERIES,
    PHOTO_QUERIES,
    PHOTOS_KEYSPACE,
    data_file,
    demo_toml,
)
from connector.demo.gallery import images_dir, write_gallery
from connector.search import Searcher
from connector.status import pipeline_status


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="load, embed and search a bundled travel corpus (no cluster)")
    p.add_argument("--db", type=Path, default=Path("cbembed-demo.db"),
                   help="embedded store to create (cbembed-demo.db); a config is written beside")
    p.add_argument("--fresh", action="store_true", help="delete an earlier demo store first")
    p.add_argument("-k", type=int, default=3, help="hits per query (3)")
    p.add_argument("--json", action="store_true", help="print one machine-readable summary")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    db = args.db.resolve()
    if args.fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    config_path = db.with_suffix(".toml")
    photos = _images_installed()
    config_path.write_text(demo_toml(db, photos=photos), encoding="utf-8")
    settings = load_settings(config_path)
    progress = not args.json and sys.stderr.isatty()
    say = (lambda *a: None) if args.json else print

    say(f"1. loading the bundled travel corpus into {DEMO_KEYSPACE} ({db.name})")
    loaded, problems = load_file(settings, data_file("travel.jsonl"), DEMO_KEYSPACE, "id",
                                 progress=progress)
    say(f"   {loaded} documents")
    pictures = images_dir(db)
    photos_loaded = _load_gallery(settings, pictures) if photos else 0
    if photos:
        say(f"   and {photos_loaded} generated pictures ({pictures.name}/) into "
            f"{PHOTOS_KEYSPACE}")
    else:
        say("   (no pictures: the image pipeline needs pip install 'cbembed[images]')")
    say("2. embedding every change: text with all-MiniLM-L6-v2, pictures with a tiny CLIP "
        "(the connector, until idle)")
    summary = asyncio.run(run_connector(settings, until_idle=True, progress=progress))
    run_stats = summary.this_run["travel"]
    photos_stats = summary.this_run.get("photos", {})
    for name, st in summary.this_run.items():
        say(f"   {name}, this run: embedded {st['embedded']}, skipped as unchanged "
            f"{st['skipped_unchanged']}, failed {st['failed']}")
    say(f"   ({summary.seconds:.1f} s)")

    searcher = Searcher.from_settings(settings)
    results = []
    photo_results: list[dict[str, Any]] = []
    try:
        say("3. hybrid search (keyword BM25 + vector, reciprocal-rank fusion)")
        for q in DEMO_QUERIES:
            hits = searcher.hybrid(q, k=args.k, fields=["name", "city", "type"])
            results.append({"query": q, "hits": [h.as_dict() for h in hits]})
            say(f'\n   "{q}"')
            for n, h in enumerate(hits, start=1):
                ranks = ", ".join(f"{leg} #{r}" for leg, r in h.ranks.items())
                say(f"     {n}. {h.fields['name']} ({h.fields['city']}, {h.fields['type']})"
                    f"  [{ranks}]")
        if photos:
            say("\n4. text-to-image search (the tiny CLIP: captions are not used, only pixels)")
        for q in PHOTO_QUERIES if photos else ():
            hits = searcher.vector(q, pipeline="photos", k=args.k, fields=["caption", "photo"])
            photo_results.append({"query": q, "hits": [h.as_dict() for h in hits]})
            say(f'\n   "{q}"')
            for n, h in enumerate(hits, start=1):
                say(f"     {n}. {h.fields['photo']}: {h.fields['caption']}  "
                    f"(cosine {h.score:.2f})")
    finally:
        searcher.close()

    status = asyncio.run(pipeline_status(settings))
    if args.json:
        print(json.dumps({
            "db": str(db), "config": str(config_path), "loaded": loaded,
            "load_problems": problems, "run": run_stats, "seconds": round(summary.seconds, 2),
            "pipelines": status, "queries": results,
            "photos": {"loaded": photos_loaded, "images": str(pictures), "run": photos_stats,
                       "queries": photo_results} if photos else None,
        }))
        return 0
    print("\n5. status:")
    for s in status:
        print(f"   {s['name']}: {s['embedded']} embedded in total, {s['dead_letters']} dead "
              "letters")
    print(f"   (cbembed deadletter --config {config_path})")
    print(f"   next: cbembed search --config {config_path} \"a romantic dinner with a view\"")
    if photos:
        print(f"         cbembed search --config {config_path} --pipeline photos "
              f"--image {pictures / 'shape-000.png'}")
    return 0


def _images_installed() -> bool:
    """The images extra (open_clip, Pillow) is importable: the demo then adds its pictures."""
    from importlib.util import find_spec

    return all(find_spec(m) is not None for m in ("open_clip", "PIL", "torchvision"))


def _load_gallery(settings: Settings, folder: Path) -> int:
    """Write the demo pictures (those missing) and one document per picture."""
    docs = write_gallery(folder)
    db = open_embedded(settings)
    try:
        return db.upsert_many(PHOTOS_KEYSPACE, docs)
    finally:
        db.close()
