"""What a pipeline hands its encoder: text as extracted, or media loaded from a source.

`input_loader` picks the loader for a pipeline's encoder modality. Loaders run on the encode
thread and raise `SourceError` for an input that cannot be used (it becomes a dead letter).
"""

from __future__ import annotations

from connector.config import PipelineConfig
from connector.errors import ConfigError
from connector.pipeline import InputLoader
from encoders.base import Encoder


def input_loader(pipeline: PipelineConfig, encoder: Encoder) -> InputLoader | None:
    if encoder.modality == "text":
        if pipeline.template is None:
            raise ConfigError([(
                f"pipelines.{pipeline.name}.template",
                f"encoder {encoder.kind!r} embeds text: the pipeline needs a template",
            )])
        return None
    raise ConfigError([(
        f"pipelines.{pipeline.name}.encoder",
        f"encoder modality {encoder.modality!r} is not supported by this version",
    )])
