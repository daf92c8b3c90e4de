"""Pluggable encoders: sentence-transformers text, open-clip images, audio models."""

from encoders.base import Encoder, EncodeResult, Modality, l2_normalize
from encoders.registry import ENTRY_POINT_GROUP, available_kinds, encoder_class, load_encoder

__all__ = [
    "ENTRY_POINT_GROUP",
    "EncodeResult",
    "Encoder",
    "Modality",
    "available_kinds",
    "encoder_class",
    "l2_normalize",
    "load_encoder",
]
