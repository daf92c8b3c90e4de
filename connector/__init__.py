"""cbembed's connector: change feed -> pipelines -> write-back, and search helpers.

    from connector import load_settings, run_until_idle, Searcher
    settings = load_settings("cbembed.toml")
    run_until_idle(settings)
    hits = Searcher.from_settings(settings).hybrid("quiet room near the sea", k=5)

Names are imported on first use (PEP 562), so `import connector.errors` from the encoders
package does not pull in the whole connector (and cannot make an import cycle).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CbembedError": "connector.errors",
    "ConfigError": "connector.errors",
    "Connector": "connector.service",
    "DocumentError": "connector.errors",
    "EmbeddedDatabase": "connector.embedded.database",
    "EncoderConfig": "connector.config",
    "EncoderError": "connector.errors",
    "PipelineConfig": "connector.config",
    "RunSummary": "connector.service",
    "SearchError": "connector.errors",
    "SearchHit": "connector.search.results",
    "Searcher": "connector.search.searcher",
    "Settings": "connector.config",
    "StorageError": "connector.errors",
    "load_settings": "connector.config",
    "run_until_idle": "connector.service",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'connector' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
