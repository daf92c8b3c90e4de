"""kill -9 in the middle of embedding: after a restart every document has exactly the vector of
its latest content, deleted documents have none, and nothing was lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from connector.config import load_settings
from connector.embedded import EmbeddedDatabase
from connector.hashing import pipeline_fingerprint, source_hash
from tests.conftest import KEYSPACE, stored

N = 3000
WORDS = (
    "red blue green quiet loud small large wooden steel glass soft bright dark fast slow "
    "kettle lamp chair table bicycle guitar camera window garden river mountain"
).split()

CONFIG = """
storage = "embedded://{db}"
[connector]
checkpoint_interval_s = 0.1
max_batch = 32
poll_interval_s = 0.05
[embedded]
partitions = 32
[[pipelines]]
name = "products"
keyspace = "{ks}"
template = "{{title}}. {{body}}"
"""


def doc(rng: random.Random, version: int) -> dict:
    return {"title": " ".join(rng.choices(WORDS, k=3)),
            "body": " ".join(rng.choices(WORDS, k=12)), "version": version}


def embedded_count(db: EmbeddedDatabase) -> int:
    return int(db.query("SELECT count(*) FROM derived")[0][0])


def start(cfg: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "run", "--config", str(cfg), "--quiet", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def kill_when(db: EmbeddedDatabase, proc: subprocess.Popen, at_least: int) -> int:
    deadline = time.monotonic() + 240
    while embedded_count(db) < at_least:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the connector made no progress"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return embedded_count(db)


@pytest.mark.slow
def test_sigkill_mid_embedding_loses_nothing(tmp_path: Path, minilm) -> None:
    rng = random.Random(7)
    cfg = tmp_path / "cbembed.toml"
    cfg.write_text(CONFIG.format(db=tmp_path / "crash.db", ks=KEYSPACE))
    settings = load_settings(cfg)
    db = EmbeddedDatabase(settings.embedded_path)
    latest = {f"k{i:05d}": doc(rng, 0) for i in range(N)}
    db.upsert_many(KEYSPACE, latest.items())

    # First kill: mid-way through the backfill, while the application keeps writing.
    proc = start(cfg)
    while embedded_count(db) < 300:
        time.sleep(0.02)
    for key in rng.sample(sorted(latest), 200):
        latest[key] = doc(rng, 1)
        db.upsert(KEYSPACE, key, latest[key])
    at_kill = kill_when(db, proc, 900)
    assert 900 <= at_kill < N + 200, "the kill must land in the middle of the work"

    # Changes while the connector is down: updates and deletions.
    for key in rng.sample(sorted(latest), 150):
        latest[key] = doc(rng, 2)
        db.upsert(KEYSPACE, key, latest[key])
    for key in rng.sample(sorted(latest), 50):
        del latest[key]
        db.remove(KEYSPACE, key)

    # Second kill, soon after a restart (checkpoints are being written all the time).
    proc = start(cfg)
    kill_when(db, proc, at_kill + 300)

    # Restart and run until idle.
    r = subprocess.run(
        [sys.executable, "-m", "connector.cli", "run", "--config", str(cfg), "--quiet",
         "--until-idle"], capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr

    out = stored(db)
    assert set(out) == set(latest), "every live document, and only those, has a vector"
    fp = pipeline_fingerprint(settings.pipelines[0])
    texts = {k: f"{d['title']}. {d['body']}" for k, d in latest.items()}
    wrong = [k for k, t in texts.items() if out[k][0] != source_hash(fp, t.encode())]
    assert wrong == [], f"{len(wrong)} documents carry the hash of an older version"
    sample = rng.sample(sorted(latest), 300)
    want = minilm.encode([texts[k] for k in sample], normalize=True).vectors
    got = np.stack([np.frombuffer(out[k][1], dtype="<f4") for k in sample])
    assert np.allclose(got, want, atol=1e-4)
    assert db.query("SELECT count(*) FROM dead_letters")[0][0] == 0
