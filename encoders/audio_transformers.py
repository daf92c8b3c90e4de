"""Audio encoder on transformers: a speech/audio model's mean-pooled last hidden state, or CLAP.

`model` is a hub id (e.g. `facebook/wav2vec2-base`, `laion/clap-htsat-unfused`) or a local
folder saved with `save_pretrained` (config + weights + preprocessor config):

- wav2vec2-style models (wav2vec2, HuBERT, WavLM, data2vec-audio: any `AutoModel` whose output
  has `last_hidden_state`): the vector is the mean of the last hidden state over time; only
  audio queries (find clips like this clip).
- CLAP (`model_type = "clap"`): the projected audio embedding; text queries too (the text
  tower shares the space), so "a dog barking" finds barking clips.

Inputs are mono float32 waveforms at `sampling_rate` (the model's; the loader decodes and
resamples). Clips longer than `options.max_seconds` (default 30; CLAP: its own window) are cut
and counted as truncated. Clips of one length are batched together, so a vector never depends
on what else was in the batch (no padding). `device = "auto"`: cuda, mps, cpu; fp16 on CUDA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from connector.errors import EncoderError
from encoders.base import EncodeResult, LoadedModelEncoder, Modality, checked_options
from encoders.device import resolve_device
from encoders.packaged import resolve_packaged

_OPTIONS = {"max_seconds", "precision"}
_MIN_SECONDS = 0.1  # shorter clips are padded with silence (the conv front-end needs frames)


class AudioTransformersEncoder(LoadedModelEncoder):
    kind = "audio-transformers"
    modality = "audio"
    query_modalities: ClassVar[tuple[Modality, ...]] = ("audio",)

    def __init__(self, model: str, *, device: str = "auto", options: dict[str, Any] | None = None):
        try:
            import torch
            from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor
        except ImportError as e:
            raise EncoderError(
                f"the audio encoder needs transformers ({e.name} is missing): "
                "pip install 'cbembed[audio]'"
            ) from e
        opts = checked_options(self.kind, options, _OPTIONS)
        self._model_name = model
        self._device = resolve_device(device)
        precision = str(opts.get("precision", "fp16" if self._device.startswith("cuda")
                                 else "fp32"))
        if precision not in ("fp32", "fp16"):
            raise EncoderError(f"audio-transformers: precision {precision!r} is not fp32 or fp16")
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        location = resolve_packaged(model)
        try:
            config = AutoConfig.from_pretrained(location)
            self._clap = config.model_type == "clap"
            if self._clap:
                self._processor = AutoProcessor.from_pretrained(location)
                self._features = self._processor.feature_extractor
            else:
                self._processor = None
                self._features = AutoFeatureExtractor.from_pretrained(location)
            net = AutoModel.from_pretrained(location)
        except Exception as e:
            raise EncoderError(f"cannot load audio model {model!r}: {e}") from e
        self._model = net.to(self._device, dtype=self._dtype).eval()
        rate = getattr(self._features, "sampling_rate", None)
        if not rate:
            raise EncoderError(f"audio model {model!r}: its preprocessor names no sampling rate")
        self._rate = int(rate)
        if self._clap:
            self.query_modalities = ("text", "audio")  # type: ignore[misc]  # CLAP only
            window = getattr(self._features, "nb_max_samples", None)
            self._max_samples = int(window) if window else int(10 * self._rate)
        else:
            self._max_samples = int(float(opts.get("max_seconds", 30)) * self._rate)
        silence = np.zeros(self._rate, dtype=np.float32)
        self._dimension = int(self._embed_same_length([silence]).shape[1])

    @property
    def sampling_rate(self) -> int:
        """The rate every input waveform must have (the loader resamples to it)."""
        return self._rate

    def encode(self, inputs: Sequence[Any], *, normalize: bool) -> EncodeResult:
        """Embed mono float32 waveforms at `sampling_rate`."""
        out = np.zeros((len(inputs), self._dimension), dtype=np.float32)
        if not inputs:
            return EncodeResult(out)
        clips: list[np.ndarray] = []
        truncated = 0
        min_len = int(_MIN_SECONDS * self._rate)
        for x in inputs:
            a = np.asarray(x, dtype=np.float32)
            if a.ndim != 1:
                raise EncoderError(f"audio inputs are mono 1-D waveforms, got shape {a.shape}")
            if a.shape[0] > self._max_samples:
                a, truncated = a[: self._max_samples], truncated + 1
            if a.shape[0] < min_len:
                a = np.pad(a, (0, min_len - a.shape[0]))
            clips.append(a)
        by_length: dict[int, list[int]] = {}
        for i, a in enumerate(clips):
            by_length.setdefault(a.shape[0], []).append(i)
        for idx in by_length.values():
            out[idx] = self._embed_same_length([clips[i] for i in idx])
        if normalize:
            from encoders.base import l2_normalize

            out = l2_normalize(out)
        return EncodeResult(out, truncated)

    def encode_query(self, query: Any, *, normalize: bool) -> np.ndarray:
        """A waveform -> audio tower; text -> CLAP's text tower (CLAP only)."""
        if isinstance(query, str):
            if not self._clap:
                raise EncoderError(f"audio model {self._model_name!r} takes no text queries "
                                   "(CLAP models do)")
            return self._embed_text([query], normalize)[0]
        return self.encode([query], normalize=normalize).vectors[0]

    # -- model calls (encode thread, or one search call at a time) ------------------------------
    def _embed_same_length(self, clips: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if self._clap:
                assert self._processor is not None
                feats = self._processor(audio=clips, sampling_rate=self._rate,
                                        return_tensors="pt")
                f = _pooled(self._model.get_audio_features(**self._to_device(feats)))
            else:
                feats = self._features(clips, sampling_rate=self._rate, return_tensors="pt")
                hidden = self._model(**self._to_device(feats)).last_hidden_state
                f = hidden.mean(dim=1)
        return f.float().cpu().numpy().astype(np.float32, copy=False)

    def _embed_text(self, texts: list[str], normalize: bool) -> np.ndarray:
        import torch

        assert self._processor is not None
        tokens = self._processor(text=texts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            f = _pooled(self._model.get_text_features(**self._to_device(tokens)))
        v = f.float().cpu().numpy().astype(np.float32, copy=False)
        if normalize:
            from encoders.base import l2_normalize

            v = l2_normalize(v)
        return v

    def _to_device(self, batch: Any) -> dict[str, Any]:
        out = {}
        for k, v in dict(batch).items():
            if hasattr(v, "to"):
                v = v.to(self._device, dtype=self._dtype) if v.is_floating_point() \
                    else v.to(self._device)
            out[k] = v
        return out

    def close(self) -> None:
        del self._model
        if self._device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _pooled(out: Any) -> Any:
    """transformers 4.x returns the projected tensor, 5.x an output with `pooler_output`."""
    return out if hasattr(out, "float") else out.pooler_output
