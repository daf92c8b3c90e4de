"""The demo's image collection: pictures of coloured shapes (connector/demo/shapes.py) written
as PNG files next to the demo store, and one document per picture (caption + file name).

The pictures are deterministic and a file that is already there is left alone (its mtime is
part of the source hash), so running the demo again re-embeds nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GALLERY_SEED = 3  # the tiny CLIP was trained on seed 0 only: these pictures are new to it
GALLERY_SIZE = 60  # two pictures of each of the 30 colour/shape classes


def images_dir(db_path: Path) -> Path:
    """Where the demo's pictures live: `<db name>-images/` beside the store."""
    return db_path.with_name(db_path.stem + "-images")


def write_gallery(folder: Path, n: int = GALLERY_SIZE) -> list[tuple[str, dict[str, Any]]]:
    """Write the pictures that are missing; return (key, document) per picture."""
    from connector.demo import shapes  # Pillow: the images extra

    folder.mkdir(parents=True, exist_ok=True)
    docs = []
    for i, (image, caption, attrs) in enumerate(shapes.iter_dataset(n, GALLERY_SEED)):
        name = f"shape-{i:03d}.png"
        if not (folder / name).is_file():
            image.save(folder / name)
        colour, shape = attrs.primary.label
        docs.append((f"shape_{i:03d}", {"caption": caption, "photo": name, "colour": colour,
                                        "shape": shape, "background": attrs.background}))
    return docs
