"""Find an encoder class by `kind`: the built-ins, then the `cbembed.encoders` entry points.

A third-party package adds an encoder by declaring, in its pyproject:

    [project.entry-points."cbembed.encoders"]
    my-kind = "my_package.module:MyEncoder"

Loaded encoders are shared per (kind, model, device, options) so a model is loaded once.
"""

from __future__ import annotations

import importlib
import json
import threading
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from connector.errors import EncoderNotFoundError

if TYPE_CHECKING:
    from connector.config import EncoderConfig
    from encoders.base import Encoder

ENTRY_POINT_GROUP = "cbembed.encoders"

_BUILTIN: dict[str, str] = {
    "sentence-transformers": "encoders.sentence_transformers_text:SentenceTransformerEncoder",
    "open-clip": "encoders.open_clip_image:OpenClipEncoder",
    "audio-transformers": "encoders.audio_transformers:AudioTransformersEncoder",
}
_INSTALL_HINT = {
    "open-clip": "pip install 'cbembed[images]'",
    "audio-transformers": "pip install 'cbembed[audio]'",
}

_cache: dict[str, Encoder] = {}
_lock = threading.Lock()


def available_kinds() -> list[str]:
    kinds = set(_BUILTIN)
    kinds.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(kinds)


def encoder_class(kind: str) -> type[Encoder]:
    target = _BUILTIN.get(kind)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == kind:
                return ep.load()  # type: ignore[no-any-return]
        raise EncoderNotFoundError(
            f"no encoder of kind {kind!r} is installed (known: {', '.join(available_kinds())})"
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        hint = _INSTALL_HINT.get(kind, "")
        raise EncoderNotFoundError(
            f"encoder {kind!r} needs a package that is missing ({e.name}). {hint}".strip()
        ) from e
    return getattr(module, attr)  # type: ignore[no-any-return]


def _cache_key(config: EncoderConfig) -> str:
    return json.dumps(
        [config.kind, config.model, config.device, config.options], sort_keys=True, default=str
    )


def load_encoder(config: EncoderConfig) -> Encoder:
    """Create (or reuse) the encoder a pipeline's config names. Thread-safe."""
    key = _cache_key(config)
    with _lock:
        enc = _cache.get(key)
        if enc is None:
            cls = encoder_class(config.kind)
            enc = cls(config.model, device=config.device, options=dict(config.options))  # type: ignore[call-arg]
            _cache[key] = enc
        return enc


def register_instance(config: EncoderConfig, encoder: Any) -> None:
    """Put an already-built encoder in the cache (tests, embedding applications)."""
    with _lock:
        _cache[_cache_key(config)] = encoder
