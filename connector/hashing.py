"""Source hashes: the loop guard and the "nothing relevant changed" test.

fingerprint = what the pipeline does (encoder kind, model, input rule, similarity, target field);
source hash = sha256(fingerprint, extracted input). A document whose source hash equals the one
stored beside its vector is skipped: an unrelated field changed, or the change is our own
write-back coming round the feed. Changing the model or template changes every hash.
"""

from __future__ import annotations

import hashlib
import json

from connector.config import PipelineConfig


def pipeline_fingerprint(p: PipelineConfig) -> str:
    material = {
        "encoder": [p.encoder.kind, p.encoder.model, sorted(p.encoder.options.items())],
        "input": [p.template, p.source_field],
        "similarity": p.similarity,
        "vector_field": p.vector_field,
    }
    if p.source is not None:  # what is read (not the limits); absent keeps text hashes as they were
        material["source"] = [p.source.kind, str(p.source.root or "")]
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def source_hash(fingerprint: str, payload: bytes) -> str:
    h = hashlib.sha256(fingerprint.encode())
    h.update(b"\x00")
    h.update(payload)
    return h.hexdigest()[:32]
