"""Audio pipelines: a tiny wav2vec2 made here (fixed seed, saved with save_pretrained and loaded
through the same `model = <folder>` path as hub ids), WAV decoding with the standard library
(FLAC too where soundfile imports), 44.1 kHz -> 16 kHz resampling, dead letters for garbage,
audio-to-audio search; and a tiny CLAP for text-to-audio query mechanics."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connector.config import Settings, load_settings
from connector.embedded import EmbeddedDatabase
from connector.errors import SearchError
from connector.search import Searcher
from tests.conftest import dead_letters, run_until_idle, stored
from tests.media import png, wav

KS = "media.sounds.clips"


def tiny_wav2vec2(folder: Path) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        vocab_size=8,
    )
    Wav2Vec2Model(cfg).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000).save_pretrained(folder)
    return folder


def tiny_clap(folder: Path) -> Path:
    import torch
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        ClapTextConfig,
        RobertaTokenizerFast,
    )

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    words = "a dog cat bird bark meow sing Ġa Ġdog Ġcat Ġbird Ġbark Ġmeow Ġsing".split()
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", *words])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = RobertaTokenizerFast(vocab_file=str(folder / "vocab.json"),
                                     merges_file=str(folder / "merges.txt"))
    text = ClapTextConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=64,
                          max_position_embeddings=64, projection_dim=16)
    audio = ClapAudioConfig(spec_size=128, num_mel_bins=64, window_size=4, patch_size=4,
                            patch_stride=(4, 4), hidden_size=32, patch_embeds_hidden_size=16,
                            depths=[1, 1], num_attention_heads=[2, 2], projection_dim=16,
                            enable_fusion=False)
    ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                         projection_dim=16)).eval().save_pretrained(folder)
    features = ClapFeatureExtractor(feature_size=64, sampling_rate=48_000, max_length_s=1,
                                    truncation="rand_trunc")
    ClapProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_wav2vec2(tmp_path_factory.mktemp("w2v") / "tiny-wav2vec2")


def tone(freqs: list[float], rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = sum(np.sin(2 * np.pi * f * t) / (n + 1) for n, f in enumerate(freqs))
    envelope = np.minimum(1, np.minimum(t, seconds - t) * 20)  # no clicks at the ends
    return (0.4 * x / len(freqs) * envelope).astype(np.float32)


def audio_settings(db: Path, root: Path, model: Path, **pipeline: Any) -> Settings:
    p: dict[str, Any] = {
        "name": "sounds", "keyspace": KS, "source_field": "clip", "template": "{title}",
        "vector_field": "audio_vec",
        "encoder": {"kind": "audio-transformers", "model": str(model)},
        "source": {"kind": "auto", "root": str(root)},
    }
    p.update(pipeline)
    return load_settings(
        storage=f"embedded://{db}", pipelines=[p],
        connector={"checkpoint_interval_s": 0.2, "max_wait_ms": 5, "poll_interval_s": 0.02},
        embedded={"partitions": 8},
    )


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def vec(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4")


def test_audio_pipeline_decodes_resamples_and_embeds(tmp_path: Path, w2v_dir: Path) -> None:
    root = tmp_path / "clips"
    root.mkdir()
    a_chord, b_chord = [220.0, 440.0, 660.0], [1500.0, 2300.0]
    (root / "a16.wav").write_bytes(wav(tone(a_chord, 16_000), 16_000))
    (root / "a44.wav").write_bytes(wav(tone(a_chord, 44_100), 44_100))
    stereo = np.repeat(tone(a_chord, 22_050), 2)  # the same clip, two channels, 24-bit
    (root / "a22-stereo.wav").write_bytes(wav(stereo, 22_050, width=3, channels=2))
    (root / "b16.wav").write_bytes(wav(tone(b_chord, 16_000), 16_000))
    (root / "noise.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (root / "picture.wav").write_bytes(png())
    docs = {
        "a16": {"title": "A chord", "clip": "a16.wav"},
        "a44": {"title": "A chord, CD rate", "clip": "a44.wav"},
        "a22": {"title": "A chord, stereo", "clip": "a22-stereo.wav"},
        "b16": {"title": "B chord", "clip": "b16.wav"},
        "b64": {"title": "B chord inline",
                "clip": "data:audio/wav;base64," + base64.b64encode(
                    (root / "b16.wav").read_bytes()).decode()},
        "garbage": {"title": "bad", "clip": "noise.wav"},
        "picture": {"title": "bad", "clip": "picture.wav"},
        "elsewhere": {"title": "bad", "clip": "../secret.wav"},
    }
    settings = audio_settings(tmp_path / "a.db", root, w2v_dir)
    db = EmbeddedDatabase(settings.embedded_path, partitions=8)
    db.upsert_many(KS, docs.items())
    s = run_until_idle(settings).pipelines["sounds"]
    assert s["embedded"] == 5 and s["failed"] == 3
    out = {k: vec(raw) for k, (_, raw) in stored(db, "sounds").items()}
    assert out["a16"].shape == (32,)
    # The same clip recorded at 16 kHz, 44.1 kHz and 22.05 kHz stereo: nearly one vector.
    assert cos(out["a16"], out["a44"]) > 0.995 and cos(out["a16"], out["a22"]) > 0.995
    # Another clip: clearly another vector; the inline copy of it: the same vector.
    assert cos(out["a16"], out["b16"]) < cos(out["a16"], out["a44"]) - 0.05
    assert np.allclose(out["b16"], out["b64"], atol=1e-5)
    letters = {d.key: d for d in dead_letters(settings)}
    assert {k: d.kind for k, d in letters.items()} == {
        "garbage": "undecodable", "picture": "undecodable", "elsewhere": "outside_root"}
    assert "noise.wav" in letters["garbage"].reason
    # The vector is the model's own: mean-pooled last hidden state of the 16 kHz samples.
    from connector.config import EncoderConfig
    from encoders.registry import load_encoder

    enc = load_encoder(EncoderConfig(kind="audio-transformers", model=str(w2v_dir)))
    assert enc.sampling_rate == 16_000  # type: ignore[attr-defined]
    direct = enc.encode([tone(a_chord, 16_000)], normalize=True).vectors[0]
    assert np.allclose(out["a16"], direct, atol=1e-3)
    # Audio-to-audio search: a clip finds itself and its resampled copies first.
    searcher = Searcher.from_settings(settings)
    try:
        top = [h.id for h in searcher.vector(root / "a44.wav", k=3)]
        assert set(top) == {"a16", "a44", "a22"}
        with pytest.raises(SearchError, match="takes no text queries"):
            searcher.vector("a chord")
    finally:
        searcher.close()
    db.close()


def test_batches_do_not_change_vectors_and_long_clips_are_cut(w2v_dir: Path) -> None:
    from encoders.audio_transformers import AudioTransformersEncoder

    enc = AudioTransformersEncoder(str(w2v_dir), device="cpu", options={"max_seconds": 1})
    clips = [tone([300.0], 16_000, 0.5), tone([500.0], 16_000, 1.5), tone([300.0], 16_000, 0.5),
             tone([700.0], 16_000, 0.02)]
    res = enc.encode(clips, normalize=True)
    assert res.vectors.shape == (4, 32) and res.truncated == 1
    one_by_one = np.stack([enc.encode([c], normalize=True).vectors[0] for c in clips])
    assert np.allclose(res.vectors, one_by_one, atol=1e-5)
    cut = enc.encode([tone([500.0], 16_000, 1.5)[:16_000]], normalize=True).vectors[0]
    assert np.allclose(res.vectors[1], cut, atol=1e-5)


def test_flac_through_soundfile(tmp_path: Path, w2v_dir: Path) -> None:
    sf = pytest.importorskip("soundfile", reason="soundfile is not installed: WAV only")
    root = tmp_path / "clips"
    root.mkdir()
    sf.write(root / "a.flac", tone([220.0, 440.0], 48_000), 48_000)
    sf.write(root / "a.wav", tone([220.0, 440.0], 16_000), 16_000)
    settings = audio_settings(tmp_path / "f.db", root, w2v_dir)
    db = EmbeddedDatabase(settings.embedded_path, partitions=8)
    db.upsert_many(KS, [("flac", {"title": "f", "clip": "a.flac"}),
                        ("wav", {"title": "w", "clip": "a.wav"})])
    assert run_until_idle(settings).pipelines["sounds"]["embedded"] == 2
    out = {k: vec(raw) for k, (_, raw) in stored(db, "sounds").items()}
    assert cos(out["flac"], out["wav"]) > 0.995
    db.close()


def test_clap_takes_text_queries(tmp_path: Path) -> None:
    clap_dir = tiny_clap(tmp_path / "tiny-clap")
    root = tmp_path / "clips"
    root.mkdir()
    for name, freqs in {"low": [200.0], "high": [3000.0, 5000.0]}.items():
        (root / f"{name}.wav").write_bytes(wav(tone(freqs, 44_100, 2.0), 44_100))
    settings = audio_settings(tmp_path / "c.db", root, clap_dir)
    db = EmbeddedDatabase(settings.embedded_path, partitions=8)
    db.upsert_many(KS, [("low", {"title": "low hum", "clip": "low.wav"}),
                        ("high", {"title": "high whistle", "clip": "high.wav"})])
    s = run_until_idle(settings).pipelines["sounds"]
    assert s["embedded"] == 2 and s["truncated"] == 2  # 2 s clips, a 1 s CLAP window
    searcher = Searcher.from_settings(settings)
    try:
        enc = searcher.encoder(settings.pipelines[0])
        assert enc.query_modalities == ("text", "audio") and enc.dimension == 16
        # Random weights: only the mechanics are checked (both towers, one space).
        hits = searcher.vector("a dog bark", k=2)
        assert {h.id for h in hits} == {"low", "high"}
        assert searcher.vector(root / "high.wav", k=1)[0].id == "high"
        again = enc.encode_query("a dog bark", normalize=True)
        assert again.shape == (16,) and np.isclose(np.linalg.norm(again), 1, atol=1e-5)
    finally:
        searcher.close()
    db.close()
