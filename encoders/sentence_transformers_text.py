"""Text encoder on sentence-transformers: hub id or local path, fp16 on CUDA, truncation counted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from connector.errors import EncoderError
from encoders.base import EncodeResult, LoadedModelEncoder
from encoders.device import resolve_device
from encoders.packaged import resolve_packaged


class SentenceTransformerEncoder(LoadedModelEncoder):
    kind = "sentence-transformers"
    modality = "text"

    def __init__(self, model: str, *, device: str = "auto", options: dict[str, Any] | None = None):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - dependency of the package
            raise EncoderError(
                "sentence-transformers is not installed: pip install sentence-transformers"
            ) from e
        opts = dict(options or {})
        self._model_name = model
        self._device = resolve_device(device)
        location = resolve_packaged(model)
        try:
            self._model = SentenceTransformer(location, device=self._device, **opts)
        except Exception as e:
            raise EncoderError(f"cannot load sentence-transformers model {model!r}: {e}") from e
        if self._device.startswith("cuda"):
            self._model.half()
        self._model.eval()
        dim = self._model.get_embedding_dimension()
        if not dim:
            raise EncoderError(f"model {model!r} does not report its embedding dimension")
        self._dimension = int(dim)
        self._max_tokens = int(self._model.max_seq_length or 512)

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many texts exceed the model's token limit (and will be cut, not failed).

        Every token covers at least one UTF-8 byte, so only texts longer (in bytes) than the
        limit can be cut: only those are tokenised.
        """
        limit = self._max_tokens - 2  # room for the special tokens
        long = [t for t in texts if len(t.encode("utf-8")) > limit]
        if not long:
            return 0
        tokenizer = self._model.tokenizer
        encoded = tokenizer(long, add_special_tokens=True, truncation=False, verbose=False)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        return sum(n > self._max_tokens for n in lengths)

    def encode(self, inputs: Sequence[Any], *, normalize: bool) -> EncodeResult:
        texts = [str(t) for t in inputs]
        if not texts:
            return EncodeResult(np.zeros((0, self._dimension), dtype=np.float32))
        vectors = self._model.encode(
            texts,
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=normalize,
            show_progress_bar=False,
        )
        return EncodeResult(np.asarray(vectors, dtype=np.float32), self.count_truncated(texts))
