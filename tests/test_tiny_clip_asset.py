"""The committed tiny CLIP (encoders/assets/tiny_clip) loads offline and knows its shapes.

The model is made by ``tools/train_tiny_clip.py``; its README records the measured
figures (held-out 64 px: image->text top-1 0.967, text->image R@1 1.000;
held-out 150 px: 0.980 and 1.000). The thresholds
below leave a margin for other torch builds and CPUs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from connector.demo import shapes

ASSET_DIR = Path(__file__).resolve().parents[1] / "encoders" / "assets" / "tiny_clip"
CONFIG = ASSET_DIR / "open_clip_config.json"
WEIGHTS = ASSET_DIR / "open_clip_model.safetensors"
README = ASSET_DIR / "README.md"

HELDOUT_SEED = 1  # training used scene seeds 0..9999 (iter_dataset seed 0)
N_HELDOUT = 120
EMBED_DIM = 64


def test_asset_files_exist_and_are_small() -> None:
    assert CONFIG.is_file() and WEIGHTS.is_file() and README.is_file()
    assert WEIGHTS.stat().st_size < 8 * 1024 * 1024
    cfg = json.loads(CONFIG.read_text())
    text_cfg = cfg["model_cfg"]["text_cfg"]
    # No HF tokenizer: open_clip must fall back to its bundled SimpleTokenizer (offline).
    assert not text_cfg.get("hf_tokenizer_name")
    assert text_cfg["context_length"] == 32
    assert cfg["model_cfg"]["vision_cfg"]["image_size"] == 64


@pytest.fixture(scope="module")
def tiny_clip() -> tuple[Any, Any, Any]:
    open_clip = pytest.importorskip("open_clip")
    torch = pytest.importorskip("torch")
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(min(2, torch.get_num_threads()))
    name = f"local-dir:{ASSET_DIR}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    return model, preprocess, tokenizer


def _embed_images(model: Any, preprocess: Any, images: list[Image.Image]) -> np.ndarray:
    import torch

    with torch.no_grad():
        x = torch.stack([preprocess(im) for im in images])
        f = model.encode_image(x, normalize=True)
    return f.float().numpy()


def _embed_texts(model: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    import torch

    with torch.no_grad():
        f = model.encode_text(tokenizer(texts), normalize=True)
    return f.float().numpy()


def test_tokenizer_is_offline_simple_tokenizer(tiny_clip: tuple[Any, Any, Any]) -> None:
    _, _, tokenizer = tiny_clip
    import open_clip

    assert isinstance(tokenizer, open_clip.SimpleTokenizer)
    tokens = tokenizer(["a red square", "a small blue circle on a grey background"])
    assert tuple(tokens.shape) == (2, 32)


def test_preprocess_accepts_any_size_and_mode(tiny_clip: tuple[Any, Any, Any]) -> None:
    model, preprocess, _ = tiny_clip
    odd = [
        Image.new("RGBA", (200, 120), (255, 0, 0, 128)),
        Image.new("L", (17, 300), 128),
        Image.new("P", (64, 64)),
        shapes.make_shape_image("circle", "blue", seed=5, size=333),
    ]
    for im in odd:
        assert tuple(preprocess(im).shape) == (3, 64, 64)
    emb = _embed_images(model, preprocess, odd)
    assert emb.shape == (len(odd), EMBED_DIM)
    assert np.isfinite(emb).all()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)


def test_class_captions_match_heldout_images(tiny_clip: tuple[Any, Any, Any]) -> None:
    model, preprocess, tokenizer = tiny_clip
    items = list(shapes.iter_dataset(N_HELDOUT, HELDOUT_SEED))
    labels = np.array([shapes.CLASSES.index(a.primary.label) for _, _, a in items])
    img = _embed_images(model, preprocess, [im for im, _, _ in items])
    txt = _embed_texts(model, tokenizer, shapes.class_captions())
    sims = img @ txt.T  # (images, 30 captions)

    # image -> text: the right "a {colour} {shape}" caption is top (measured 0.967).
    i2t = float((sims.argmax(1) == labels).mean())
    assert i2t >= 0.85, f"image->text top-1 {i2t:.3f}"
    # colour alone is easy for it (measured 1.000).
    colour_of = np.array([shapes.COLOURS.index(c) for c, _ in shapes.CLASSES])
    assert float((colour_of[sims.argmax(1)] == colour_of[labels]).mean()) >= 0.95

    # text -> image: each class caption's best picture has that class (measured 1.000).
    t2i = float((labels[sims.argmax(0)] == np.arange(len(shapes.CLASSES))).mean())
    assert t2i >= 0.85, f"text->image R@1 {t2i:.3f}"


def test_separates_red_square_from_blue_circle(tiny_clip: tuple[Any, Any, Any]) -> None:
    model, preprocess, tokenizer = tiny_clip
    images = [shapes.make_shape_image("square", "red", seed=s, size_word="medium")
              for s in range(900_000, 900_004)]
    images += [shapes.make_shape_image("circle", "blue", seed=s, size_word="medium")
               for s in range(900_000, 900_004)]
    img = _embed_images(model, preprocess, images)
    txt = _embed_texts(model, tokenizer, ["a red square", "a blue circle"])
    pred = (img @ txt.T).argmax(1)
    assert pred.tolist() == [0] * 4 + [1] * 4


def test_shapes_generator_is_deterministic() -> None:
    a = list(shapes.iter_dataset(12, 7, second_object_prob=0.5))
    b = list(shapes.iter_dataset(12, 7, second_object_prob=0.5))
    for (ia, ca, xa), (ib, cb, xb) in zip(a, b, strict=True):
        assert np.array_equal(np.asarray(ia), np.asarray(ib))
        assert ca == cb and xa == xb
    assert len(shapes.COLOURS) >= 6 and len(shapes.SHAPES) >= 5
    assert len(shapes.CLASSES) == len(shapes.COLOURS) * len(shapes.SHAPES)
    _, attrs = shapes.make_scene(3, shape="star", colour="orange", size_word="small",
                                 background="grey")
    assert shapes.caption_for(attrs) == "a small orange star on a grey background"
    assert shapes.caption_variants(attrs)[0] == "an orange star"
    assert shapes.class_caption("red", "square") == "a red square"
