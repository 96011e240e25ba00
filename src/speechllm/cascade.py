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

The answers have the shape of `inference.understand`'s, so `speechllm evaluate` scores and reports
them with exactly the code of the end-to-end evaluation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from num2words import num2words

from speechllm.errors import ModelSourceError
from speechllm.manifest import Utterance

if TYPE_CHECKING:
    from transformers import (
        PreTrainedTokenizerBase,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    from speechllm.annotate import Annotator

SAMPLE_RATE = 16000
MAX_SECONDS = 30.0
"""Whisper's window: the cascade transcribes clips of at most 30 s (short-form decoding)."""


# ------------------------------------------------------------------------------ ASR


@dataclass
class WhisperTranscriber:
    """Whisper with its own decoder: waveforms -> text, greedy, English."""

    model: WhisperForConditionalGeneration
    feature_extractor: WhisperFeatureExtractor
    tokenizer: PreTrainedTokenizerBase

    @classmethod
    def load(cls, name_or_path: str) -> WhisperTranscriber:
        """Load a packaged name (`sources.py`), a local HF directory or a hub id."""
        from transformers import (
            AutoTokenizer,
            WhisperFeatureExtractor,
            WhisperForConditionalGeneration,
        )

        from speechllm.sources import resolve

        path = resolve(name_or_path)
        try:
            model = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
            feature_extractor = WhisperFeatureExtractor.from_pretrained(path)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except OSError as exc:
            raise ModelSourceError(
                f"cannot load Whisper {name_or_path!r} (decoder and tokenizer included) from "
                f"{path}: {exc}"
            ) from exc
        return cls(model.eval(), feature_extractor, tokenizer)

    @torch.no_grad()
    def transcribe(self, audios: Sequence[np.ndarray]) -> list[str]:
        """Transcripts of 16 kHz waveforms (each (N_i,), at most 30 s), decoded together.

        Features are (B, n_mels, 3000): every clip padded to Whisper's 30 s window, as the
        decoder was trained, so a clip's transcript does not depend on its batch.
        """
        if not audios:
            return []
        features = self.feature_extractor(
            list(audios), sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features
        kwargs: dict[str, Any] = {}
        if getattr(self.model.generation_config, "is_multilingual", False):
            # English-only checkpoints refuse a language; multilingual ones must not guess it.
            kwargs.update(language="en", task="transcribe")
        device = next(self.model.parameters()).device
        out = self.model.generate(
            features.to(device),
            do_sample=False,
            num_beams=1,
            # The decoder's whole context, as the checkpoint's own generation config has it.
            max_length=self.model.config.max_target_positions,
            **kwargs,
        )
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


# ------------------------------------------------------------------------------ normalisation

_BILLION = 10**9
_TRILLION = 10**12


def _spell(n: int, to: str) -> str:
    """num2words' British English (`lang="en"`: "one hundred and twenty", "two thousand and
    fourteen") in SLUE's form: no commas ("two thousand, one hundred"), no hyphens
    ("twenty-one"). num2words goes on to "trillion"; SLUE-VoxPopuli's text has no such word, so
    from 10**12 on the count stays in billions ("one thousand billion"), with the "and" that
    num2words puts before a last part under a hundred."""
    if n < 0:
        raise ValueError(f"expected a non-negative integer, got {n}")
    if n >= _TRILLION:
        high, rest = divmod(n, _BILLION)
        if rest == 0:
            return number_words(high) + (" billion" if to == "cardinal" else " billionth")
        return number_words(high) + " billion" + (" and " if rest < 100 else " ") + _spell(rest, to)
    return num2words(n, lang="en", to=to).replace(",", "").replace("-", " ")


def number_words(n: int) -> str:
    """A non-negative integer in words as SLUE-VoxPopuli writes it (British "and"):
    2014 -> "two thousand and fourteen", 250 -> "two hundred and fifty"."""
    return _spell(n, "cardinal")


def ordinal_words(n: int) -> str:
    """21 -> "twenty first", 12 -> "twelfth", 100 -> "one hundredth"."""
    return _spell(n, "ordinal")


_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_INTEGER = re.compile(r"\d+")
_THOUSANDS = re.compile(r"\b(\d{1,3})((?:,\d{3})+)\b")
_NOT_KEPT = re.compile(r"[^a-z' .?;!]")
_SPACES = re.compile(r"\s+")


def normalize_transcript(text: str) -> str:
    """Whisper's text -> SLUE-VoxPopuli's `normalized_text` style.

    Lower case; `%` -> "per cent"; `1,000` -> 1000; ordinals ("13th"), decimals ("2.5" -> "two
    point five") and integers spelt out; hyphens and other punctuation become spaces except
    `' . ? ; !` (SLUE keeps those; its WER removes `. ? ; !`); whitespace collapsed.
    """
    t = text.lower().replace("%", " per cent ").replace("€", " euro ")
    t = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), t)
    t = _ORDINAL.sub(lambda m: ordinal_words(int(m.group(1))), t)
    t = _DECIMAL.sub(
        lambda m: (
            number_words(int(m.group(1)))
            + " point "
            + " ".join(number_words(int(d)) for d in m.group(2))
        ),
        t,
    )
    t = _INTEGER.sub(lambda m: " " + number_words(int(m.group(0))) + " ", t)
    t = _NOT_KEPT.sub(" ", t)
    # A full stop left alone between spaces (e.g. from "...") is no word.
    words = [w for w in _SPACES.sub(" ", t).strip().split(" ") if w.strip(".?;!'")]
    return " ".join(words)


# ------------------------------------------------------------------------------ the cascade


@dataclass
class CascadeResult:
    """What the cascade produced: answers in `inference.understand`'s shape, plus timings."""

    answers: list[dict[str, Any]]
    """One per utterance: id, transcript, entities, sentiment, parse_failures, raw."""
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
    from speechllm.audio import load_audio

    out: list[str] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        audios = [load_audio(p, max_seconds=MAX_SECONDS) for p in chunk]
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
    labels (as `inference.evaluate` picks its jobs). A label the annotator could not produce
    (a recorded failure) is a parse failure of that task, as a malformed answer is end to end."""
    from speechllm.annotate import annotate_texts

    t0 = time.perf_counter()
    transcripts = transcribe_files(
        transcriber, [u.audio or "" for u in utts], batch_size, asr_progress
    )
    t1 = time.perf_counter()
    answers: list[dict[str, Any]] = [
        {"id": u.id, "transcript": t, "raw": {"asr": t}, "parse_failures": []}
        for u, t in zip(utts, transcripts, strict=True)
    ]
    for task in ("ner", "sa"):
        if task not in tasks and "all" not in tasks:  # `all`: every output
            continue
        labelled = [
            i
            for i, u in enumerate(utts)
            if (u.entities if task == "ner" else u.sentiment) is not None
        ]
        results = annotate_texts(
            annotator,
            task,
            [transcripts[i] for i in labelled],
            batch_size=batch_size,
            progress=label_progress,
        )
        for i, result in zip(labelled, results, strict=True):
            a = answers[i]
            a["raw"][task] = result.answer
            if task == "ner":
                a["entities"] = [list(e) for e in result.entities or []]
            else:
                a["sentiment"] = result.sentiment
            if not result.ok:
                a["parse_failures"].append(task)
    return CascadeResult(
        answers=answers,
        asr=str(transcriber.model.name_or_path),
        llm=annotator.name,
        asr_seconds=t1 - t0,
        label_seconds=time.perf_counter() - t1,
    )


def load_cascade(model_dir: str | Path) -> tuple[WhisperTranscriber, Annotator, dict[str, str]]:
    """The run's Whisper (with decoder) and base LLM (no LoRA, no adapter), named by its
    `speechllm_config.json`; also {"asr": name, "llm": name}."""
    from speechllm.annotate import Annotator
    from speechllm.model import read_model_config

    config = read_model_config(model_dir)
    transcriber = WhisperTranscriber.load(config.encoder)
    annotator = Annotator.load(config.llm)
    return transcriber, annotator, {"asr": config.encoder, "llm": config.llm}
