"""What a pipeline hands its encoder: text as extracted, or media loaded from a source.

`input_loader` picks the loader for a pipeline's encoder modality. Loaders run on the encode
thread and raise `SourceError` for an input that cannot be used (it becomes a dead letter):

    text    None (the extracted text goes to the encoder as it is)
    image   SourceRef -> bytes (file under the root, URL, inline) -> RGB PIL image
    audio   SourceRef -> bytes -> mono float32 waveform at the encoder's `sampling_rate`
"""

from __future__ import annotations

import logging
from typing import Any

from connector.config import PipelineConfig, SourceConfig
from connector.errors import ConfigError, SourceError
from connector.pipeline import InputLoader
from connector.sources import SourceRef, default_content_types, read_bytes
from encoders.base import Encoder

log = logging.getLogger("cbembed.inputs")


def input_loader(pipeline: PipelineConfig, encoder: Encoder) -> InputLoader | None:
    where = f"pipelines.{pipeline.name}"
    if encoder.modality == "text":
        if pipeline.template is None or pipeline.source_field is not None \
                or pipeline.source is not None:
            raise ConfigError([(
                f"{where}.template",
                f"encoder {encoder.kind!r} embeds text: the pipeline needs a template, and no "
                "source_field or source",
            )])
        return None
    if encoder.modality not in ("image", "audio"):
        raise ConfigError([(
            f"{where}.encoder",
            f"encoder modality {encoder.modality!r} is not supported by this version",
        )])
    cfg = pipeline.source or SourceConfig()
    if pipeline.source_field is None and cfg.kind != "document":
        raise ConfigError([(
            f"{where}.source_field",
            f"encoder {encoder.kind!r} embeds {encoder.modality}: name the field holding it "
            "(source_field), or set source.kind = 'document' for binary documents",
        )])
    allowed = tuple(cfg.allowed_content_types or default_content_types(encoder.modality))
    if encoder.modality == "image":
        return ImageLoader(cfg, allowed)
    return AudioLoader(cfg, allowed, int(getattr(encoder, "sampling_rate", 16_000)))


class ImageLoader:
    """SourceRef -> RGB PIL image (encode thread)."""

    def __init__(self, cfg: SourceConfig, allowed: tuple[str, ...]) -> None:
        self.cfg, self.allowed = cfg, allowed

    def __call__(self, ref: SourceRef) -> Any:
        from connector.sources.images import decode_image

        try:
            data = read_bytes(ref, self.cfg, self.allowed)
            return decode_image(data, where=ref.where, max_pixels=self.cfg.max_pixels)
        except SourceError:
            raise
        except Exception as e:  # never let one input stop the encode stage
            raise _unexpected(ref, e) from e


class AudioLoader:
    """SourceRef -> mono float32 samples at the model's rate (encode thread)."""

    def __init__(self, cfg: SourceConfig, allowed: tuple[str, ...], rate: int) -> None:
        self.cfg, self.allowed, self.rate = cfg, allowed, rate

    def __call__(self, ref: SourceRef) -> Any:
        from connector.sources.audio import decode_audio

        try:
            data = read_bytes(ref, self.cfg, self.allowed)
            return decode_audio(data, where=ref.where, target_rate=self.rate)
        except SourceError:
            raise
        except Exception as e:  # never let one input stop the encode stage
            raise _unexpected(ref, e) from e


def _unexpected(ref: SourceRef, e: Exception) -> SourceError:
    log.warning("loading %s failed unexpectedly", ref.where, exc_info=True)
    return SourceError(f"{ref.where}: cannot be loaded ({type(e).__name__}: {e})",
                       kind="load_failed")
