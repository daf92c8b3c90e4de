"""Encoders: the registry (built-ins and third-party entry points), the text encoder's limits."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from connector.config import EncoderConfig
from connector.errors import EncoderNotFoundError
from encoders import available_kinds, encoder_class, load_encoder
from encoders.packaged import resolve_packaged

PLUGIN = '''
import numpy as np
from encoders.base import EncodeResult, Encoder


class HashEncoder(Encoder):
    kind = "hash-demo"
    modality = "text"

    def __init__(self, model, *, device="auto", options=None):
        self._dims = int((options or {}).get("dims", 8))

    @property
    def model_name(self):
        return "hash"

    @property
    def dimension(self):
        return self._dims

    def encode(self, inputs, *, normalize):
        out = np.array([[(hash(t) >> i) & 1 for i in range(self._dims)] for t in inputs],
                       dtype=np.float32)
        return EncodeResult(out)
'''


def test_third_party_encoder_found_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cbembed_hash_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "cbembed_hash_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cbembed-hash-plugin\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[cbembed.encoders]\nhash-demo = cbembed_hash_plugin:HashEncoder\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "hash-demo" in available_kinds()
    enc = load_encoder(EncoderConfig(kind="hash-demo", model="x", options={"dims": 4}))
    assert enc.encode(["a", "b"], normalize=False).vectors.shape == (2, 4)
    sys.modules.pop("cbembed_hash_plugin", None)


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(EncoderNotFoundError, match="sentence-transformers"):
        encoder_class("no-such-encoder")


def test_text_encoder_truncates_long_inputs_and_counts_them(minilm) -> None:
    long = "word " * 1000
    res = minilm.encode(["short text", long, "another " * 400], normalize=True)
    assert res.vectors.shape == (3, 384) and res.vectors.dtype == np.float32
    assert res.truncated == 2
    assert np.allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.device == "cpu" and minilm.dimension == 384


def test_model_is_loaded_once_per_configuration(minilm) -> None:
    assert load_encoder(EncoderConfig()) is minilm


def test_packaged_model_resolution(tmp_path: Path) -> None:
    assert Path(resolve_packaged("sentence-transformers/all-MiniLM-L6-v2")).is_dir()
    assert resolve_packaged(str(tmp_path)) == str(tmp_path)
    assert resolve_packaged("org/some-hub-model") == "org/some-hub-model"
