"""Audio loading: formats, rates, channels -> 16 kHz mono float32, and a clear error per failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechllm.data.audio import (
    SAMPLE_RATE,
    audio_sha256,
    decode_audio_bytes,
    load_audio,
    save_wav,
)
from speechllm.errors import AudioError


def tone(sr: int, seconds: float, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


@pytest.mark.parametrize(
    ("sr", "channels", "fmt", "subtype"),
    [
        (8000, 1, "WAV", "PCM_16"),
        (44100, 2, "WAV", "PCM_16"),
        (44100, 2, "FLAC", "PCM_16"),
        (8000, 2, "FLAC", "PCM_24"),
        (16000, 1, "WAV", "FLOAT"),
    ],
)
def test_load_resamples_to_16k_mono(
    tmp_path: Path, sr: int, channels: int, fmt: str, subtype: str
) -> None:
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, tone(sr, 1.5, channels), sr, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - int(1.5 * SAMPLE_RATE)) <= 1
    assert np.abs(audio).max() <= 1.0
    # A 440 Hz tone survives resampling: its level is that of the original.
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_stereo_channels_are_averaged(tmp_path: Path) -> None:
    left = tone(16000, 1.0)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT")
    assert np.allclose(load_audio(tmp_path / "s.wav"), left / 2, atol=1e-6)


def test_other_target_rate_and_clipping(tmp_path: Path) -> None:
    sf.write(tmp_path / "loud.wav", tone(16000, 1.0) * 4, 16000, subtype="FLOAT")
    audio = load_audio(tmp_path / "loud.wav", target_sr=8000)
    assert len(audio) == 8000
    assert np.abs(audio).max() <= 1.0


def test_decode_bytes_matches_file(tmp_path: Path) -> None:
    path = tmp_path / "c.flac"
    sf.write(path, tone(22050, 1.0), 22050)
    assert np.array_equal(decode_audio_bytes(path.read_bytes(), "c.flac"), load_audio(path))


def expect_error(path: Path, *words: str) -> None:
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert str(path) in message and info.value.path == str(path)
    for word in words:
        assert word in message


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.wav", "not found")


def test_folder_is_not_audio(tmp_path: Path) -> None:
    expect_error(tmp_path, "folder")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    expect_error(tmp_path / "empty.wav", "empty")


def test_corrupt_bytes(tmp_path: Path) -> None:
    path = tmp_path / "junk.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    expect_error(path, "not a readable audio file")


def test_text_file_named_flac(tmp_path: Path) -> None:
    path = tmp_path / "notes.flac"
    path.write_text("these are not the samples you are looking for\n" * 20)
    expect_error(path, "not a readable audio file")


def test_zero_samples(tmp_path: Path) -> None:
    sf.write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    expect_error(tmp_path / "zero.wav", "no audio samples")


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    whole = tmp_path / f"whole.{fmt.lower()}"
    sf.write(
        whole, tone(16000, 2.0) + 0.01 * np.random.default_rng(0).standard_normal(32000), 16000
    )
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    expect_error(cut)


def test_nan_samples(tmp_path: Path) -> None:
    audio = tone(16000, 1.0).astype(np.float32)
    audio[100] = np.nan
    sf.write(tmp_path / "nan.wav", audio, 16000, subtype="FLOAT")
    expect_error(tmp_path / "nan.wav", "NaN")


def test_too_short(tmp_path: Path) -> None:
    sf.write(tmp_path / "blip.wav", tone(16000, 0.05), 16000)
    expect_error(tmp_path / "blip.wav", "too short")
    assert len(load_audio(tmp_path / "blip.wav", min_seconds=0.01)) == 800


def test_bad_upload_names_the_upload() -> None:
    with pytest.raises(AudioError, match=r"^upload\.mp3: empty"):
        decode_audio_bytes(b"", "upload.mp3")
    with pytest.raises(AudioError, match=r"^upload\.mp3: not a readable audio file"):
        decode_audio_bytes(b"\x00garbage" * 100, "upload.mp3")


def test_save_wav_round_trip_and_atomic(tmp_path: Path) -> None:
    audio = tone(16000, 1.0).astype(np.float32)
    path = tmp_path / "sub" / "out.wav"
    save_wav(path, audio)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (
        16000,
        1,
        "PCM_16",
        16000,
    )
    assert np.abs(load_audio(path) - audio).max() < 1e-3  # 16-bit quantisation only
    assert [p.name for p in path.parent.iterdir()] == ["out.wav"]  # no temp file left behind
    with pytest.raises(AudioError):
        save_wav(tmp_path / "bad.wav", np.array([0.0, np.nan]))
    assert not (tmp_path / "bad.wav").exists()


def test_audio_sha256() -> None:
    a = tone(16000, 0.5).astype(np.float32)
    assert audio_sha256(a) == audio_sha256(a.copy()) == audio_sha256(a.astype(np.float64))
    b = a.copy()
    b[0] += 1e-4
    assert audio_sha256(a) != audio_sha256(b)
    assert len(audio_sha256(a)) == 64
