import subprocess
import sys
from pathlib import Path

import pytest

from connector.config import load_settings
from connector.errors import ConfigError

GOOD = """
storage = "embedded://data/store.db"
[connector]
max_batch = 16
[[pipelines]]
name = "hotels"
keyspace = "travel.inventory.hotels"
template = "{name}. {description}"
filter = { type = "hotel", rating = { gte = 3 } }
vector_field = "vec"
similarity = "dot"
encoder = { kind = "sentence-transformers", model = "sentence-transformers/all-MiniLM-L6-v2" }
"""


def test_toml_file_is_read_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    f = tmp_path / "cbembed.toml"
    f.write_text(GOOD)
    s = load_settings(f)
    p = s.pipelines[0]
    assert (p.name, p.vector_field, p.similarity) == ("hotels", "vec", "dot")
    assert p.filter is not None and p.filter.matches({"type": "hotel", "rating": 4})
    assert not p.filter.matches({"type": "hotel", "rating": 2})
    assert s.connector.max_batch == 16
    assert s.embedded_path == (tmp_path / "data" / "store.db").resolve()


def test_environment_overrides_file_and_carries_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "cbembed.toml"
    f.write_text(GOOD)
    monkeypatch.setenv("CBEMBED_CONNECTOR__MAX_BATCH", "64")
    monkeypatch.setenv("CBEMBED_COUCHBASE__PASSWORD", "s3cret")
    monkeypatch.setenv("CBEMBED_STORAGE", "couchbase://db.example.com")
    s = load_settings(f)
    assert s.connector.max_batch == 64
    assert s.couchbase.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.storage == "couchbase://db.example.com"


BAD = """
storage = "mongodb://x"
[connector]
member = 3
members = 2
[[pipelines]]
name = "1bad"
keyspace = "travel.hotels"
template = "{name"
similarity = "cos"
filter = { rating = { like = 3 } }
unknown_key = 1
"""


def test_every_problem_reported_with_its_path(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(BAD)
    with pytest.raises(ConfigError) as e:
        load_settings(f)
    paths = dict(e.value.problems)
    assert "storage" in paths
    assert "pipelines.0.name" in paths
    assert "bucket.scope.collection" in paths["pipelines.0.keyspace"]
    assert "unbalanced" in paths["pipelines.0.template"]
    assert "pipelines.0.similarity" in paths
    assert "unknown operator 'like'" in paths["pipelines.0.filter"]
    assert "pipelines.0.unknown_key" in paths
    assert str(f) in str(e.value)


def test_cross_field_rules(tmp_path: Path) -> None:
    two = [
        {"name": "a", "keyspace": "b.s.c", "template": "{x}"},
        {"name": "a", "keyspace": "b.s.c", "template": "{y}", "vector_field": "v2"},
    ]
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(storage=f"embedded://{tmp_path}/x.db", pipelines=two)
    same_target = [two[0], {**two[1], "name": "b", "vector_field": "embedding"}]
    with pytest.raises(ConfigError, match="same vector field"):
        load_settings(storage=f"embedded://{tmp_path}/x.db", pipelines=same_target)
    with pytest.raises(ConfigError, match="template"):
        load_settings(pipelines=[{"name": "a", "keyspace": "b.s.c"}])


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text("storage = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_cli_prints_config_errors_without_traceback(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(BAD)
    r = subprocess.run(
        [sys.executable, "-m", "connector.cli", "status", "--config", str(f)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "pipelines.0.template" in r.stderr
