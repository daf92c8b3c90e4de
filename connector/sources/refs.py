"""Source references: what a document's source value points at, and its identity for hashing.

`reference()` runs in the Extractor on the connector loop: it classifies the value, resolves
and stat()s paths (refusing anything outside the root), decodes base64, and returns a
`SourceRef` whose `identity` goes into the source hash:

    path      real path + size + mtime: a file changed in place is embedded again
    url       the URL as written: new content behind the same URL is not noticed
              (give it a new URL, e.g. ?v=2, to re-embed)
    inline    sha256 of the bytes (base64 fields and binary documents)

`read_bytes()` runs on the encode thread and returns the bytes to decode.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from connector.config import SourceConfig
from connector.errors import SourceError
from connector.sources import base64 as b64
from connector.sources import files, http

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_DEFAULT_TYPES = {
    "image": ("image/*", "application/octet-stream", "binary/octet-stream"),
    "audio": ("audio/*", "application/ogg", "application/octet-stream", "binary/octet-stream"),
}


@dataclass(frozen=True, slots=True)
class SourceRef:
    kind: Literal["path", "url", "inline"]
    where: str  # for messages: the path or URL as written, or "base64 field 'x'"
    identity: bytes  # hashed into the source hash
    path: Path | None = None  # path: the resolved file
    checked: tuple[int, int] | None = None  # path: (device, inode) of the file checked
    data: bytes | None = None  # inline: the bytes
    media_type: str | None = None  # inline: a data: URI's declared type


def default_content_types(modality: str) -> tuple[str, ...]:
    return _DEFAULT_TYPES.get(modality, ("*/*",))


def reference(value: str, cfg: SourceConfig, field: str) -> SourceRef:
    """Classify a source field's value (per `cfg.kind`) and pin down what it names."""
    kind = cfg.kind
    scheme = m.group(1).lower() if (m := _SCHEME.match(value)) else ""
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if kind == "auto":
        if scheme in ("http", "https"):
            kind = "url"
        elif scheme == "data" or (not scheme and b64.looks_like_base64(value)):
            kind = "base64"
        elif scheme in ("", "file"):
            kind = "path"
        else:
            raise SourceError(f"field {field!r}: no reader for {scheme}: sources "
                              "(http, https, file, data, a path or base64)", kind="unsupported")
    if kind == "url":
        if scheme not in ("http", "https"):
            raise SourceError(f"field {field!r}: {_short(value)!r} is not an http(s) URL",
                              kind="unsupported")
        return SourceRef("url", value, b"url:" + value.encode())
    if kind == "path":
        if scheme not in ("", "file"):
            raise SourceError(f"field {field!r}: {_short(value)!r} is not a file path",
                              kind="unsupported")
        real = files.resolve_under_root(value, cfg.root)
        st = files.stat_file(real, value)
        ident = f"path:{real}:{st.st_size}:{st.st_mtime_ns}".encode()
        return SourceRef("path", value, ident, path=real, checked=(st.st_dev, st.st_ino))
    if kind == "base64":
        data, media_type = b64.decode(value, field=field, max_bytes=cfg.max_bytes)
        return inline(data, f"base64 field {field!r}", media_type)
    raise SourceError(f"field {field!r}: source kind {kind!r} takes no field", kind="unsupported")


def inline(data: bytes, where: str, media_type: str | None = None) -> SourceRef:
    return SourceRef("inline", where, b"bytes:" + hashlib.sha256(data).digest(), data=data,
                     media_type=media_type)


def read_bytes(ref: SourceRef, cfg: SourceConfig, allowed: Sequence[str]) -> bytes:
    """The bytes a reference names (encode thread); SourceError if they cannot be had."""
    if ref.kind == "path":
        assert ref.path is not None
        return files.read_file(ref.path, ref.where, cfg.max_bytes, root=cfg.root,
                               checked=ref.checked)
    if ref.kind == "url":
        return http.fetch(ref.where, timeout_s=cfg.timeout_s, max_bytes=cfg.max_bytes,
                          retries=cfg.retries, allowed=allowed)
    assert ref.data is not None
    if ref.media_type is not None and not http.content_type_allowed(ref.media_type, allowed):
        raise SourceError(f"{ref.where}: data: URI of type {ref.media_type!r} is not accepted "
                          f"(allowed: {', '.join(allowed)})", kind="bad_content_type")
    if len(ref.data) > cfg.max_bytes:
        raise SourceError(f"{ref.where}: {len(ref.data)} bytes, over the limit of "
                          f"{cfg.max_bytes}", kind="too_large")
    return ref.data


def _short(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else value[:limit] + "..."
