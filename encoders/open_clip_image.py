"""Image encoder on open_clip: CLIP's image and text towers share one vector space, so images
are embedded by the pipeline and text (or another image) queries find them.

`model` forms (all load offline when the weights are local):

    "ViT-B-32" + options.pretrained = "laion2b_s34b_b79k"   an open_clip name + pretrained tag
    "ViT-B-32" + options.pretrained = "/models/vit-b-32.safetensors"      ... or a weights file
    "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"           a hub repository (HF cache)
    "local-dir:/models/clip" or "/models/clip"               open_clip_config.json + weights
    "cbembed/tiny-clip"                                       the project's tiny test model

Images are preprocessed by the model's own transforms (resize, crop, mean/std); text queries
go through the model's own tokenizer. `device = "auto"` picks cuda, mps, then cpu; on CUDA the
model runs in fp16 unless `options.precision = "fp32"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from connector.errors import EncoderError
from encoders.base import EncodeResult, LoadedModelEncoder, checked_options
from encoders.device import resolve_device

TINY_CLIP = "cbembed/tiny-clip"
TINY_CLIP_DIR = Path(__file__).resolve().parent / "assets" / "tiny_clip"
_OPTIONS = {"pretrained", "precision"}
_PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def open_clip_name(model: str, pretrained: str | None) -> tuple[str, str | None]:
    """(name for open_clip, pretrained) for a configured `model`; EncoderError if unusable."""
    if model == TINY_CLIP:
        return f"local-dir:{TINY_CLIP_DIR}", None
    if model.startswith(("hf-hub:", "local-dir:")) or Path(model).expanduser().is_dir():
        if pretrained is not None:
            raise EncoderError(f"open-clip model {model!r} brings its own weights: remove "
                               "options.pretrained")
        if model.startswith(("hf-hub:", "local-dir:")):
            return model, None
        return f"local-dir:{Path(model).expanduser().resolve()}", None
    import open_clip

    if model not in open_clip.list_models():
        raise EncoderError(
            f"open-clip model {model!r} is neither an open_clip architecture name (e.g. "
            "ViT-B-32), an hf-hub: id, nor a local folder"
        )
    if pretrained is None:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)[:6]) or "none known"
        raise EncoderError(
            f"open-clip model {model!r} needs options.pretrained: a tag ({tags}) or a "
            "weights file ('random' gives untrained weights, for benchmarks only)"
        )
    return model, None if pretrained == "random" else pretrained


class OpenClipEncoder(LoadedModelEncoder):
    kind = "open-clip"
    modality = "image"
    query_modalities = ("text", "image")

    def __init__(self, model: str, *, device: str = "auto", options: dict[str, Any] | None = None):
        try:
            import open_clip
            import torch
        except ImportError as e:
            raise EncoderError(
                f"the open-clip encoder needs open_clip ({e.name} is missing): "
                "pip install 'cbembed[images]'"
            ) from e
        opts = checked_options(self.kind, options, _OPTIONS)
        pretrained = opts.get("pretrained")
        name, weights = open_clip_name(model, pretrained)
        self._model_name = model if pretrained is None else f"{model}:{pretrained}"
        self._device = resolve_device(device)
        default_precision = "fp16" if self._device.startswith("cuda") else "fp32"
        precision = str(opts.get("precision", default_precision))
        if precision not in _PRECISIONS:
            raise EncoderError(f"open-clip: precision {precision!r} is not one of "
                               f"{sorted(_PRECISIONS)}")
        self._dtype = getattr(torch, _PRECISIONS[precision])
        try:
            clip, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=weights, device=self._device
            )
            self._tokenizer = open_clip.get_tokenizer(name)
        except Exception as e:
            raise EncoderError(f"cannot load open-clip model {model!r}: {e}") from e
        self._model = clip.to(dtype=self._dtype).eval()
        self._preprocess = preprocess
        self._dimension = int(self.encode_text([""], normalize=False).shape[1])

    def encode(self, inputs: Sequence[Any], *, normalize: bool) -> EncodeResult:
        """Embed a batch of images (PIL images, or HxWxC uint8 arrays)."""
        import torch

        if not inputs:
            return EncodeResult(np.zeros((0, self._dimension), dtype=np.float32))
        from connector.sources.images import to_rgb

        pixels = torch.stack([self._preprocess(to_rgb(_as_pil(x))) for x in inputs])
        with torch.inference_mode():
            f = self._model.encode_image(pixels.to(self._device, dtype=self._dtype))
        return EncodeResult(_finish(f, normalize))

    def encode_text(self, texts: Sequence[str], *, normalize: bool) -> np.ndarray:
        """Embed texts with the text tower (same space as the images)."""
        import torch

        tokens = self._tokenizer(list(texts)).to(self._device)
        with torch.inference_mode():
            f = self._model.encode_text(tokens)
        return _finish(f, normalize)

    def encode_query(self, query: Any, *, normalize: bool) -> np.ndarray:
        """Text -> text tower; an image (PIL or array) -> image tower."""
        if isinstance(query, str):
            return self.encode_text([query], normalize=normalize)[0]
        return self.encode([query], normalize=normalize).vectors[0]

    def close(self) -> None:
        del self._model
        if self._device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _as_pil(x: Any) -> Any:
    from PIL import Image

    if isinstance(x, Image.Image):
        return x
    if isinstance(x, np.ndarray):
        return Image.fromarray(x)
    raise EncoderError(f"open-clip encodes images (PIL or arrays), not {type(x).__name__}")


def _finish(f: Any, normalize: bool) -> np.ndarray:
    import torch

    f = f.float()
    if normalize:
        f = torch.nn.functional.normalize(f, dim=-1)
    return f.cpu().numpy().astype(np.float32, copy=False)
