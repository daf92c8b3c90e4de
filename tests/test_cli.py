"""The `cbembed` command line, run as a user would (subprocesses), on the embedded store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def cbembed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    cwd = tmp_path_factory.mktemp("demo")
    r = cbembed("demo", "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return cwd, json.loads(r.stdout)


def test_demo_summary(demo) -> None:
    cwd, out = demo
    assert out["loaded"] == 305
    assert out["run"]["embedded"] == 300 and out["run"]["failed"] == 5
    status = {p["name"]: p for p in out["pipelines"]}
    assert status["travel"]["dead_letters"] == 5 and status["travel"]["lag"] == 0
    # The image collection: 60 generated pictures, found by text through the tiny CLIP.
    assert status["photos"]["embedded"] == 60 and status["photos"]["dead_letters"] == 0
    assert out["photos"]["run"]["embedded"] == 60

    def colour_shape(text: str) -> list[str]:  # "a large red square on a ..." -> [red, square]
        return text.split(" on ")[0].split()[-2:]

    for q in out["photos"]["queries"]:  # "a red square": the top picture is a red square
        assert colour_shape(q["query"]) == colour_shape(q["hits"][0]["fields"]["caption"])
    first = {q["query"]: q["hits"][0] for q in out["queries"]}
    assert "Kyoto" in json.dumps(first["Kyoto ryokan"])
    assert all(q["hits"] and "ranks" in q["hits"][0] for q in out["queries"])
    assert (cwd / "cbembed-demo.toml").is_file()


def test_demo_again_skips_everything(demo) -> None:
    cwd, _ = demo
    again = json.loads(cbembed("demo", "--json", cwd=cwd).stdout)
    assert again["run"]["embedded"] == 0  # the corpus was loaded again, unchanged
    assert again["run"]["skipped_unchanged"] == 300
    travel = next(p for p in again["pipelines"] if p["name"] == "travel")
    assert travel["embedded"] == 300  # the totals persist
    assert again["photos"]["run"]["skipped_unchanged"] == 60  # pictures were not rewritten


def test_search_status_deadletter_json(demo) -> None:
    cwd, _ = demo
    cfg = str(cwd / "cbembed-demo.toml")
    r = cbembed("search", "--config", cfg, "ski chalet near the Matterhorn", "-k", "3",
                "--fields", "name,city", "--json", cwd=cwd)
    hits = json.loads(r.stdout)["hits"]
    assert len(hits) == 3 and hits[0]["fields"]["city"] == "Zermatt"
    r = cbembed("search", "--config", cfg, "museum", "--mode", "keyword", "--filter",
                '{"type": "landmark"}', "--fields", "type", "--json", cwd=cwd)
    assert {h["fields"]["type"] for h in json.loads(r.stdout)["hits"]} == {"landmark"}
    status = json.loads(cbembed("status", "--config", cfg, "--json", cwd=cwd).stdout)
    p = status["pipelines"][0]
    assert {"name", "embedded", "skipped_unchanged", "failed", "lag"} <= set(p)
    letters = json.loads(cbembed("deadletter", "--config", cfg, "--json", cwd=cwd).stdout)
    kinds = {d["key"]: d["kind"] for d in letters["dead_letters"]}
    assert kinds == {"hotel_0201": "missing_field", "hotel_0202": "wrong_type",
                     "hotel_0203": "missing_field", "hotel_0204": "wrong_type",
                     "landmark_0101": "empty_field"}


def test_bulk_search_one_line_per_query(demo) -> None:
    cwd, _ = demo
    q = cwd / "q.jsonl"
    q.write_text('{"qid": "a", "query": "rooftop pool"}\n\nnot json\n'
                 '{"qid": "b", "query": "jazz"}\n')
    r = cbembed("search", "--config", str(cwd / "cbembed-demo.toml"), "--queries", str(q),
                "--json", "-k", "2", cwd=cwd)
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["qid"] for x in lines] == ["a", "b"] and all(len(x["hits"]) == 2 for x in lines)
    assert r.returncode == 1 and "q.jsonl:3" in r.stderr


def test_load_reports_bad_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    cfg = tmp_path / "cbembed.toml"
    cfg.write_text('storage = "embedded://s.db"\n[[pipelines]]\nname = "p"\n'
                   'keyspace = "a.b.c"\ntemplate = "{t}"\n')
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": "1", "t": "one"}\n{"id": \n{"t": "no id"}\n{"id": 2, "t": "two"}\n')
    r = cbembed("load", str(data), "--keyspace", "a.b.c", cwd=tmp_path)
    assert r.returncode == 1
    assert "in.jsonl:2: not JSON" in r.stderr and "in.jsonl:3: no usable key" in r.stderr
    assert "loaded 2 documents" in r.stdout
    r = cbembed("run", "--until-idle", cwd=tmp_path)
    assert r.returncode == 0 and "embedded=2" in r.stdout
    r = cbembed("load", str(data), "--keyspace", "nodots", cwd=tmp_path)
    assert r.returncode == 2 and "bucket.scope.collection" in r.stderr
    assert "Traceback" not in r.stderr


def test_no_config_is_a_clear_error(tmp_path: Path) -> None:
    r = cbembed("run", "--until-idle", cwd=tmp_path)
    assert r.returncode == 2 and "no pipeline is configured" in r.stderr
