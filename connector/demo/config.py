"""The demo's configuration: the bundled travel corpus, one text pipeline, the embedded store."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_KEYSPACE = "demo.travel.listings"
DEMO_QUERIES = [
    "somewhere quiet to recover after a long hike",
    "kid friendly place near the sea",
    "rooftop pool",
    "Kyoto ryokan",
]


def data_file(name: str) -> Path:
    return Path(str(files("connector.demo").joinpath("data", name)))


def demo_toml(db_path: Path) -> str:
    config = db_path.with_suffix(".toml")
    return f"""# Written by `cbembed demo`. Try: cbembed search --config {config} "beach"
storage = "embedded://{db_path}"

[[pipelines]]
name = "travel"
keyspace = "{DEMO_KEYSPACE}"
template = "{{name}}. {{description}}"
vector_field = "embedding"
similarity = "cosine"
encoder = {{ kind = "sentence-transformers", model = "sentence-transformers/all-MiniLM-L6-v2" }}
"""
