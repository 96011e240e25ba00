"""A model scored on a manifest: what `speechllm evaluate`, `speechllm experiment`, training's
held-out evaluation and the demo run, so the same weights and utterances give the same figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from speechllm.config import DECODE_BATCH
from speechllm.data.manifest import Utterance
from speechllm.evaluation.metrics import compute_metrics
from speechllm.inference.decode import answer, encode_files
from speechllm.inference.diagnostics import diagnose
from speechllm.model.answers import Prediction
from speechllm.model.speechllm import SpeechLLM


def labelled_tasks(u: Utterance, tasks: Sequence[str]) -> list[str]:
    """The tasks of `tasks` an utterance can be scored on: `ner` where it has entity labels,
    `sa` where it has a sentiment; `asr` and `all` always."""
    return [
        t
        for t in tasks
        if not ((t == "ner" and u.entities is None) or (t == "sa" and u.sentiment is None))
    ]


def evaluate(
    model: SpeechLLM,
    utts: list[Utterance],
    tasks: Sequence[str],
    frames: list[torch.Tensor] | None = None,
    batch_size: int = DECODE_BATCH,
    encode_progress: Callable[[int], None] | None = None,
    decode_progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], list[Prediction]]:
    """Answer each utterance for each task it has labels for (`labelled_tasks`), score the
    answers (`evaluation.metrics.compute_metrics`) and add the model's diagnostics (`diagnose`).

    `frames` (T_i, C) per utterance, when given, are used instead of encoding the utterances'
    audio (`encode_files`). Returns (metrics, one prediction per utterance, in order).
    """
    with torch.no_grad():
        if frames is None:
            frames = encode_files(model, [u.audio or "" for u in utts], batch_size, encode_progress)
        predictions = answer(
            model,
            frames,
            [labelled_tasks(u, tasks) for u in utts],
            batch_size,
            decode_progress,
            ids=[u.id for u in utts],
        )
        metrics = compute_metrics(utts, predictions, tasks)
        metrics.update(diagnose(model, utts, frames, batch_size))
    return metrics, predictions
