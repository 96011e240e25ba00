"""Model-only diagnostics: figures only a model with those parts gives, beside the SLUE scores.

`diagnose` adds to an evaluation the CTC head's own WER (`ctc_wer`: how well the adapter alone
reads the speech) and the classifier heads' scores (`cls_sa_macro_f1`, `cls_tag_f1`). They score
the model's parts, not its answers, so they are a step of their own.
"""

from __future__ import annotations

from typing import Any

import torch

from speechllm.data.manifest import Utterance
from speechllm.evaluation.slue import sentiment_macro_f1, wer
from speechllm.model.batch import collate_frames
from speechllm.model.regularizer import predicted_sentiment, predicted_tags
from speechllm.model.speechllm import SpeechLLM


def diagnose(
    model: SpeechLLM, utts: list[Utterance], frames: list[torch.Tensor], batch_size: int = 8
) -> dict[str, Any]:
    """`ctc_wer` over the utterances with a transcript (models with a CTC reading: not the
    whisper route) and the classifier heads' `cls_*` scores (models with heads); frames (T_i, C)
    are the utterances' encoder frames."""
    out: dict[str, Any] = {}
    with_text = [i for i, u in enumerate(utts) if u.text]
    if with_text and model.reader is None:  # the whisper route has no CTC reading of its own
        hyps = ctc_decode(model, [frames[i] for i in with_text], batch_size)
        out["ctc_wer"] = wer([utts[i].text for i in with_text], hyps)
    if model.classifier is not None:
        out.update(_classifier_metrics(model, utts, frames, batch_size))
    return out


def ctc_decode(model: SpeechLLM, frames: list[torch.Tensor], batch_size: int = 16) -> list[str]:
    """The CTC head's greedy transcripts (no LLM): how well the adapter alone reads the speech."""
    out: list[str] = []
    for start in range(0, len(frames), batch_size):
        x, lengths = collate_frames(frames[start : start + batch_size])
        out.extend(model.ctc_transcripts(x, lengths))
    return out


def classify(
    model: SpeechLLM, frames: list[torch.Tensor], batch_size: int = 16
) -> list[dict[str, dict[str, float]]]:
    """The classifier heads' probabilities (see `SpeechLLM.classify`) for frames (T_i, C)."""
    out: list[dict[str, dict[str, float]]] = []
    for start in range(0, len(frames), batch_size):
        x, lengths = collate_frames(frames[start : start + batch_size])
        out.extend(model.classify(x, lengths))
    return out


def tag_presence_f1(gold: list[set[str]], pred: list[set[str]]) -> float:
    """Micro F1 x100 over (clip, tag) pairs: does the clip hold an entity of this tag?"""
    tp = sum(len(g & p) for g, p in zip(gold, pred, strict=True))
    fp = sum(len(p - g) for g, p in zip(gold, pred, strict=True))
    fn = sum(len(g - p) for g, p in zip(gold, pred, strict=True))
    return 100.0 * 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 100.0


def _classifier_metrics(
    model: SpeechLLM, utts: list[Utterance], frames: list[torch.Tensor], batch_size: int
) -> dict[str, Any]:
    """The classifier heads scored on every labelled utterance, whichever tasks were decoded:
    `cls_sa_macro_f1` (comparable with the LLM's `sa_macro_f1`) and `cls_tag_f1` (which SLUE
    tags occur, micro F1 at p >= 0.5)."""
    labelled = [i for i, u in enumerate(utts) if u.sentiment is not None or u.entities is not None]
    if not labelled:
        return {}
    probs = dict(
        zip(labelled, classify(model, [frames[i] for i in labelled], batch_size), strict=True)
    )
    out: dict[str, Any] = {}
    sa = [i for i in labelled if utts[i].sentiment is not None]
    if sa:
        out["cls_sa_macro_f1"] = sentiment_macro_f1(
            [utts[i].sentiment for i in sa], [predicted_sentiment(probs[i]) for i in sa]
        )
    tagged = [i for i in labelled if utts[i].entities is not None]
    if tagged:
        out["cls_tag_f1"] = tag_presence_f1(
            [{t for t, _ in utts[i].entities} for i in tagged],
            [predicted_tags(probs[i]) for i in tagged],
        )
    return out
