"""Audio decoding: bytes -> mono float32 samples at the model's sampling rate.

Runs on the encode thread. With `soundfile` installed (`pip install 'cbembed[audio]'`) every
format libsndfile reads is accepted (WAV, FLAC, OGG/Vorbis, Opus, AIFF, and MP3 with
libsndfile >= 1.1); without it, WAV (PCM 8/16/24/32-bit) through the standard `wave` module.
Channels are averaged; the rate is converted with a polyphase filter (`scipy.signal.resample_poly`).
"""

from __future__ import annotations

import io
import math
import wave
from typing import Any

import numpy as np

from connector.errors import SourceError


def decode_audio(data: bytes, *, where: str, target_rate: int) -> np.ndarray:
    """1-D float32 samples in [-1, 1] at `target_rate`, or SourceError (undecodable)."""
    samples, rate = read_audio(data, where=where)
    if samples.size == 0:
        raise SourceError(f"{where}: the audio holds no samples", kind="undecodable")
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    return resample(mono.astype(np.float32, copy=False), rate, target_rate)


def read_audio(data: bytes, *, where: str) -> tuple[np.ndarray, int]:
    """(samples, rate): samples float32, shape (frames,) or (frames, channels)."""
    sf = _soundfile()
    if sf is not None:
        try:
            samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        except Exception as e:  # libsndfile raises its own error types
            raise SourceError(f"{where}: audio cannot be decoded ({e})",
                              kind="undecodable") from None
        return np.asarray(samples, dtype=np.float32), int(rate)
    return _read_wav(data, where)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def _soundfile() -> Any:
    try:
        import soundfile
    except (ImportError, OSError):  # OSError: the libsndfile library itself is missing
        return None
    return soundfile


def _read_wav(data: bytes, where: str) -> tuple[np.ndarray, int]:
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError, ValueError) as e:
        hint = "" if data[:4] == b"RIFF" else " (only WAV is read without soundfile: " \
            "pip install 'cbembed[audio]')"
        raise SourceError(f"{where}: audio cannot be decoded ({e}){hint}",
                          kind="undecodable") from None
    frames = frames[: len(frames) - len(frames) % (width * channels)]  # a cut-off last frame
    if width == 1:
        x = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(frames, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:  # pragma: no cover - wave rejects other widths
        raise SourceError(f"{where}: {width * 8}-bit WAV is not supported", kind="undecodable")
    if channels > 1:
        x = x.reshape(-1, channels)
    return x, rate
