"""cbembed's connector: change feed -> pipelines -> write-back, and search helpers.

    from connector import load_settings, run_until_idle, Searcher
    settings = load_settings("cbembed.toml")
    run_until_idle(settings)
    hits = Searcher.from_settings(settings).hybrid("quiet room near the sea", k=5)
"""

from connector.config import EncoderConfig, PipelineConfig, Settings, load_settings
from connector.embedded.database import EmbeddedDatabase
from connector.errors import (
    CbembedError,
    ConfigError,
    DocumentError,
    EncoderError,
    SearchError,
    StorageError,
)
from connector.search import Searcher, SearchHit
from connector.service import Connector, RunSummary, run_until_idle

__all__ = [
    "CbembedError",
    "ConfigError",
    "Connector",
    "DocumentError",
    "EmbeddedDatabase",
    "EncoderConfig",
    "EncoderError",
    "PipelineConfig",
    "RunSummary",
    "SearchError",
    "SearchHit",
    "Searcher",
    "Settings",
    "StorageError",
    "load_settings",
    "run_until_idle",
]
