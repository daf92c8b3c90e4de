"""`cbembed load / run / status / deadletter` against Couchbase (the test server), as a user
runs them: subprocesses, password from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cbserver import CouchbaseTestServer

CONFIG = """
storage = "{connstr}"
[couchbase]
timeout_s = 5
[connector]
poll_interval_s = 0.05
[[pipelines]]
name = "hotels"
keyspace = "default.inventory.hotels"
template = "{{name}}. {{description}}"
"""


def cbembed(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CBEMBED_COUCHBASE__PASSWORD": "password"}
    return subprocess.run([sys.executable, "-m", "connector.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_load_run_status_deadletter_on_couchbase(tmp_path: Path) -> None:
    with CouchbaseTestServer(collections={"inventory": ["hotels"]}, num_vbuckets=16) as srv:
        (tmp_path / "cbembed.toml").write_text(CONFIG.format(connstr=srv.connection_string))
        data = tmp_path / "hotels.jsonl"
        rows = [{"id": f"h{i}", "name": f"Hotel {i}", "description": f"{i} rooms by the sea"}
                for i in range(30)] + [{"id": "bad", "name": "No description"}]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        r = cbembed(tmp_path, "load", str(data), "--keyspace", "default.inventory.hotels")
        assert r.returncode == 0, r.stderr
        assert srv.get("inventory", "hotels", "h7").value["name"] == "Hotel 7"
        r = cbembed(tmp_path, "run", "--until-idle")
        assert r.returncode == 0, r.stderr
        assert "embedded=30" in r.stdout
        assert len(srv.get("inventory", "hotels", "h7").value["embedding"]) == 384
        status = json.loads(cbembed(tmp_path, "status", "--json").stdout)["pipelines"][0]
        assert (status["embedded"], status["failed"], status["dead_letters"]) == (30, 1, 1)
        assert status["lag"] == 0
        letters = json.loads(cbembed(tmp_path, "deadletter", "--json").stdout)["dead_letters"]
        assert [(d["key"], d["kind"]) for d in letters] == [("bad", "missing_field")]


def test_missing_password_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "cbembed.toml").write_text(CONFIG.format(connstr="couchbase://127.0.0.1:1"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBEMBED_")}
    r = subprocess.run([sys.executable, "-m", "connector.cli", "run", "--until-idle"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "CBEMBED_COUCHBASE__PASSWORD" in r.stderr
    assert "Traceback" not in r.stderr
