"""DCP over loopback from the Couchbase test server, and the end-to-end rate with the real model.

The test server runs in its own process (its CPU is not ours). Prints, in one run:
1. DcpClient: events/s streaming N documents from zero over loopback (decode + flow control),
   and the client's CPU seconds per event (the one-core figure; target >= 100,000 events/s);
2. the connector's feed (DcpFeed: xattr metadata parsed, bounded queue) with the encoder
   switched off: events/s;
3. the whole connector with the real MiniLM model: documents/s from DCP to SDK write-back.

    python bench/bench_couchbase.py [--events 50000] [--docs 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.config import load_settings  # noqa: E402
from connector.couchbase.feed import DcpFeed  # noqa: E402
from connector.dcp import DcpClient, DcpSettings  # noqa: E402
from connector.events import ChangeEvent, Keyspace  # noqa: E402
from connector.service import run_until_idle  # noqa: E402


def serve(n_events: int, n_docs: int, ready: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    from tests.cbserver import CouchbaseTestServer

    srv = CouchbaseTestServer(collections={"bench": ["events", "docs"]}, num_vbuckets=64).start()
    body = {"name": "Harbour Hotel", "description": "A quiet room with a sea view, breakfast "
            "on the terrace, a short walk from the old town and the station.", "stars": 4}
    for i in range(n_events):
        srv.upsert("bench", "events", f"e{i:07d}", {**body, "n": i},
                   system_xattrs={"_cbembed": {"other": {"h": "x" * 32}}} if i % 5 == 0 else None)
    for i in range(n_docs):
        srv.upsert("bench", "docs", f"d{i:06d}", {"name": f"Hotel {i}",
                   "description": f"room {i} with a view of the harbour and the hills"})
    ready.put(srv.connection_string)
    stop.wait()
    srv.stop()


async def raw_client(connstr: str, n: int) -> tuple[float, float]:
    client = DcpClient(DcpSettings(connection_string=connstr, username="Administrator",
                                   password="password", bucket="default",
                                   connection_name="bench/raw"))
    await client.connect()
    seen = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    stream = client.stream(range(client.num_vbuckets), {}, ["bench.events"])
    async for item in stream:
        if isinstance(item, ChangeEvent):
            seen += 1
            if seen == n:
                break
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await stream.aclose()
    await client.close()
    return n / wall, n / cpu


async def feed_only(connstr: str, n: int) -> float:
    client = DcpClient(DcpSettings(connection_string=connstr, username="Administrator",
                                   password="password", bucket="default",
                                   connection_name="bench/feed"))
    await client.connect()
    feed = DcpFeed(client, [Keyspace("default", "bench", "events")], range(64),
                   meta_xattr="_cbembed", poll_interval_s=1.0)
    seen = 0
    t0 = time.perf_counter()
    async for item in feed.stream({}):
        if isinstance(item, ChangeEvent):
            seen += 1
            if seen == n:
                break
    rate = n / (time.perf_counter() - t0)
    await feed.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--docs", type=int, default=2000)
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ctx = mp.get_context("spawn")
    ready: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    stop = ctx.Event()
    proc = ctx.Process(target=serve, args=(args.events, args.docs, ready, stop), daemon=True)
    proc.start()
    connstr = ready.get(timeout=600)
    try:
        wall, per_cpu = asyncio.run(raw_client(connstr, args.events))
        print(f"DCP client over loopback : {wall:9.0f} events/s wall, {per_cpu:9.0f} events per "
              f"client CPU-second (target >= 100,000)")
        print(f"connector feed, no model : {asyncio.run(feed_only(connstr, args.events)):9.0f} "
              "events/s")
        settings = load_settings(
            storage=connstr, couchbase={"password": "password"},
            pipelines=[{"name": "bench", "keyspace": "default.bench.docs",
                        "template": "{name}. {description}"}],
            connector={"poll_interval_s": 0.2},
        )
        from encoders.registry import load_encoder

        load_encoder(settings.pipelines[0].encoder)
        t0 = time.perf_counter()
        summary = run_until_idle(settings)
        rate = args.docs / (time.perf_counter() - t0)
        print(f"end to end, MiniLM on CPU: {rate:9.1f} documents/s "
              f"({summary.pipelines['bench']['embedded']} embedded and written back)")
    finally:
        stop.set()
        proc.join(10)


if __name__ == "__main__":
    main()
