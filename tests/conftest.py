"""Shared fixtures: the real MiniLM model (packaged weights), embedded stores in tmp dirs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from connector.config import EncoderConfig, Settings, load_settings  # noqa: E402
from connector.embedded import EmbeddedDatabase  # noqa: E402
from connector.service import run_until_idle  # noqa: E402,F401 - re-exported for tests
from encoders.base import Encoder  # noqa: E402
from encoders.registry import load_encoder  # noqa: E402

KEYSPACE = "shop.catalog.products"


@pytest.fixture(scope="session")
def minilm() -> Encoder:
    return load_encoder(EncoderConfig())


def make_settings(db: Path, **pipeline: Any) -> Settings:
    p = {"name": "products", "keyspace": KEYSPACE, "template": "{title}. {body}"}
    p.update(pipeline)
    return load_settings(
        storage=f"embedded://{db}",
        pipelines=[p],
        connector={"checkpoint_interval_s": 0.2, "max_wait_ms": 5, "poll_interval_s": 0.02},
        embedded={"partitions": 16},
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "store.db")


@pytest.fixture
def db(settings: Settings) -> EmbeddedDatabase:
    d = EmbeddedDatabase(settings.embedded_path, partitions=settings.embedded.partitions)
    yield d
    d.close()


def dead_letters(settings: Settings, pipeline: str | None = None) -> list[Any]:
    """The dead letters in the settings' storage (as `cbembed deadletter` lists them)."""
    import asyncio

    from connector.status import dead_letters as list_dead_letters

    return asyncio.run(list_dead_letters(settings, pipeline))


def stored(db: EmbeddedDatabase, pipeline: str = "products") -> dict[str, tuple[str, bytes]]:
    """key -> (source_hash, vector bytes) of what a pipeline wrote."""
    rows = db.query(
        "SELECT docs.key, derived.source_hash, derived.vector FROM derived "
        "JOIN docs ON docs.id = derived.doc_id WHERE derived.pipeline=?",
        (pipeline,),
    )
    return {k: (h, v) for k, h, v in rows}


class RacingEncoder(Encoder):
    """The real model, plus one application write (`race()`) while the first batch is being
    encoded: the write lands between the change being read and its vector being written back."""

    kind = "racing"
    modality = "text"

    def __init__(self, inner: Encoder, race: Any) -> None:
        self.inner, self.race, self.raced = inner, race, False

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode(self, inputs: Any, *, normalize: bool) -> Any:
        if not self.raced:
            self.raced = True
            self.race()
        return self.inner.encode(inputs, normalize=normalize)
