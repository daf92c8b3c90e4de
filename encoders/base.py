"""The encoder seam: turn a batch of inputs (texts, images, audio clips) into float32 vectors.

An encoder is created once per process for a (kind, model, device) and then only called from
the pipeline's single encode thread (torch stays on that thread); `encode_query` is also called
by search helpers, from whatever thread they run on, one call at a time.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

Modality = Literal["text", "image", "audio"]


@dataclass(frozen=True, slots=True)
class EncodeResult:
    vectors: np.ndarray  # float32, shape (n, dimension)
    truncated: int = 0  # how many inputs were cut to the model's input limit


class Encoder(abc.ABC):
    """A loaded model. Subclasses set `kind` and `modality` and implement the abstract parts."""

    kind: ClassVar[str]
    modality: ClassVar[Modality]
    #: modalities `encode_query` accepts (CLIP: text and image share one space)
    query_modalities: ClassVar[tuple[Modality, ...]] = ("text",)

    @property
    @abc.abstractmethod
    def model_name(self) -> str:
        """The model id as configured (hub id or path): recorded beside each vector."""

    @property
    @abc.abstractmethod
    def dimension(self) -> int: ...

    @property
    def device(self) -> str:
        return "cpu"

    @abc.abstractmethod
    def encode(self, inputs: Sequence[Any], *, normalize: bool) -> EncodeResult:
        """Embed one batch of pipeline inputs (already extracted/loaded)."""

    def encode_query(self, query: Any, *, normalize: bool) -> np.ndarray:
        """Embed one search query (text by default); returns a 1-D float32 vector."""
        return self.encode([query], normalize=normalize).vectors[0]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model (GPU memory)."""


class LoadedModelEncoder(Encoder):
    """Base of the built-in encoders: a model loaded in `__init__`, which sets
    `_model_name`, `_dimension` and `_device`."""

    _model_name: str
    _dimension: int
    _device: str

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def device(self) -> str:
        return self._device


def checked_options(kind: str, options: dict[str, Any] | None, known: set[str] | frozenset[str]
                    ) -> dict[str, Any]:
    """A copy of an encoder's `options`, refusing names it does not know (a typo would
    otherwise be ignored silently)."""
    from connector.errors import EncoderError

    opts = dict(options or {})
    unknown = set(opts) - set(known)
    if unknown:
        raise EncoderError(f"{kind}: unknown option(s) {sorted(unknown)} (known: {sorted(known)})")
    return opts


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32, copy=False)
