"""Fixtures shared by the test modules: ../shared, the tiny models, and the shipped default with
its 10-minute recording (the e2e tests of `infer`, the server and the web page)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from speechllm.data.importers import files as importer_files
from speechllm.errors import ConfigError
from speechllm.model.speechllm import SpeechLLM
from tiny import absent, lively_tiny_model, save_tiny_asr_run, save_tiny_models


def shared_dir() -> Path | None:
    """../shared beside the repo (or $SPEECHLLM_SHARED); None where truly absent."""
    try:
        return importer_files.shared_dir()
    except ConfigError:
        return None


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if path is None:
        absent("../shared (read-only project data) is not present on this machine")
    return path


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_asr_run(tiny_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny SpeechLLM run that reads speech with a random Whisper-with-decoder (its folder
    is the run's parent's `tiny-whisper-asr`): the cascade's and the demo's tiny model."""
    return save_tiny_asr_run(tmp_path_factory.mktemp("tiny-asr"), tiny_dirs[1])


@pytest.fixture(scope="module")
def model(tiny_dirs: tuple[Path, Path]) -> SpeechLLM:
    """The tiny random SpeechLLM of the server, web, bad-input and long-form tests (answers are
    noise, but real ones that move with the audio); one per test module, which may override it."""
    return lively_tiny_model(tiny_dirs)


@pytest.fixture(scope="session")
def shipped_model() -> SpeechLLM:
    """The shipped default as `infer` and `serve` load it (`load_for_inference()`)."""
    from speechllm.inference.runtime import load_for_inference

    return load_for_inference()


@dataclasses.dataclass(frozen=True)
class LongRecording:
    """A 10-minute recording of the 4 LibriSpeech clips repeated with pauses, and the WER (in
    points) the shipped default gets on the same clips read one by one."""

    path: Path  # 16-bit PCM WAV, 16 kHz (about 19 MB: under the server's 25 MiB upload limit)
    seconds: float
    reference: str  # the clips' texts in the order the recording speaks them
    clip_wer: float

    def check(self, transcript: str, pieces: Sequence[dict[str, Any]]) -> float:
        """Assert that a long answer (its joined transcript and its pieces) reads as well as the
        clips, within 2 WER points, in pieces of at most 30 s; returns its WER."""
        from speechllm.evaluation.slue import wer

        assert len(pieces) >= 20 and all(p["end"] - p["start"] <= 30 for p in pieces), pieces
        long_wer = wer([self.reference], [transcript])
        # Shown with -rP: the figures of the "done when".
        print(f"{self.seconds:.0f} s, {len(pieces)} pieces: WER {long_wer:.2f}", end=" ")
        print(f"(clips one by one: {self.clip_wer:.2f})")
        assert long_wer <= self.clip_wer + 2.0, (long_wer, self.clip_wer)
        return long_wer


@pytest.fixture(scope="session")
def ten_minutes(
    shared: Path, shipped_model: SpeechLLM, tmp_path_factory: pytest.TempPathFactory
) -> LongRecording:
    """The 4 real LibriSpeech clips (CC BY 4.0) repeated with 0.5-1.5 s pauses to at least
    10 minutes, and the clips' own WER: each answered alone (task asr) by the shipped default."""
    import numpy as np
    import soundfile as sf

    from speechllm.data.audio import SAMPLE_RATE, load_audio
    from speechllm.data.importers.librispeech import import_librispeech
    from speechllm.evaluation.slue import wer
    from speechllm.inference.decode import answer, encode_clips
    from test_longform import concatenate

    utts = import_librispeech(shared / "data" / "librispeech-sample")
    clips = [load_audio(u.audio) for u in utts]
    repeats = int(np.ceil(600 / (sum(len(c) for c in clips) / SAMPLE_RATE + 4.0)))
    audio, _, _ = concatenate(clips, repeats, seed=1)
    assert len(audio) / SAMPLE_RATE >= 600
    path = tmp_path_factory.mktemp("ten-minutes") / "ten-minutes.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    alone = answer(shipped_model, encode_clips(shipped_model.encoder, clips), ["asr"])
    return LongRecording(
        path=path,
        seconds=len(audio) / SAMPLE_RATE,
        reference=" ".join(u.text for _ in range(repeats) for u in utts),
        clip_wer=wer([u.text for u in utts], [p.transcript for p in alone]),
    )
