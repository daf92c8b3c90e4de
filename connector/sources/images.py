"""Image decoding: bytes -> an RGB PIL image, refusing decompression bombs.

Runs on the encode thread. The pixel count is checked from the header, before any pixel is
decoded (`max_pixels`; Pillow's own global bomb check is not relied on, nor changed).
Transparent images are flattened onto white. Animated images give their first frame.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from connector.errors import SourceError


def decode_image(data: bytes, *, where: str, max_pixels: int = 50_000_000) -> Any:
    """A loaded RGB `PIL.Image.Image`, or SourceError (undecodable, too_many_pixels)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise SourceError(
                    f"{where}: image is {w}x{h} pixels, over the limit of {max_pixels}",
                    kind="too_many_pixels",
                )
            im.load()
    except SourceError:
        raise
    except Image.DecompressionBombError as e:
        raise SourceError(f"{where}: {e}", kind="too_many_pixels") from None
    except UnidentifiedImageError:
        raise SourceError(f"{where}: not an image format Pillow can read "
                          f"({_magic(data)})", kind="undecodable") from None
    except Exception as e:  # Pillow's plugins raise many types on malformed files
        raise SourceError(f"{where}: image cannot be decoded ({type(e).__name__}: {e})",
                          kind="undecodable") from None
    return to_rgb(im)


def to_rgb(im: Any) -> Any:
    """RGB copy of any PIL image; transparency is composited onto white."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im.convert("RGB")


def _magic(data: bytes) -> str:
    if not data:
        return "empty"
    return f"{len(data)} bytes starting {data[:8].hex(' ')}"
