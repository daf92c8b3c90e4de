"""The demo's configuration on the embedded store: the bundled travel corpus with a text
pipeline, and a gallery of generated pictures with an image pipeline (the tiny CLIP)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from connector.demo.gallery import images_dir

DEMO_KEYSPACE = "demo.travel.listings"
DEMO_QUERIES = [
    "somewhere quiet to recover after a long hike",
    "kid friendly place near the sea",
    "rooftop pool",
    "Kyoto ryokan",
]


PHOTOS_KEYSPACE = "demo.gallery.shapes"
PHOTO_QUERIES = ["a red square", "an orange star", "a small blue circle"]


def data_file(name: str) -> Path:
    return Path(str(files("connector.demo").joinpath("data", name)))


def demo_toml(db_path: Path, *, photos: bool = True) -> str:
    """The demo's TOML; `photos=False` leaves the image pipeline out (no images extra)."""
    config = db_path.with_suffix(".toml")
    text = f"""# Written by `cbembed demo`. Try: cbembed search --config {config} "beach"
storage = "embedded://{db_path}"

[[pipelines]]
name = "travel"
keyspace = "{DEMO_KEYSPACE}"
template = "{{name}}. {{description}}"
vector_field = "embedding"
similarity = "cosine"
encoder = {{ kind = "sentence-transformers", model = "sentence-transformers/all-MiniLM-L6-v2" }}
"""
    if not photos:
        return text
    return text + f"""
# Pictures: the file named in `photo`, read under `root` only, embedded by a tiny CLIP made for
# tests and this demo (it knows coloured shapes, nothing else). A real model: model = "ViT-B-32"
# with options = {{ pretrained = "laion2b_s34b_b79k" }}; see docs/images-and-audio.md.
[[pipelines]]
name = "photos"
keyspace = "{PHOTOS_KEYSPACE}"
source_field = "photo"
source = {{ kind = "path", root = "{images_dir(db_path)}" }}
template = "{{caption}}"
vector_field = "image_vec"
encoder = {{ kind = "open-clip", model = "cbembed/tiny-clip" }}
"""
