"""Base64 sources: the bytes themselves in a document field, plain or as a data: URI.

Decoded by the Extractor on the connector loop (so the source hash covers the bytes, and a
bad value is a dead letter before it reaches the encoder). The size limit is checked on the
encoded length first, so an oversized value is refused without being decoded.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode

from connector.errors import SourceError

_WS = re.compile(r"\s+")
_DATA_URI = re.compile(r"^data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)
_B64 = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")


def looks_like_base64(value: str, min_len: int = 64) -> bool:
    """A guess for `kind = "auto"`: a data: URI, or long text of base64 characters only."""
    if value[:5].lower() == "data:":
        return True
    if len(value) < min_len:
        return False
    return bool(_B64.match(_WS.sub("", value[:4096])))


def decode(value: str, *, field: str, max_bytes: int) -> tuple[bytes, str | None]:
    """(bytes, media type of a data: URI or None) of a base64 field (standard or URL-safe
    alphabet, whitespace ignored). The media type is checked later, by the loader."""
    text = value
    media_type = None
    m = _DATA_URI.match(value)
    if m:
        media_type, params = m.group(1) or "text/plain", m.group(2).lower()
        if ";base64" not in params:
            raise SourceError(f"field {field!r} holds a data: URI that is not base64",
                              kind="bad_base64")
        text = value[m.end():]
    text = _WS.sub("", text)
    if len(text) * 3 // 4 > max_bytes + 2:
        raise SourceError(
            f"field {field!r} holds about {len(text) * 3 // 4} bytes of base64, over the limit "
            f"of {max_bytes}",
            kind="too_large",
        )
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        data = b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SourceError(f"field {field!r} is not valid base64 ({e})", kind="bad_base64") from None
    if not data:
        raise SourceError(f"field {field!r} decodes to no bytes", kind="bad_base64")
    if len(data) > max_bytes:
        raise SourceError(f"field {field!r} holds {len(data)} bytes, over the limit of "
                          f"{max_bytes}", kind="too_large")
    return data, media_type
