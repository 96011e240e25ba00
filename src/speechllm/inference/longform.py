"""Audio of any length: split at pauses by a voice-activity detector, understand each piece, join.

Whisper reads at most 30 s, so a longer recording is cut into pieces of speech first
(`split_speech`), each piece is decoded like a short clip, and the per-piece answers are joined
into one result (`join_results`).

The detector is Silero VAD, the ONNX model shipped inside the `silero-vad` wheel, run with
onnxruntime on numpy arrays: nothing is downloaded at run time, and neither torch nor the
`silero_vad` Python package is imported (importing it would set torch's thread count to 1 for
the whole process). The model gives one speech probability per 32 ms frame (512 samples at
16 kHz); the package's batched "sequence" export computes the same probabilities as its
frame-by-frame model in a few calls instead of one call per frame.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechllm.data.audio import SAMPLE_RATE, WHISPER_WINDOW_SECONDS
from speechllm.errors import SpeechLLMError
from speechllm.model.answers import Prediction

FRAME = 512
"""Samples per VAD frame at 16 kHz (32 ms): the resolution of every boundary found."""

_CONTEXT = 64  # samples of the previous frame the model sees before each frame
_BLOCK = 512  # frames per call of the sequence model (about 16 s of audio)

NEUTRAL = "Neutral"


@dataclass(frozen=True)
class Segment:
    """One piece of a recording: its times in the recording (seconds) and its samples.

    `audio` is a view into the recording's array (no copy).
    """

    start_s: float
    end_s: float
    audio: np.ndarray

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


# ------------------------------------------------------------------ the detector


def _model_dir() -> Path:
    """The `silero_vad/data` folder of the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise SpeechLLMError(
            "the voice-activity detector is missing: pip install 'silero-vad[onnx-cpu]' "
            "(a dependency of speechllm)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.cache
def _session() -> tuple[Any, bool]:
    """(onnxruntime session, whether it is the batched sequence model); loaded once."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise SpeechLLMError(
            "onnxruntime is missing (it runs the voice-activity detector): "
            "pip install 'silero-vad[onnx-cpu]'"
        ) from exc
    options = ort.SessionOptions()
    # A small model called on short blocks: more threads only add contention.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    folder = _model_dir()
    for name, sequence in (("silero_vad_16k_sequence.onnx", True), ("silero_vad.onnx", False)):
        if (folder / name).is_file():
            session = ort.InferenceSession(
                str(folder / name), sess_options=options, providers=["CPUExecutionProvider"]
            )
            return session, sequence
    raise SpeechLLMError(f"no Silero VAD model in {folder}: reinstall silero-vad")


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Silero VAD's speech probability of each 32 ms frame of 16 kHz `audio` (last frame
    zero-padded): float32 array of ceil(len / 512) values in [0, 1]."""
    audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
    n = -(-len(audio) // FRAME)
    if n == 0:
        return np.zeros(0, np.float32)
    frames = np.zeros(n * FRAME, np.float32)
    frames[: len(audio)] = audio
    frames = frames.reshape(n, FRAME)
    # Each frame is preceded by the last 64 samples of the one before (zeros for the first), as
    # the streaming model keeps them itself.
    context = np.zeros((n, _CONTEXT), np.float32)
    context[1:] = frames[:-1, -_CONTEXT:]
    inputs = np.concatenate([context, frames], axis=1)
    session, sequence = _session()
    out = np.empty(n, np.float32)
    if sequence:
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        for s in range(0, n, _BLOCK):
            probs, h, c = session.run(
                ["speech_probs", "hn", "cn"], {"input": inputs[s : s + _BLOCK], "h": h, "c": c}
            )
            out[s : s + _BLOCK] = np.asarray(probs).reshape(-1)
    else:
        state = np.zeros((2, 1, 128), np.float32)
        sr = np.array(SAMPLE_RATE, np.int64)
        for i in range(n):
            prob, state = session.run(None, {"input": inputs[i : i + 1], "state": state, "sr": sr})
            out[i] = float(np.asarray(prob).reshape(-1)[0])
    return out


# ------------------------------------------------------------------ splitting


def split_speech(
    audio: np.ndarray,
    max_seconds: float = WHISPER_WINDOW_SECONDS,
    *,
    threshold: float = 0.5,
    min_speech_s: float = 0.25,
    min_silence_s: float = 0.1,
    bridge_s: float = 0.5,
    pad_s: float = 0.2,
) -> list[Segment]:
    """Pieces of speech of 16 kHz mono `audio`, in order, none longer than `max_seconds`.

    1. Silero VAD scores each 32 ms frame. Speech starts at a frame scoring `threshold` or more
       and ends where the score stays under `threshold - 0.15` for `min_silence_s` (Silero's
       own hysteresis).
    2. Pauses shorter than `bridge_s` are bridged (a breath inside a sentence does not cut it);
       then speech shorter than `min_speech_s` is dropped (clicks, coughs).
    3. Each region keeps `pad_s` of audio on both sides (less where the next region is closer:
       pieces never overlap).
    4. A region still longer than `max_seconds` (Whisper's window by default) is cut at the
       longest pause (run of frames under `threshold - 0.15`) among those that leave a first
       part of one third to all of `max_seconds` (any pause at all if none does); with no
       pause, at the least speech-like frame of that span: a hard cut, the last resort. The cut
       is in the middle of the pause, so both parts keep half of it.

    Silence and noise the detector does not take for speech give no piece; audio with no speech
    gives []. Boundaries are multiples of 512 samples (32 ms), but for the padding and the ends
    of the audio.
    """
    if max_seconds < 1.0:
        raise ValueError(f"max_seconds must be at least 1 s, got {max_seconds}")
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono), got shape {audio.shape}")
    total = len(audio)
    probs = speech_probabilities(audio)
    if len(probs) == 0:
        return []
    frames = _speech_regions(
        probs,
        threshold=threshold,
        min_silence=max(1, round(min_silence_s * SAMPLE_RATE / FRAME)),
        bridge=round(bridge_s * SAMPLE_RATE / FRAME),
        min_speech=round(min_speech_s * SAMPLE_RATE / FRAME),
    )
    regions = _padded([(s * FRAME, min(e * FRAME, total)) for s, e in frames], total, pad_s)
    quiet = probs < threshold - 0.15
    max_len = int(max_seconds * SAMPLE_RATE)
    out: list[Segment] = []
    for lo, hi in regions:
        for a, b in _fit(lo, hi, max_len, probs, quiet):
            out.append(Segment(a / SAMPLE_RATE, b / SAMPLE_RATE, audio[a:b]))
    return out


def _speech_regions(
    probs: np.ndarray, *, threshold: float, min_silence: int, bridge: int, min_speech: int
) -> list[tuple[int, int]]:
    """[start, end) frame ranges of speech: hysteresis, then bridging, then the length floor."""
    neg = threshold - 0.15
    regions: list[tuple[int, int]] = []
    start: int | None = None
    quiet_from: int | None = None
    for i, p in enumerate(probs.tolist()):
        if p >= threshold:
            quiet_from = None
            if start is None:
                start = i
        elif start is not None and p < neg:
            if quiet_from is None:
                quiet_from = i
            if i + 1 - quiet_from >= min_silence:
                regions.append((start, quiet_from))
                start = quiet_from = None
    if start is not None:
        regions.append((start, quiet_from if quiet_from is not None else len(probs)))
    bridged: list[tuple[int, int]] = []
    for s, e in regions:
        if bridged and s - bridged[-1][1] < bridge:
            bridged[-1] = (bridged[-1][0], e)
        else:
            bridged.append((s, e))
    return [(s, e) for s, e in bridged if e - s >= min_speech]


def _padded(regions: list[tuple[int, int]], total: int, pad_s: float) -> list[tuple[int, int]]:
    """Sample ranges widened by `pad_s` each side, clamped to the audio and to half of each gap."""
    pad = int(pad_s * SAMPLE_RATE)
    out = []
    for k, (s, e) in enumerate(regions):
        before = s - (regions[k - 1][1] if k else 0)
        after = (regions[k + 1][0] if k + 1 < len(regions) else total) - e
        left = pad if k == 0 else min(pad, before // 2)
        right = pad if k + 1 == len(regions) else min(pad, after - after // 2)
        out.append((max(0, s - left), min(total, e + right)))
    return out


def _fit(
    lo: int, hi: int, max_len: int, probs: np.ndarray, quiet: np.ndarray
) -> list[tuple[int, int]]:
    """[lo, hi) cut into consecutive ranges of at most `max_len` samples (see `split_speech`)."""
    out = []
    min_len = SAMPLE_RATE // 4  # no part shorter than 0.25 s is left behind a cut
    while hi - lo > max_len:
        limit = min(lo + max_len, hi - min_len)
        cut = _pause_cut(lo + max_len // 3, limit, quiet)
        if cut is None:
            cut = _pause_cut(lo + min_len, limit, quiet)
        if cut is None:  # no pause at all: the least speech-like frame in the later two thirds
            f0, f1 = -(-(lo + max_len // 3) // FRAME), limit // FRAME
            if f1 > f0:
                f = f1 - 1 - int(np.argmin(probs[f0:f1][::-1]))  # the latest of equal ones
                cut = min(limit, f * FRAME + FRAME // 2)
            else:
                cut = limit
        out.append((lo, cut))
        lo = cut
    out.append((lo, hi))
    return out


def _pause_cut(lo: int, hi: int, quiet: np.ndarray) -> int | None:
    """The middle sample of the longest run of quiet frames lying within samples [lo, hi) (the
    latest of equally long ones), or None when no whole quiet frame lies there."""
    f0, f1 = -(-lo // FRAME), hi // FRAME
    if f1 <= f0:
        return None
    window = quiet[f0:f1].astype(np.int8)
    if not window.any():
        return None
    edges = np.flatnonzero(np.diff(np.concatenate([[0], window, [0]])))
    starts, ends = edges[::2], edges[1::2]
    best = max(range(len(starts)), key=lambda k: (ends[k] - starts[k], k))
    middle = (f0 + starts[best] + f0 + ends[best]) * FRAME // 2
    return min(max(middle, lo), hi)


# ------------------------------------------------------------------ joining


def join_results(
    segments: Sequence[Segment],
    per_piece: Sequence[Prediction],
    tasks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One result for a recording (the JSON of `speechllm infer` and the server) from the
    predictions of its pieces.

    - `transcript`: the pieces' transcripts in order, joined with single spaces (empty ones
      skipped).
    - `entities`: [tag, phrase, start_s, end_s] for each entity of each piece, in order. The
      times are those of the piece the entity was found in (the model does not place an entity
      within its piece), in seconds from the start of the recording.
    - `sentiment`: the overall sentiment, a majority weighted by piece duration: each label
      scores the seconds of the pieces judged so, and the highest score wins; a tie between the
      highest is `Neutral`. Pieces without a sentiment (an answer that did not parse) do not
      vote; None when no piece has one.
    - `parse_failures`: the outputs (`ner`, `sa`) that failed to parse in any piece, once each.
    - `pieces`: per piece {start, end (seconds), transcript, entities ([tag, phrase]), sentiment,
      parse_failures, raw}: what the piece's result holds, with its times.

    Which of transcript / entities / sentiment are present follows the pieces' results (the
    tasks decoded); with no pieces (no speech found) it follows `tasks` when given (`asr`,
    `ner`, `sa`, `all` as in `prompts.TASKS`), else all three are present, empty.
    """
    if len(segments) != len(per_piece):
        raise ValueError(f"{len(segments)} segments but {len(per_piece)} results")
    per_piece_results = [p.to_dict() for p in per_piece]
    fields = {"transcript", "entities", "sentiment"}
    if per_piece_results:
        fields = {k for r in per_piece_results for k in r} & fields
    elif tasks is not None:
        fields = set()
        for t in tasks:
            fields |= {
                "asr": {"transcript"},
                "ner": {"transcript", "entities"},
                "sa": {"sentiment"},
                "all": {"transcript", "entities", "sentiment"},
            }[t]
    pieces: list[dict[str, Any]] = []
    failures: list[str] = []
    for seg, r in zip(segments, per_piece_results, strict=True):
        piece: dict[str, Any] = {"start": round(seg.start_s, 3), "end": round(seg.end_s, 3)}
        for key in ("transcript", "entities", "sentiment", "parse_failures", "raw"):
            if key in r:
                piece[key] = r[key]
        pieces.append(piece)
        failures += [f for f in r.get("parse_failures", []) if f not in failures]
    out: dict[str, Any] = {}
    if "transcript" in fields:
        out["transcript"] = " ".join(
            t for p in pieces if (t := (p.get("transcript") or "").strip())
        )
    if "entities" in fields:
        out["entities"] = [
            [*entity, p["start"], p["end"]] for p in pieces for entity in p.get("entities", [])
        ]
    if "sentiment" in fields:
        out["sentiment"] = overall_sentiment(
            [
                (seg.seconds, r.get("sentiment"))
                for seg, r in zip(segments, per_piece_results, strict=True)
            ]
        )
    out["parse_failures"] = failures
    out["pieces"] = pieces
    return out


def overall_sentiment(votes: Sequence[tuple[float, str | None]]) -> str | None:
    """The label with the most seconds among (seconds, label) votes; a tie at the top is
    `Neutral`; None votes are skipped; None when no vote is left."""
    scores: dict[str, float] = {}
    for seconds, label in votes:
        if label is not None:
            scores[label] = scores.get(label, 0.0) + seconds
    if not scores:
        return None
    best = max(scores.values())
    top = [s for s, w in scores.items() if math.isclose(w, best, rel_tol=1e-9, abs_tol=1e-6)]
    return top[0] if len(top) == 1 else NEUTRAL
