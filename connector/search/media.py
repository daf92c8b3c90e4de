"""Image and audio queries: a file path, raw bytes or a PIL image, decoded the way the
pipeline's loader decodes stored media, then embedded by the pipeline's encoder.

A query file is the caller's own input, so it is read from wherever it is (no source root);
the pipeline's `max_bytes` and `max_pixels` limits still apply.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from connector.config import PipelineConfig, SourceConfig
from connector.errors import SearchError, SourceError
from encoders.base import Encoder


def is_media_query(query: Any) -> bool:
    """bytes, a path object or a PIL image (a `str` is always text; arrays are vectors)."""
    if isinstance(query, bytes | bytearray | memoryview | PurePath):
        return True
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with the images extra
        return False
    return isinstance(query, Image.Image)


def load_query_media(query: Any, encoder: Encoder, pipeline: PipelineConfig) -> Any:
    """What `encoder.encode_query` takes for this image/audio query; SearchError if unusable."""
    modality = encoder.modality
    if modality not in ("image", "audio") or modality not in encoder.query_modalities:
        raise SearchError(f"pipeline {pipeline.name}: its encoder ({encoder.kind}) takes no "
                          "image or audio queries")
    cfg = pipeline.source or SourceConfig()
    try:
        if modality == "image" and not isinstance(query, bytes | bytearray | memoryview
                                                  | PurePath):
            from connector.sources.images import to_rgb

            return to_rgb(query)  # a PIL image
        data, where = _query_bytes(query, cfg.max_bytes)
        if modality == "image":
            from connector.sources.images import decode_image

            return decode_image(data, where=where, max_pixels=cfg.max_pixels)
        from connector.sources.audio import decode_audio

        return decode_audio(data, where=where,
                            target_rate=int(getattr(encoder, "sampling_rate", 16_000)))
    except SourceError as e:
        raise SearchError(f"query {modality}: {e}") from None


def _query_bytes(query: Any, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(query, PurePath):
        try:
            with open(query, "rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            raise SourceError(f"{query}: {e.strerror}", kind="not_found") from None
        where = str(query)
    elif isinstance(query, bytes | bytearray | memoryview):
        data, where = bytes(query), "query bytes"
    else:
        raise SourceError(f"a {type(query).__name__} is not an audio query (give a path or "
                          "bytes)", kind="unsupported")
    if len(data) > max_bytes:
        raise SourceError(f"{where}: over the limit of {max_bytes} bytes", kind="too_large")
    return data, where
