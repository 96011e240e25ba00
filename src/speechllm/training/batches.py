"""What a training step reads: the manifests' utterances, the encoder-frame cache built across
processes, the `whisper` route's transcripts, and the `Batch` of a list of examples.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jiwer
from accelerate import Accelerator
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from speechllm.config import SpecAugmentConfig
from speechllm.data.manifest import Utterance, read_manifest
from speechllm.data.normalize import normalize_transcript
from speechllm.model.batch import collate_frames
from speechllm.model.prompts import phrase_pattern
from speechllm.model.speechllm import Batch, SpeechLLM
from speechllm.training.features import FeatureCache
from speechllm.training.sampler import Example, spec_augment


def load_utterances(
    paths: list[str], max_seconds: float, require_audio: bool = True
) -> list[Utterance]:
    """The utterances of the manifests `paths`, without those longer than `max_seconds`."""
    utts: list[Utterance] = []
    for p in paths:
        utts += [
            u
            for u in read_manifest(p, require_audio=require_audio)
            if (u.duration or 0) <= max_seconds
        ]
    return utts


def speech_text(example: Example, transcripts: dict[str, str] | None) -> str:
    """The text that stands in for an example's speech where no frames are read: Whisper's
    reading of its clip (`transcripts`, keyed by audio path) where given, else its own text."""
    return transcripts[example.utt.audio or ""] if transcripts else example.utt.text


def make_batch(
    examples: list[Example],
    cache: FeatureCache | None,
    spec: SpecAugmentConfig | None = None,
    transcripts: dict[str, str] | None = None,
) -> Batch:
    """A training batch: encoder frames from `cache` (masked per `spec` when given), or, without
    a cache, transcripts standing in for the speech: `transcripts[audio]` (the `whisper` route's
    readings) where given, else the utterance's own text (`kind: text` stages)."""
    if cache is None:
        frames = lengths = None
        texts = [speech_text(e, transcripts) for e in examples]
    else:
        frames, lengths = collate_frames([cache.get(e.utt.audio) for e in examples])
        if spec is not None and (spec.time_masks or spec.feature_masks):
            frames = spec_augment(frames, lengths, spec)
        texts = None
    return Batch(
        speech_texts=texts,
        frames=frames,
        frame_lengths=lengths,
        tasks=[e.task for e in examples],
        answers=[e.answer for e in examples],
        transcripts=[e.utt.text for e in examples],
        # Labels for the classifier loss come from the utterance, whatever the example's task.
        sentiments=[e.utt.sentiment if e.learn_sentiment else None for e in examples],
        entity_tags=[
            None if e.utt.entities is None else sorted({tag for tag, _ in e.utt.entities})
            for e in examples
        ],
        unscored=[e.unscored for e in examples],
    )


def whisper_readings(
    model: SpeechLLM, cache: FeatureCache, utts: list[Utterance], out: Path, console: Console
) -> dict[str, str]:
    """Whisper's transcript of each training clip (the `whisper` route's input), decoded once
    and kept in `<out>/whisper_readings.json` (keyed by audio path), so a resumed run reads them
    back instead of decoding again."""
    path = out / "whisper_readings.json"
    readings: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    todo = sorted({u.audio for u in utts} - set(readings))
    assert model.reader is not None
    with Progress(
        TextColumn("[bold]whisper readings"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as p:
        bar = p.add_task("read", total=len(todo))
        for start in range(0, len(todo), 16):
            chunk = todo[start : start + 16]
            frames, lengths = collate_frames([cache.get(a) for a in chunk])
            readings.update(zip(chunk, model.reader.read(frames, lengths), strict=True))
            # Atomically: a run killed mid-write must still resume from the file.
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(readings))
            os.replace(tmp, path)
            p.advance(bar, len(chunk))
    return readings


def on_readings(utts: list[Utterance], readings: dict[str, str]) -> list[Utterance]:
    """The utterances with Whisper's reading as their text and only the gold entities whose
    phrase the reading holds as whole words: the answers a model that copies its reading
    (`model.copy_reading`) can give, so the joint stage teaches where markup goes in what the
    model will copy, not how to rewrite the reading. Sentiment is kept."""
    out = []
    for u in utts:
        reading = readings[u.audio or ""]
        entities = None
        if u.entities is not None:
            entities = [
                (tag, phrase)
                for tag, phrase in u.entities
                if phrase_pattern(phrase).search(reading)
            ]
        out.append(dataclasses.replace(u, text=reading, entities=entities))
    return out


def usable_readings(
    utts: list[Utterance], readings: dict[str, str], max_wer: float
) -> tuple[list[Utterance], list[Utterance]]:
    """(kept, dropped): the utterances whose Whisper reading is within `max_wer` (a fraction,
    SLUE-normalised WER against the gold transcript) and those it is not. Noisy augmented clips
    make Whisper loop ("the first time i was in the first time i was in ...", hundreds of words
    for a 20-word clip) or read nothing; such a reading teaches the LLM nothing it will meet on
    clean input, and a looping one pads its whole batch to hundreds of tokens (a 16-row batch of
    them exhausted 24 GiB)."""
    kept, dropped = [], []
    for u in utts:
        reference = normalize_transcript(u.text)
        reading = normalize_transcript(readings[u.audio or ""])
        ok = bool(reference) and jiwer.wer(reference, reading or "<empty>") <= max_wer
        (kept if ok else dropped).append(u)
    return kept, dropped


def build_cache(
    cache: FeatureCache, audio: list[str], accelerator: Accelerator, console: Console
) -> None:
    """Each process encodes its share; then every process loads all entries from disk."""
    unique = sorted(set(audio))
    mine = unique[accelerator.process_index :: accelerator.num_processes]
    with Progress(
        TextColumn("[bold]encoder cache"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=not accelerator.is_main_process,
    ) as p:
        bar = p.add_task("cache", total=len(mine))
        cache.build(mine, progress=lambda n: p.advance(bar, n))
    accelerator.wait_for_everyone()
    cache.build(unique)
