"""Retrieval quality of the three search modes on the bundled travel corpus's judged queries.

    python bench/eval_search.py [--db PATH]

Prints recall@10 and MRR@10 for keyword, vector and hybrid (RRF and weighted), per query type.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from connector.config import load_settings
from connector.demo.config import DEMO_KEYSPACE, data_file
from connector.embedded import EmbeddedDatabase
from connector.search import Searcher
from connector.service import run_until_idle


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path)
    args = ap.parse_args()
    db_path = args.db or Path(tempfile.mkdtemp()) / "eval.db"
    settings = load_settings(
        storage=f"embedded://{db_path}",
        pipelines=[
            {"name": "travel", "keyspace": DEMO_KEYSPACE, "template": "{name}. {description}"}
        ],
    )
    db = EmbeddedDatabase(db_path)
    docs = [json.loads(line) for line in data_file("travel.jsonl").open()]
    db.upsert_many(DEMO_KEYSPACE, [(d["id"], d) for d in docs])
    run_until_idle(settings)
    searcher = Searcher.from_settings(settings)
    queries = [json.loads(line) for line in data_file("queries.jsonl").open()]
    groups = {
        "keyword-ish q01-q10": queries[:10],
        "meaning q11-q20": queries[10:20],
        "mixed q21-q30": queries[20:],
        "all": queries,
    }
    modes = {
        "keyword": lambda q: searcher.keyword(q, k=10),
        "vector": lambda q: searcher.vector(q, k=10),
        "hybrid-rrf": lambda q: searcher.hybrid(q, k=10),
        "hybrid-weighted": lambda q: searcher.hybrid(q, k=10, fusion="weighted"),
    }
    print(f"{'mode':<16} " + " ".join(f"{g:>22}" for g in groups))
    for name, run in modes.items():
        results = {q["qid"]: [h.id for h in run(q["query"])] for q in queries}
        cells = []
        for qs in groups.values():
            found = total = 0
            rr = 0.0
            for q in qs:
                got, rel = results[q["qid"]], set(q["relevant"])
                found += len(set(got) & rel)
                total += len(rel)
                rr += next((1 / (i + 1) for i, d in enumerate(got) if d in rel), 0.0)
            cells.append(f"R@10 {found / total:.2f} MRR {rr / len(qs):.2f}")
        print(f"{name:<16} " + " ".join(f"{c:>22}" for c in cells))
    searcher.close()


if __name__ == "__main__":
    main()
