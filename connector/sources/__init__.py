"""Where a pipeline's images and audio come from, and how they are read.

    Extractor (connector loop)   value in `source_field` (or the binary document) -> SourceRef
                                 refs.py: classify; paths resolved under the root and stat'ed,
                                 base64 decoded; the SourceRef's identity goes into the hash
    loader (encode thread)       SourceRef -> bytes       files.py, http.py (or inline bytes)
                                 bytes -> RGB image       images.py
                                 bytes -> mono waveform   audio.py

Every failure is a `SourceError` (a `DocumentError`: the document becomes a dead letter, the
stream goes on) whose `kind` is one of: outside_root, not_found, not_a_file, unreadable,
too_large, too_many_pixels, bad_content_type, bad_base64, http_status, unreachable,
undecodable, unsupported, or load_failed (anything unexpected below, logged with its
traceback); its message says what, where and why.
"""

from connector.sources.refs import SourceRef, default_content_types, read_bytes, reference

__all__ = ["SourceRef", "default_content_types", "read_bytes", "reference"]
