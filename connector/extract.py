"""Extract a pipeline's input from a change: parse, filter, render the template, hash.

Called on the connector loop for every change a pipeline watches; pure functions, except that
a file source is resolved and stat()ed here (its size and mtime are part of the source hash,
see connector.sources.refs). Problems with one document raise `DocumentError` subclasses whose
message says what and where. With `source.kind = "document"` the body is not parsed: the
(binary) document itself is the image or audio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from connector.config import PipelineConfig, SourceConfig
from connector.errors import ExtractError, SourceError
from connector.hashing import source_hash
from connector.sources.refs import inline, reference
from connector.template import Template, is_missing, lookup


@dataclass(frozen=True, slots=True)
class Extracted:
    """The input a pipeline will encode: text, or a source reference for image/audio."""

    payload: Any  # str for text; a connector.sources.SourceRef for image/audio
    text: str | None  # text kept for keyword search
    source_hash: str


class Extractor:
    """Compiled once per pipeline from its config."""

    def __init__(self, config: PipelineConfig, fingerprint: str) -> None:
        self.config = config
        self.fingerprint = fingerprint
        self.template = Template.parse(config.template) if config.template else None
        self.source_path = tuple(config.source_field.split(".")) if config.source_field else None
        self.source = config.source or SourceConfig()
        self.binary = self.source.kind == "document"

    def parse(self, body: bytes) -> Any:
        if self.binary:
            return body
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ExtractError(f"document is not JSON ({e})", kind="not_json") from None

    def matches(self, doc: Any) -> bool:
        f = self.config.filter
        return f is None or f.matches(doc)

    def extract(self, doc: Any) -> Extracted:
        if self.binary:
            return self._extract_binary(doc)
        if not isinstance(doc, dict):
            raise ExtractError(
                f"document is a JSON {type(doc).__name__}, expected an object", kind="not_object"
            )
        text = self.template.render(doc) if self.template else None
        if self.source_path is None:
            assert text is not None
            return Extracted(text, text, source_hash(self.fingerprint, text.encode()))
        source = lookup(doc, self.source_path)
        field = ".".join(self.source_path)
        if is_missing(source) or source is None or source == "":
            raise ExtractError(f"field {field!r} is missing or empty", kind="missing_field")
        if not isinstance(source, str):
            raise ExtractError(
                f"field {field!r} is a {type(source).__name__}, expected a path, URL or base64 "
                "text",
                kind="wrong_type",
            )
        ref = reference(source, self.source, field)
        material = ref.identity + b"\x00" + (text or "").encode()
        return Extracted(ref, text, source_hash(self.fingerprint, material))

    def _extract_binary(self, body: bytes) -> Extracted:
        if not body:
            raise SourceError("the document body is empty", kind="empty")
        if len(body) > self.source.max_bytes:
            raise SourceError(f"the document is {len(body)} bytes, over the limit of "
                              f"{self.source.max_bytes}", kind="too_large")
        ref = inline(bytes(body), "the document body")
        return Extracted(ref, None, source_hash(self.fingerprint, ref.identity))
