"""Small synthetic clips for tests: a tone with an overtone, seeded noise, WAV bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from speechllm.data.audio import SAMPLE_RATE


def tone(
    seconds: float = 0.6, freq: float = 300.0, sr: int = SAMPLE_RATE, channels: int = 1
) -> np.ndarray:
    """A tone with an overtone (the model hears more than one frequency): (samples,) float32, or
    (samples, 2) with a quieter second channel."""
    t = np.arange(int(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 3.7 * freq * t)).astype(
        np.float32
    )
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def noise(seconds: float, seed: int) -> np.ndarray:
    """Seeded white noise at 16 kHz, (samples,) float32."""
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(SAMPLE_RATE * seconds))).astype(np.float32)


def wav_bytes(
    audio: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16", fmt: str = "WAV"
) -> bytes:
    """`audio` as the bytes of a sound file (WAV, 16-bit PCM unless told)."""
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def write_silence(folder: Path, seconds: dict[str, float]) -> Path:
    """Silent 16 kHz sound files in `folder` (made if missing), each name's extension its format;
    returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, length in seconds.items():
        sf.write(folder / name, np.zeros(int(SAMPLE_RATE * length), np.float32), SAMPLE_RATE)
    return folder
