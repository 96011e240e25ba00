"""Decoding utterances with a trained model, and scoring the answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from speechllm.config import DECODE_BATCH
from speechllm.data.manifest import Utterance
from speechllm.data.sampler import collate_frames
from speechllm.evaluation.slue import sentiment_macro_f1, wer
from speechllm.model.prompts import parse_all, parse_asr, parse_ner, parse_sentiment
from speechllm.model.regularizer import predicted_sentiment, predicted_tags
from speechllm.model.speechllm import SpeechLLM


def decode(
    model: SpeechLLM,
    frames: list[torch.Tensor],
    tasks: list[str],
    batch_size: int = DECODE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Raw answers for (frames_i (T_i, C), task_i) pairs, batched; order preserved.

    Items are sorted by length so each batch pads little; batched greedy decoding gives the same
    answers as one-by-one (left padding, masked attention, positions from the mask).
    """
    readings = _whisper_readings(model, frames, batch_size) if model.reader is not None else None
    order = sorted(range(len(frames)), key=lambda i: frames[i].shape[0])
    answers: list[str] = [""] * len(frames)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if readings is not None:
            speech = model.text_speech([readings[id(frames[i])] for i in idx])
            outs = model.generate_from(*speech, [tasks[i] for i in idx])
        else:
            x, lengths = collate_frames([frames[i] for i in idx])
            outs = model.generate(x, lengths, [tasks[i] for i in idx])
        for i, out in zip(idx, outs, strict=True):
            answers[i] = out
        if progress:
            progress(len(idx))
    return answers


def _whisper_readings(
    model: SpeechLLM, frames: list[torch.Tensor], batch_size: int
) -> dict[int, str]:
    """Whisper's transcript of each distinct clip among `frames` (keyed by the tensor's id): a
    clip asked for several tasks is read once, not once per task."""
    assert model.reader is not None
    unique = list({id(f): f for f in frames}.values())
    out: dict[int, str] = {}
    for start in range(0, len(unique), batch_size):
        chunk = unique[start : start + batch_size]
        x, lengths = collate_frames(chunk)
        out.update(zip((id(f) for f in chunk), model.reader.read(x, lengths), strict=True))
    return out


def encode_files(
    model: SpeechLLM,
    paths: list[str],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Encoder frames (T_i, C) of each audio file, encoded in batches; order preserved.

    Raises AudioError (naming the file) for a file that cannot be used. Batched encoding gives
    each clip the frames it gets alone (the encoder masks padding), so the batch size changes
    only the speed.
    """
    from speechllm.data.audio import load_audio

    out: list[torch.Tensor] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        with torch.no_grad():
            frames, lengths = model.encoder([model.encoder.check(load_audio(p), p) for p in chunk])
        out.extend(f[: int(n)].clone() for f, n in zip(frames, lengths, strict=True))
        if progress:
            progress(len(chunk))
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


def understand(answers: dict[str, str]) -> dict[str, Any]:
    """Parse raw answers per task into {transcript, entities, sentiment, parse_failures}."""
    result: dict[str, Any] = {"raw": answers, "parse_failures": []}
    if "all" in answers:
        # One generation carries all three; answers of separate tasks, if also asked, win below.
        joint = parse_all(answers["all"])
        result["transcript"] = joint.ner.text
        result["entities"] = [list(e) for e in joint.ner.entities]
        result["sentiment"] = joint.sentiment
        # Failures are counted per output, as for the separate answers.
        result["parse_failures"] += [
            t for t, ok in (("ner", joint.ner.ok), ("sa", joint.sentiment is not None)) if not ok
        ]
    if "ner" in answers:
        ner = parse_ner(answers["ner"])
        result["entities"] = [list(e) for e in ner.entities]
        result["transcript"] = ner.text
        if not ner.ok:
            result["parse_failures"].append("ner")
    if "asr" in answers:
        result["transcript"] = parse_asr(answers["asr"])
    if "sa" in answers:
        result["sentiment"] = parse_sentiment(answers["sa"])
        if result["sentiment"] is None:
            result["parse_failures"].append("sa")
    return result


def evaluate(
    model: SpeechLLM,
    utts: list[Utterance],
    frames: list[torch.Tensor],
    tasks: list[str],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Decode each utterance for each task it has labels for (`all`: every utterance).

    Returns (diagnostics, answers): the figures only a model gives (the CTC head's own WER, the
    classifier heads' `cls_*` scores), and one `understand` dict per decoded utterance with its
    `id`. The SLUE scores of the answers come from `report.score_answers`, the one scorer of
    training, `evaluate`, `experiment`, `score` and the demo.
    """
    jobs: list[tuple[int, str]] = []
    for i, u in enumerate(utts):
        for task in tasks:
            if (task == "ner" and u.entities is None) or (task == "sa" and u.sentiment is None):
                continue
            jobs.append((i, task))
    raw = decode(model, [frames[i] for i, _ in jobs], [t for _, t in jobs], batch_size, progress)
    per_utt: dict[int, dict[str, str]] = {}
    for (i, task), answer in zip(jobs, raw, strict=True):
        per_utt.setdefault(i, {})[task] = answer
    answers = []
    for i, texts in sorted(per_utt.items()):
        p = understand(texts)
        p["id"] = utts[i].id
        answers.append(p)
    diagnostics: dict[str, Any] = {}
    with_text = [i for i, u in enumerate(utts) if u.text]
    if with_text and model.reader is None:  # the whisper route has no CTC reading of its own
        hyps = ctc_decode(model, [frames[i] for i in with_text], batch_size)
        diagnostics["ctc_wer"] = wer([utts[i].text for i in with_text], hyps)
    if model.classifier is not None:
        diagnostics.update(_classifier_metrics(model, utts, frames, batch_size))
    return diagnostics, answers


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
