"""Pipeline throughput vs plain `model.encode`, and memory over a long backfill, in one run.

    python bench/bench_pipeline.py [--texts 3000] [--batch 32] [--rounds 3] [--memory-docs 50000]

1. The same texts, at the same batch size: plain `SentenceTransformer.encode` in a loop, then the
   whole embedded pipeline (feed -> extract -> hash -> batch -> encode thread -> CAS write-back
   -> checkpoints). Prints both rates and their ratio (target >= 0.9).
2. `--memory-docs` small documents through the pipeline while a sampler records the process's
   resident memory: prints RSS after 20%, 50% and 100% of the documents and the peak. Bounded
   queues keep it flat (RSS does not grow with the number of documents).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import psutil

from connector.config import load_settings
from connector.embedded import EmbeddedDatabase
from connector.service import run_until_idle
from encoders.registry import load_encoder

WORDS = [
    "the",
    "a",
    "quiet",
    "bright",
    "hotel",
    "room",
    "view",
    "river",
    "old",
    "town",
    "station",
    "breakfast",
    "garden",
    "sea",
    "mountain",
    "family",
    "business",
    "pool",
    "spa",
    "bar",
    "museum",
    "market",
    "trail",
    "coffee",
    "terrace",
]


def texts(n: int, seed: int, words: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {"title": " ".join(rng.choices(WORDS, k=3)), "body": " ".join(rng.choices(WORDS, k=words))}
        for _ in range(n)
    ]


def settings_for(db: Path, batch: int):
    return load_settings(
        storage=f"embedded://{db}",
        pipelines=[{"name": "bench", "keyspace": "bench.s.docs", "template": "{title}. {body}"}],
        connector={"max_batch": batch, "max_wait_ms": 20, "poll_interval_s": 0.05},
    )


def throughput(n: int, batch: int, rounds: int, workdir: Path) -> None:
    """Plain encode and the pipeline, alternated `rounds` times (so a neighbour's load hits
    both alike); prints every round and the median ratio."""
    import statistics

    docs = texts(n, 1, 30)
    inputs = [f"{d['title']}. {d['body']}" for d in docs]
    enc = load_encoder(settings_for(workdir / "warm.db", batch).pipelines[0].encoder)
    enc.encode(inputs[:batch], normalize=True)  # warm-up
    print(f"texts={n} batch={batch} torch_threads={__import__('torch').get_num_threads()}")
    from concurrent.futures import ThreadPoolExecutor

    def plain_rate() -> float:
        t = time.perf_counter()
        for i in range(0, n, batch):
            enc.encode(inputs[i : i + batch], normalize=True)
        return n / (time.perf_counter() - t)

    worker = ThreadPoolExecutor(1)  # the pipeline encodes on a worker thread: compare alike
    ratios = []
    for r in range(rounds):
        plain_main = plain_rate()
        plain = worker.submit(plain_rate).result()
        settings = settings_for(workdir / f"throughput-{r}.db", batch)
        db = EmbeddedDatabase(settings.embedded_path)
        db.upsert_many("bench.s.docs", ((f"d{i}", d) for i, d in enumerate(docs)))
        t = time.perf_counter()
        summary = run_until_idle(settings)
        pipe = n / (time.perf_counter() - t)
        assert summary.pipelines["bench"]["embedded"] == n
        ratios.append(pipe / plain)
        print(f"round {r + 1}: plain model.encode {plain_main:7.1f} texts/s (main thread), "
              f"{plain:7.1f} (worker thread) | embedded pipeline {pipe:7.1f} texts/s | "
              f"ratio pipeline/plain(worker) {pipe / plain:.3f}")
    print(f"median ratio pipeline/plain: {statistics.median(ratios):.3f}  (target >= 0.9)")


def memory(n: int, batch: int, workdir: Path) -> None:
    settings = settings_for(workdir / "memory.db", batch)
    db = EmbeddedDatabase(settings.embedded_path)
    db.upsert_many("bench.s.docs", ((f"m{i}", d) for i, d in enumerate(texts(n, 2, 6))))
    proc = psutil.Process()
    samples: list[tuple[int, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            embedded = db.query("SELECT count(*) FROM derived")[0][0]
            samples.append((int(embedded), proc.memory_info().rss))
            time.sleep(0.5)

    load_encoder(settings.pipelines[0].encoder)
    base = proc.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    run_until_idle(settings)
    elapsed = time.perf_counter() - t
    done.set()
    sampler.join()
    samples.append((n, proc.memory_info().rss))

    def rss_at(fraction: float) -> float:
        target = fraction * n
        return next(r for c, r in samples if c >= target) / 2**20

    peak = max(r for _, r in samples) / 2**20
    print(
        f"memory: {n} documents in {elapsed:.1f} s ({n / elapsed:.0f} docs/s), "
        f"RSS before run {base / 2**20:.0f} MiB"
    )
    print(
        f"RSS at 20%: {rss_at(0.2):.0f} MiB  at 50%: {rss_at(0.5):.0f} MiB  "
        f"at 100%: {rss_at(1.0):.0f} MiB  peak: {peak:.0f} MiB  "
        f"growth 20%->100%: {rss_at(1.0) - rss_at(0.2):+.0f} MiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory-docs", type=int, default=50000, help="0 to skip")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory() as tmp:
        throughput(args.texts, args.batch, args.rounds, Path(tmp))
        if args.memory_docs:
            memory(args.memory_docs, args.batch, Path(tmp))


if __name__ == "__main__":
    main()
