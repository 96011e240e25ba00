"""Cascade baseline: Whisper's own decoder transcribes, the run's base LLM labels the transcript.

`speechllm evaluate --cascade --model RUN_DIR ...` answers the question every end-to-end speech
LLM must answer: does it beat "ASR, then a text model"? With the same parts:

1. ASR: the Whisper checkpoint the run's encoder came from (`ModelConfig.encoder`, a packaged
   name such as `whisper-tiny.en` is a full `WhisperForConditionalGeneration` directory, decoder
   included) transcribes each clip with its own decoder: batched, greedy, English, no timestamps.
2. The transcript is normalised as SLUE's references are (`normalize_transcript`): lower case,
   numbers spelt out (SLUE writes "two thousand and fourteen", "twenty per cent"), punctuation
   other than `' . ? ; !` removed.
3. NER and SA: the run's base LLM (`ModelConfig.llm`, frozen, without the run's LoRA or adapter)
   labels the normalised transcript with `speechllm.annotate` (few-shot prompts, grammar-
   constrained greedy decoding, validation and one retry).

The answers are `Prediction`s, as the model's are, so `speechllm evaluate` scores and reports them
with exactly the code of the end-to-end evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from speechllm.data.manifest import Utterance
from speechllm.data.normalize import normalize_transcript
from speechllm.model.answers import Prediction
from speechllm.model.whisper_reader import WhisperTranscriber

if TYPE_CHECKING:
    from speechllm.annotate.annotator import Annotator


# ------------------------------------------------------------------------------ the cascade


@dataclass
class CascadeResult:
    """What the cascade produced: one prediction per utterance, plus timings."""

    predictions: list[Prediction]
    asr: str
    llm: str
    asr_seconds: float
    label_seconds: float


def transcribe_files(
    transcriber: WhisperTranscriber,
    paths: Sequence[str],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Normalised transcripts of audio files, decoded in batches; order preserved.

    Raises AudioError (naming the file) for a file that cannot be used or is over 30 s.
    """
    from speechllm.data.audio import WHISPER_WINDOW_SECONDS, load_audio

    out: list[str] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        audios = [load_audio(p, max_seconds=WHISPER_WINDOW_SECONDS) for p in chunk]
        out += [normalize_transcript(t) for t in transcriber.transcribe(audios)]
        if progress:
            progress(len(chunk))
    return out


def run_cascade(
    utts: Sequence[Utterance],
    tasks: Sequence[str],
    transcriber: WhisperTranscriber,
    annotator: Annotator,
    *,
    batch_size: int = 8,
    asr_progress: Callable[[int], None] | None = None,
    label_progress: Callable[[int], None] | None = None,
) -> CascadeResult:
    """Transcribe every utterance, then label NER / SA where `tasks` asks and the utterance has
    labels (as `inference.evaluate.labelled_tasks` picks the model's), with `label_transcripts`."""
    t0 = time.perf_counter()
    transcripts = transcribe_files(
        transcriber, [u.audio or "" for u in utts], batch_size, asr_progress
    )
    t1 = time.perf_counter()
    predictions = [
        Prediction(transcript=t, raw={"asr": t}, id=u.id)
        for u, t in zip(utts, transcripts, strict=True)
    ]
    for task in ("ner", "sa"):
        if task not in tasks and "all" not in tasks:  # `all`: every output
            continue
        labelled = [
            p
            for p, u in zip(predictions, utts, strict=True)
            if (u.entities if task == "ner" else u.sentiment) is not None
        ]
        label_transcripts(annotator, task, labelled, batch_size, label_progress)
    return CascadeResult(
        predictions=predictions,
        asr=str(transcriber.model.name_or_path),
        llm=annotator.name,
        asr_seconds=t1 - t0,
        label_seconds=time.perf_counter() - t1,
    )


def label_transcripts(
    annotator: Annotator,
    task: str,
    predictions: Sequence[Prediction],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Fill in the `task` (`ner` or `sa`) output of each prediction from the annotator's label of
    its transcript (`annotate.run.annotate_texts`). A label the annotator could not produce (a
    recorded failure) is a parse failure of that task, as a malformed answer is end to end."""
    from speechllm.annotate.run import annotate_texts

    results = annotate_texts(
        annotator,
        task,
        [p.transcript or "" for p in predictions],
        batch_size=batch_size,
        progress=progress,
    )
    for p, result in zip(predictions, results, strict=True):
        p.raw[task] = result.answer
        if task == "ner":
            p.entities = list(result.entities or [])
        else:
            p.sentiment = result.sentiment
        if not result.ok:
            p.parse_failures.append(task)


def load_cascade(model_dir: str | Path) -> tuple[WhisperTranscriber, Annotator, dict[str, str]]:
    """The run's Whisper (with decoder) and base LLM (no LoRA, no adapter), named by its
    `config.json`; also {"asr": name, "llm": name}."""
    from speechllm.annotate.annotator import Annotator
    from speechllm.model.saving import read_model_config

    config = read_model_config(model_dir)
    transcriber = WhisperTranscriber.load(config.encoder)
    annotator = Annotator.load(config.llm)
    return transcriber, annotator, {"asr": config.encoder, "llm": config.llm}
