"""Long recordings: split at pauses by Silero VAD (`longform.split_speech`), pieces joined
(`longform.join_results`), and `speechllm infer` on a file longer than Whisper's 30 s window."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import lfilter
from typer.testing import CliRunner

from speechllm.cli import app as cli_app
from speechllm.data.audio import SAMPLE_RATE, load_audio
from speechllm.inference import longform
from speechllm.inference.longform import (
    FRAME,
    Segment,
    join_results,
    overall_sentiment,
    split_speech,
)
from speechllm.model.answers import Prediction, parse_answers
from speechllm.model.speechllm import SpeechLLM

SR = SAMPLE_RATE
Span = tuple[float, float]


# ------------------------------------------------------------------ audio built here


def librispeech_clips(shared: Path) -> list[np.ndarray]:
    files = sorted((shared / "data" / "librispeech-sample").rglob("*.flac"))
    assert len(files) == 4, files
    return [load_audio(f) for f in files]


def voiced_span(clip: np.ndarray) -> Span:
    """Seconds from the clip's start of its first and last 10 ms within 30 dB of its loudest."""
    frames = clip[: len(clip) // 160 * 160].reshape(-1, 160)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(db > db.max() - 30)
    return loud[0] / 100, (loud[-1] + 1) / 100


def concatenate(
    clips: list[np.ndarray], repeats: int, seed: int = 0, gaps: Span = (0.5, 1.5)
) -> tuple[np.ndarray, list[Span], list[Span]]:
    """The clips `repeats` times, each after a silence of `gaps` seconds (low noise, not digital
    zeros): (audio, voiced span of each clip, span of each silence), spans in seconds."""
    rng = np.random.default_rng(seed)
    parts, voiced, silences, t = [], [], [], 0
    for _ in range(repeats):
        for clip in clips:
            gap = (rng.standard_normal(int(rng.uniform(*gaps) * SR)) * 1e-4).astype(np.float32)
            silences.append((t / SR, (t + len(gap)) / SR))
            t += len(gap)
            a, b = voiced_span(clip)
            voiced.append((t / SR + a, t / SR + b))
            parts += [gap, clip]
            t += len(clip)
    tail = np.zeros(SR, np.float32)
    silences.append((t / SR, (t + len(tail)) / SR))
    return np.concatenate([*parts, tail]), voiced, silences


VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480)]


def babble(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Speech-like sound: syllables of a glottal pulse train through vowel formants, each after
    a short noise burst (a consonant). Plain noise is not speech to Silero; this is."""
    out: list[np.ndarray] = []
    while sum(map(len, out)) < seconds * SR:
        dur = rng.uniform(0.12, 0.3)
        t = np.arange(int(dur * SR)) / SR
        phase = np.cumsum(rng.uniform(100, 140) * (1 - 0.15 * t / dur) / SR)
        x = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)
        for f, bw in zip(VOWELS[rng.integers(len(VOWELS))], (90, 110, 170), strict=True):
            r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * f / SR
            x = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], x)
        x = x * np.sin(np.pi * t / dur) ** 0.5 / np.abs(x).max()
        out += [rng.standard_normal(int(0.04 * SR)) * 0.15, x]
    return (0.3 * np.concatenate(out)[: int(seconds * SR)]).astype(np.float32)


def bursts(
    lengths: list[float], gaps: list[float], seed: int = 0
) -> tuple[np.ndarray, list[Span], list[Span]]:
    """Babble bursts of `lengths` s after silences of `gaps` s, then 1 s of silence:
    (audio, burst spans, silence spans)."""
    rng = np.random.default_rng(seed)
    parts, spoken, silences, t = [], [], [], 0.0
    for length, gap in zip(lengths, [*gaps, 1.0][: len(lengths)], strict=True):
        parts.append(np.zeros(int(gap * SR), np.float32))
        silences.append((t, t + gap))
        t += gap
        parts.append(babble(length, rng))
        spoken.append((t, t + length))
        t += length
    parts.append(np.zeros(SR, np.float32))
    silences.append((t, t + 1.0))
    return np.concatenate(parts), spoken, silences


def overlap(a: Span, b: Span) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def check_well_formed(audio: np.ndarray, pieces: list[Segment], max_seconds: float) -> None:
    """Pieces in order, inside the audio, not overlapping, each at most `max_seconds`, and each
    holding exactly the samples of its times."""
    end = 0.0
    for p in pieces:
        assert end <= p.start_s < p.end_s <= len(audio) / SR + 1e-9, (end, p.start_s, p.end_s)
        assert p.seconds <= max_seconds + 1e-9
        a, b = round(p.start_s * SR), round(p.end_s * SR)
        assert len(p.audio) == b - a and np.array_equal(p.audio, audio[a:b])
        end = p.end_s


# ------------------------------------------------------------------ split_speech, real speech


@pytest.fixture(scope="module")
def long_speech(shared: Path) -> tuple[np.ndarray, list[Span], list[Span]]:
    """About 3 minutes: the 4 LibriSpeech clips 7 times, with 0.5-1.5 s silences."""
    audio, voiced, silences = concatenate(librispeech_clips(shared), repeats=7)
    assert 150 < len(audio) / SR < 200
    return audio, voiced, silences


@pytest.fixture(scope="module")
def long_pieces(long_speech) -> list[Segment]:
    return split_speech(long_speech[0])


def test_real_speech_pieces_are_the_clips(long_speech, long_pieces):
    audio, voiced, silences = long_speech
    check_well_formed(audio, long_pieces, 30.0)
    for span in voiced:  # every clip's speech lies in one piece that fits it within 0.5 s
        (piece,) = [p for p in long_pieces if overlap((p.start_s, p.end_s), span) > 0]
        assert span[0] - 0.5 <= piece.start_s <= span[0] + 0.05, (span, piece.start_s)
        assert span[1] - 0.05 <= piece.end_s <= span[1] + 0.5, (span, piece.end_s)
    for piece in long_pieces:  # and no piece is silence
        assert any(overlap((piece.start_s, piece.end_s), s) > 0.5 * piece.seconds for s in voiced)
    for a, b in silences:  # no silence is covered whole
        assert not any(p.start_s <= a and b <= p.end_s for p in long_pieces)


def test_a_region_longer_than_the_limit_is_cut_at_its_pauses(long_speech, long_pieces):
    audio = long_speech[0]
    short = split_speech(audio, max_seconds=4.0)
    check_well_formed(audio, short, 4.0)
    assert len(short) > len(long_pieces)  # the clips of 5.4 and 10.4 s were cut
    # Cutting loses no speech: the pieces cover what the 30 s pieces cover.
    covered = np.zeros(len(audio), bool)
    for p in short:
        covered[round(p.start_s * SR) : round(p.end_s * SR)] = True
    for p in long_pieces:
        inside = covered[round(p.start_s * SR) : round(p.end_s * SR)]
        assert inside.mean() > 0.99, (p.start_s, p.end_s, inside.mean())
    # Cuts fall in pauses: the VAD's score at each cut inside a 30 s piece is low.
    probs = longform.speech_probabilities(audio)
    cuts = [p.start_s for p in short if any(q.start_s < p.start_s < q.end_s for q in long_pieces)]
    assert cuts
    assert np.median([probs[int(c * SR) // FRAME] for c in cuts]) < 0.5


def test_short_audio_is_one_piece_and_silence_is_none(shared):
    clip = librispeech_clips(shared)[1]
    audio = np.concatenate([np.zeros(SR // 2, np.float32), clip, np.zeros(SR // 2, np.float32)])
    (piece,) = split_speech(audio)
    a, b = voiced_span(clip)
    assert piece.start_s <= 0.5 + a + 0.05 and piece.end_s >= 0.5 + b - 0.05
    assert split_speech(np.zeros(60 * SR, np.float32)) == []
    noise = (np.random.default_rng(0).standard_normal(60 * SR) * 1e-3).astype(np.float32)
    assert split_speech(noise) == []
    assert split_speech(np.zeros(0, np.float32)) == []


def test_vad_runs_without_torch_side_effects_and_both_models_agree(shared, monkeypatch, tmp_path):
    import sys

    threads = torch.get_num_threads()
    clip = librispeech_clips(shared)[0]
    batched = longform.speech_probabilities(clip)
    # Importing the silero_vad package would set torch's threads to 1 for the whole process.
    assert "silero_vad" not in sys.modules and torch.get_num_threads() == threads
    assert longform._session()[1]  # the installed wheel ships the batched sequence model
    # The frame-by-frame model (older wheels ship only that one) gives the same probabilities.
    (tmp_path / "silero_vad.onnx").symlink_to(longform._model_dir() / "silero_vad.onnx")
    monkeypatch.setattr(longform, "_model_dir", lambda: tmp_path)
    longform._session.cache_clear()
    try:
        assert not longform._session()[1]
        np.testing.assert_allclose(longform.speech_probabilities(clip), batched, atol=1e-5)
    finally:
        longform._session.cache_clear()
    assert len(batched) == -(-len(clip) // FRAME) and 0 <= batched.min() <= batched.max() <= 1


# ------------------------------------------------------------------ split_speech, synthetic


def test_speech_like_bursts_split_between_silences():
    lengths = [3.0, 2.0, 6.0, 4.0, 40.0, 2.5]  # 40 s of babble without a pause: cut to fit
    gaps = [1.0, 2.0, 1.0, 1.5, 1.0, 2.0]
    audio, spoken, silences = bursts(lengths, gaps)
    pieces = split_speech(audio)
    check_well_formed(audio, pieces, 30.0)
    for piece in pieces:  # each piece lies within a burst, give or take 0.5 s
        assert any(s[0] - 0.5 <= piece.start_s and piece.end_s <= s[1] + 0.5 for s in spoken)
    for s in spoken:  # each burst is mostly covered (Silero may be slow to start on babble)
        assert sum(overlap((p.start_s, p.end_s), s) for p in pieces) > 0.6 * (s[1] - s[0])
    for a, b in silences:
        middle = (a + b) / 2
        assert not any(p.start_s <= middle <= p.end_s for p in pieces)
    assert sum(1 for p in pieces if overlap((p.start_s, p.end_s), spoken[4]) > 0) >= 2


def fake_vad(monkeypatch, probs: np.ndarray) -> np.ndarray:
    monkeypatch.setattr(longform, "speech_probabilities", lambda audio: probs)
    return np.random.default_rng(0).standard_normal(len(probs) * FRAME).astype(np.float32) * 0.1


def frames(seconds: float) -> int:
    return round(seconds * SR / FRAME)


def test_the_longest_pause_is_the_cut(monkeypatch):
    # 40 s of speech with two pauses short enough to be bridged: 0.2 s at 14 s, 0.45 s at 22 s.
    probs = np.full(frames(42), 0.9, np.float32)
    probs[: frames(1)] = probs[-frames(1) :] = 0.0
    probs[frames(14) : frames(14.2)] = 0.05
    probs[frames(22) : frames(22.45)] = 0.05
    audio = fake_vad(monkeypatch, probs)
    pieces = split_speech(audio)
    check_well_formed(audio, pieces, 30.0)
    assert len(pieces) == 2
    assert pieces[0].end_s == pieces[1].start_s
    assert abs(pieces[0].end_s - 22.225) < 0.05  # the middle of the longer pause
    assert abs(pieces[0].start_s - (1.0 - 0.2)) < 0.04 and abs(pieces[1].end_s - 41.2) < 0.04


def test_without_a_pause_the_cut_is_hard(monkeypatch):
    probs = np.full(frames(95), 0.95, np.float32)
    probs[frames(50)] = 0.6  # the least speech-like frame in range of the first cut
    audio = fake_vad(monkeypatch, probs)
    pieces = split_speech(audio, max_seconds=30.0)
    check_well_formed(audio, pieces, 30.0)
    assert pieces[0].start_s == 0.0 and pieces[-1].end_s == len(audio) / SR
    assert all(a.end_s == b.start_s for a, b in itertools.pairwise(pieces))
    assert len(pieces) == 4  # 95 s in pieces of at most 30 s
    assert pieces[1].end_s == pytest.approx((frames(50) + 0.5) * FRAME / SR)


def test_gaps_are_bridged_and_blips_dropped(monkeypatch):
    probs = np.zeros(frames(20), np.float32)
    probs[frames(2) : frames(5)] = 0.9
    probs[frames(5.3) : frames(7)] = 0.9  # 0.3 s pause: bridged
    probs[frames(10) : frames(10.1)] = 0.9  # a 0.1 s click: dropped
    probs[frames(13) : frames(15)] = 0.9  # after 6 s of silence: its own piece
    audio = fake_vad(monkeypatch, probs)
    pieces = split_speech(audio)
    assert [(round(p.start_s, 1), round(p.end_s, 1)) for p in pieces] == [(1.8, 7.2), (12.8, 15.2)]
    with pytest.raises(ValueError, match="max_seconds"):
        split_speech(audio, max_seconds=0.5)


# ------------------------------------------------------------------ join_results


def piece(transcript, entities=(), sentiment=None, failures=()):
    return Prediction(transcript, list(entities), sentiment, list(failures), raw={"all": "x"})


def seg(a: float, b: float) -> Segment:
    return Segment(a, b, np.zeros(round((b - a) * SR), np.float32))


def test_join_results_combines_as_documented():
    segments = [seg(0.5, 10.5), seg(12.0, 14.0), seg(15.0, 17.5), seg(20.0, 21.0)]
    results = [
        piece("the commission met", [("ORG", "commission")], "Negative"),
        piece("in brussels", [("PLACE", "brussels")], "Positive"),
        piece("", [], None, ["sa"]),
        piece("and paris", [("PLACE", "paris"), ("WHEN", "today")], "Positive", ["ner"]),
    ]
    out = join_results(segments, results)
    assert out["transcript"] == "the commission met in brussels and paris"
    assert out["entities"] == [
        ["ORG", "commission", 0.5, 10.5],
        ["PLACE", "brussels", 12.0, 14.0],
        ["PLACE", "paris", 20.0, 21.0],
        ["WHEN", "today", 20.0, 21.0],
    ]
    assert out["sentiment"] == "Negative"  # 10 s Negative outweigh 3 s Positive
    assert out["parse_failures"] == ["sa", "ner"]
    assert [(p["start"], p["end"]) for p in out["pieces"]] == [
        (0.5, 10.5),
        (12.0, 14.0),
        (15.0, 17.5),
        (20.0, 21.0),
    ]
    assert out["pieces"][1] == {
        "start": 12.0,
        "end": 14.0,
        "transcript": "in brussels",
        "entities": [["PLACE", "brussels"]],
        "sentiment": "Positive",
        "parse_failures": [],
        "raw": {"all": "x"},
    }
    json.dumps(out)  # plain JSON


def test_overall_sentiment_weights_by_duration_and_ties_are_neutral():
    assert overall_sentiment([(3.0, "Positive"), (2.0, "Negative"), (2.0, "Negative")]) == (
        "Negative"
    )
    assert overall_sentiment([(2.5, "Positive"), (2.5, "Negative"), (1.0, "Neutral")]) == "Neutral"
    assert overall_sentiment([(2.0, "Positive"), (2.0, "Neutral")]) == "Neutral"
    assert overall_sentiment([(1.0, None), (0.5, "Positive")]) == "Positive"
    assert overall_sentiment([(1.0, None)]) is None and overall_sentiment([]) is None


def test_join_results_keeps_the_fields_of_the_tasks():
    asr_only = Prediction("hello", raw={"asr": "hello"})
    there = Prediction("there", raw={"asr": "there"})
    out = join_results([seg(0, 2), seg(3, 4)], [asr_only, there])
    assert out["transcript"] == "hello there" and "entities" not in out and "sentiment" not in out
    assert join_results([], [], ["asr"]) == {"transcript": "", "parse_failures": [], "pieces": []}
    assert join_results([], [], ["sa"]) == {"sentiment": None, "parse_failures": [], "pieces": []}
    assert join_results([], []) == {
        "transcript": "",
        "entities": [],
        "sentiment": None,
        "parse_failures": [],
        "pieces": [],
    }
    with pytest.raises(ValueError, match="2 segments but 1"):
        join_results([seg(0, 1), seg(2, 3)], [asr_only])


# ------------------------------------------------------------------ the decoding path


def test_encode_clips_and_answer_give_each_clip_what_it_gets_alone(model):
    """`encode_clips` batches the encoder and `answer` batches the (clip, task) rows, with a task
    list per clip; each clip still gets the frames and answers it gets alone."""
    from clips import noise
    from speechllm.inference.decode import answer, encode_clips

    audios = [noise(s, seed) for seed, s in enumerate((0.6, 1.4, 0.9))]
    frames = encode_clips(model.encoder, audios, batch_size=2)
    for audio, f in zip(audios, frames, strict=True):
        (one,) = encode_clips(model.encoder, [audio])
        assert f.shape == one.shape and torch.allclose(f, one, atol=1e-5)
    tasks = [["asr", "sa"], [], ["all"]]
    got = answer(model, frames, tasks, batch_size=3, ids=["a", "b", "c"])
    assert [p.id for p in got] == ["a", "b", "c"]
    assert got[1].raw == {} and got[1].to_dict() == {"raw": {}, "parse_failures": []}
    for audio, ts, p in zip(audios, tasks, got, strict=True):
        if ts:
            assert p == dataclasses.replace(alone(model, audio, ts), id=p.id)
    # One task list for every clip: the same rows as the list repeated.
    assert answer(model, frames, ["sa"]) == answer(model, frames, [["sa"]] * 3)
    with pytest.raises(ValueError, match="3 clips but 2 task lists"):
        answer(model, frames, [["asr"], ["asr"]])


# ------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def model_dir(model: SpeechLLM, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model.save(tmp_path_factory.mktemp("longform") / "model")


def wav_file(path: Path, audio: np.ndarray) -> Path:
    buf = io.BytesIO()
    sf.write(buf, audio, SR, format="WAV", subtype="FLOAT")  # float: the samples come back exact
    path.write_bytes(buf.getvalue())
    return path


def infer(model_dir: Path, *paths: Path, task: str = "all", options: tuple = ()) -> list[dict]:
    result = CliRunner().invoke(
        cli_app, ["infer", "--model", str(model_dir), "--task", task, *options, *map(str, paths)]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_runtimes_answer_alike_and_a_bad_one_is_refused(model_dir, tmp_path):
    """The tiny model is no whisper-route model: both runtimes run it in torch, the default with
    its LoRA merged into the LLM, and answer the same."""
    clip = wav_file(tmp_path / "clip.wav", bursts([2.0], [0.5])[0])
    default = infer(model_dir, clip, task="asr,ner,sa")
    assert infer(model_dir, clip, task="asr,ner,sa", options=("--runtime", "torch")) == default
    result = CliRunner().invoke(
        cli_app, ["infer", "--model", str(model_dir), "--runtime", "onnx", str(clip)]
    )
    assert result.exit_code == 2 and "onnx" in result.output


def alone(model: SpeechLLM, audio: np.ndarray, tasks: list[str]) -> Prediction:
    """What the library answers for a clip of at most 30 s decoded by itself."""
    frames, lengths = model.encoder([audio])
    return parse_answers({t: model.generate(frames, lengths, [t])[0] for t in tasks})


def test_cli_joins_the_pieces_of_a_long_file(shared, model, model_dir, tmp_path):
    audio, _, _ = concatenate(librispeech_clips(shared), repeats=2, seed=1)
    assert len(audio) > 40 * SR
    long = wav_file(tmp_path / "long.wav", audio)
    short_audio = librispeech_clips(shared)[2]
    short = wav_file(tmp_path / "short.wav", short_audio)

    both = infer(model_dir, long, short)
    assert [r["audio"] for r in both] == [str(long), str(short)]
    joined = both[0]
    assert set(joined) == {
        "audio",
        "transcript",
        "entities",
        "sentiment",
        "parse_failures",
        "pieces",
    }
    segments = split_speech(load_audio(long))
    assert len(segments) >= 8
    assert [(p["start"], p["end"]) for p in joined["pieces"]] == [
        (round(s.start_s, 3), round(s.end_s, 3)) for s in segments
    ]
    # Each piece is answered as the library answers that piece alone; the file's result joins them.
    expected = [alone(model, s.audio, ["all"]) for s in segments]
    assert [p["raw"] for p in joined["pieces"]] == [e.raw for e in expected]
    assert {k: v for k, v in joined.items() if k != "audio"} == json.loads(
        json.dumps(join_results(segments, expected))
    )

    # A short file: exactly the JSON of before (the clip decoded whole), alone or beside a long one.
    before = json.loads(
        json.dumps({"audio": str(short), **alone(model, short_audio, ["all"]).to_dict()})
    )
    assert both[1] == before
    assert infer(model_dir, short) == [before]


def test_cli_long_file_tasks_and_silence(model_dir, tmp_path):
    rng = np.random.default_rng(3)
    quiet = wav_file(tmp_path / "quiet.wav", (rng.standard_normal(45 * SR) * 1e-4).astype("f4"))
    (out,) = infer(model_dir, quiet, task="asr")
    assert out == {"audio": str(quiet), "transcript": "", "parse_failures": [], "pieces": []}
    spoken = wav_file(tmp_path / "babble.wav", bursts([20.0, 15.0], [1.0, 2.0])[0])
    (out,) = infer(model_dir, spoken, task="asr,sa")
    assert set(out) == {"audio", "transcript", "sentiment", "parse_failures", "pieces"}
    assert len(out["pieces"]) >= 2
    assert all(set(p["raw"]) == {"asr", "sa"} for p in out["pieces"])


def test_cli_refuses_a_file_over_max_minutes(model_dir, tmp_path):
    path = wav_file(tmp_path / "long.wav", np.zeros(70 * SR, np.float32))
    result = CliRunner().invoke(
        cli_app, ["infer", "--model", str(model_dir), "--max-minutes", "1", str(path)]
    )
    assert result.exit_code == 1
    (out,) = json.loads(result.stdout)
    assert out["error"] == f"{path}: audio is 70.0 s long; at most 60 s is accepted"


@pytest.mark.e2e
def test_a_ten_minute_recording_reads_as_well_as_its_clips(ten_minutes):
    """The shipped default through `speechllm infer` on a 10-minute recording (the 4 real
    LibriSpeech clips, CC BY 4.0, repeated with pauses): its one transcript's WER is within 2
    points of the WER of the same clips read one by one."""
    result = CliRunner().invoke(cli_app, ["infer", "--task", "asr", str(ten_minutes.path)])
    assert result.exit_code == 0, result.output
    (joined,) = json.loads(result.stdout)
    ten_minutes.check(joined["transcript"], joined["pieces"])
