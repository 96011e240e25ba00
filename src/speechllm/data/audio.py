"""Reading, checking and writing audio: everything the model sees is float32 mono at 16 kHz.

Every failure a user can cause (a missing, empty, corrupt, truncated or silent-length file, or
non-finite samples) is an `AudioError` that names the file and the reason, so the CLI can print it
as one line and batch jobs can skip just that file.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechllm.errors import AudioError, AudioTooLongError

SAMPLE_RATE = 16000
"""The rate of every clip the encoder sees (Whisper's)."""

WHISPER_WINDOW_SECONDS = 30.0
"""Whisper's input window: the longest clip the encoder reads in one pass. Longer recordings are
split at pauses first (`speechllm.inference.longform`)."""

MIN_SECONDS = 0.1
"""Shorter clips are refused: they hold no speech and give the encoder nothing to attend to."""

# libsndfile reads a truncated WAV without complaint (it just returns fewer frames) but notes the
# mismatch in its log as "data : <declared> (should be <actual>)"; we turn that into an error.
_TRUNCATED_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Streaming writers that cannot seek back leave these placeholder sizes in the header.
_PLACEHOLDER_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}


def load_audio(
    path: str | os.PathLike[str],
    target_sr: int = SAMPLE_RATE,
    *,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Read an audio file as float32 mono samples in [-1, 1] at `target_sr` Hz.

    Any format libsndfile reads (WAV, FLAC, OGG/Vorbis, ...) is accepted; channels are averaged and
    the signal is resampled with soxr (HQ). Raises `AudioError` (naming the file and the reason) for
    a missing, empty, unreadable, truncated, non-finite or too-short (< `min_seconds`) file, and
    its subclass `AudioTooLongError` for one over `max_seconds` (checked before resampling).
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(p, "file not found")
    if p.is_dir():
        raise AudioError(p, "is a folder, not an audio file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise AudioError(p, f"cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise AudioError(p, "empty file (0 bytes)")
    try:
        with open(p, "rb") as f:
            return _decode(f, p, target_sr, min_seconds, max_seconds)
    except OSError as exc:
        raise AudioError(p, f"cannot be read ({exc.strerror or exc})") from exc


def decode_audio_bytes(
    data: bytes,
    name: str,
    target_sr: int = SAMPLE_RATE,
    *,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Like `load_audio`, for the bytes of an uploaded file; `name` is used in error messages."""
    if not data:
        raise AudioError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, target_sr, min_seconds, max_seconds)


def _decode(
    source: io.BufferedIOBase | io.BytesIO,
    name: object,
    target_sr: int,
    min_seconds: float,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decode, check and convert one file-like object (shared by files and uploads)."""
    if target_sr <= 0:
        raise ValueError(f"target_sr must be positive, got {target_sr}")
    try:
        with sf.SoundFile(source) as f:
            sr = f.samplerate
            _check_not_truncated(f, name)
            data = f.read(dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:
        raise AudioError(name, f"not a readable audio file ({_soundfile_reason(exc)})") from exc
    except (RuntimeError, ValueError, TypeError) as exc:
        # libsndfile/cffi surface some decoder failures as plain RuntimeError/ValueError.
        raise AudioError(name, f"not a readable audio file ({exc})") from exc

    if data.shape[0] == 0:
        raise AudioError(name, "contains no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(name, "contains NaN or infinite samples")
    seconds = data.shape[0] / sr
    if seconds < min_seconds:
        raise AudioError(name, f"too short ({seconds:.3f} s; at least {min_seconds:g} s needed)")
    if max_seconds is not None and seconds > max_seconds:
        # Before resampling: a small file declaring a 1 Hz rate would otherwise become hours of
        # 16 kHz audio (80 kB -> 2.4 GB) before being refused.
        raise AudioTooLongError(
            name, f"audio is {seconds:.1f} s long; at most {max_seconds:g} s is accepted"
        )

    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr != target_sr:
        mono = soxr.resample(mono, sr, target_sr, quality="HQ")
    # Float files may exceed full scale, and resampling can overshoot a full-scale signal slightly.
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)


def _check_not_truncated(f: sf.SoundFile, name: object) -> None:
    """Refuse a WAV whose data chunk is shorter than its header says (a cut-off download/copy)."""
    match = _TRUNCATED_DATA.search(f.extra_info or "")
    if not match:
        return
    declared, actual = int(match.group(1)), int(match.group(2))
    block = max(1, f.channels * 2)  # at least one 16-bit frame short, not a padding byte
    if declared not in _PLACEHOLDER_SIZES and declared - actual >= block:
        raise AudioError(
            name,
            f"truncated: the header declares {declared} bytes of audio data but the file holds "
            f"only {actual}",
        )


def _soundfile_reason(exc: sf.SoundFileError) -> str:
    """libsndfile's own message without the 'Error opening <object>: ' prefix it adds."""
    text = str(exc)
    return text.rsplit(": ", 1)[-1] if text.startswith("Error opening") else text


def save_wav(path: str | os.PathLike[str], audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write mono (or frames x channels) float audio as 16-bit PCM WAV, atomically.

    The data goes to a temporary file in the same folder that is then renamed over `path`, so a
    killed process never leaves a half-written WAV that a later (resumed) run would trust.
    """
    p = Path(path)
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim not in (1, 2):
        raise ValueError(f"audio must be 1-D (mono) or 2-D (frames, channels), got {samples.shape}")
    if not np.isfinite(samples).all():
        raise AudioError(p, "refusing to write NaN or infinite samples")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            sf.write(f, np.clip(samples, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def audio_sha256(audio: np.ndarray) -> str:
    """Hex SHA-256 of the samples as little-endian float32 (a content key for feature caches).

    Two clips hash equal exactly when their decoded samples are equal, whatever file they came from.
    """
    samples = np.ascontiguousarray(audio, dtype="<f4")
    h = hashlib.sha256()
    # The shape is hashed too, so a (N, 2) clip and the (2N,) clip with the same bytes differ.
    h.update(repr(samples.shape).encode())
    h.update(samples.tobytes())
    return h.hexdigest()
