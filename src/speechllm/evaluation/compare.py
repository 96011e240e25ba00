"""Is system A really better than system B on the same clips? The paired bootstrap over utterances.

On a benchmark of 164 clips (60 with a sentiment, 100 with entities) one clip moves sentiment
macro F1 by about two points, so two models' figures differ by chance as much as by skill. The
paired bootstrap (Koehn 2004, "Statistical significance tests for machine translation
evaluation") resamples the utterances with replacement, scores both systems on each resample
exactly as `compute_metrics` scores the whole set, and reports the spread of the difference.

Every corpus figure here is a function of per-utterance counts (word edits and reference words;
entity true positives, gold and predicted counts; the gold and predicted sentiment class), so a
resample is a sum over its utterances' counts: thousands of resamples take a second, where
rescoring each from the text would take minutes. `scipy.stats.bootstrap` is not used: it
resamples anew for each statistic, where here all four figures of both systems are read off the
same resamples, so the SLUE score's difference stays consistent with its parts'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speechllm.data.manifest import Utterance
from speechllm.evaluation import slue
from speechllm.evaluation.metrics import UNPARSED, align
from speechllm.model.answers import Prediction

METRICS: tuple[str, ...] = ("wer", "ner_f1", "sa_macro_f1", "slue_score")
"""What is compared, with `compute_metrics`' names; WER is better lower, the rest higher."""


@dataclass(frozen=True)
class UtteranceCounts:
    """One system's per-utterance counts over a reference set of N utterances (arrays (N,))."""

    edits: np.ndarray
    """Word edits against the reference (SLUE-normalised, as `slue.word_errors` counts)."""
    words: np.ndarray
    """Reference words."""
    ner: np.ndarray
    """(N, 3) entity true positives, gold entities, predicted entities; 0 where the reference
    has no entity labels (it is then not scored for NER)."""
    gold_class: np.ndarray
    """Index into `classes` of the gold sentiment; -1 where the reference has none."""
    pred_class: np.ndarray
    """Index into `classes` of the predicted sentiment (`UNPARSED` for no answer); -1 as above."""
    classes: tuple[str, ...]
    """Every sentiment label seen in gold or predictions (scikit-learn's macro average runs over
    the labels present, so a stray label counts as a class of F1 0)."""


def utterance_counts(
    references: Sequence[Utterance], predictions: Sequence[Prediction], classes: Sequence[str]
) -> UtteranceCounts:
    """Per-utterance counts of `predictions` (matched by id, `metrics.align`) against
    `references`; sentiment labels are indexed in `classes`, which must hold every one seen."""
    preds = align(references, predictions)
    n = len(references)
    edits, words = np.zeros(n), np.zeros(n)
    ner = np.zeros((n, 3))
    gold_class, pred_class = np.full(n, -1), np.full(n, -1)
    for i, (r, p) in enumerate(zip(references, preds, strict=True)):
        edits[i], words[i] = slue.word_errors([r.text], [p.transcript or ""])
        if r.entities is not None:
            s = slue.ner_scores([r.entities], [p.entities or []])
            ner[i] = (s["tp"], s["n_gold"], s["n_pred"])
        if r.sentiment is not None:
            gold_class[i] = classes.index(r.sentiment)
            pred_class[i] = classes.index(p.sentiment or UNPARSED)
    return UtteranceCounts(edits, words, ner, gold_class, pred_class, tuple(classes))


def resampled_scores(counts: UtteranceCounts, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The corpus figures (x100) of each resample: `idx` (R, N) utterance indices -> {metric:
    (R,)}. With `idx` = [range(N)] these are exactly `compute_metrics`' figures."""
    out: dict[str, np.ndarray] = {}
    words = counts.words[idx].sum(axis=1)
    out["wer"] = 100.0 * counts.edits[idx].sum(axis=1) / np.where(words > 0, words, 1)
    tp, n_gold, n_pred = (counts.ner[idx, k].sum(axis=1) for k in range(3))
    # SLUE's micro F1 (`slue._prf`): 2PR/(P+R) = 2 tp / (gold + predicted), 0 without any tp.
    out["ner_f1"] = 100.0 * np.where(tp > 0, 2 * tp / np.maximum(n_gold + n_pred, 1), 0.0)
    gold, pred = counts.gold_class[idx], counts.pred_class[idx]
    f1s, present = [], []
    for c in range(len(counts.classes)):
        hit = ((gold == c) & (pred == c)).sum(axis=1)
        support = (gold == c).sum(axis=1) + (pred == c).sum(axis=1)
        f1s.append(np.where(support > 0, 2 * hit / np.maximum(support, 1), 0.0))
        present.append(support > 0)
    n_present = np.maximum(np.sum(present, axis=0), 1)
    out["sa_macro_f1"] = 100.0 * np.sum(f1s, axis=0) / n_present
    out["slue_score"] = slue.slue_score(out["wer"], out["ner_f1"], out["sa_macro_f1"])
    return out


def paired_bootstrap(
    references: Sequence[Utterance],
    a: Sequence[Prediction],
    b: Sequence[Prediction],
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Compare systems `a` and `b` on `references` (both matched by id).

    Returns {metric: {"a", "b" (the figures on the whole set), "diff" (a - b), "low", "high"
    (the `confidence` percentile interval of a - b over the resamples), "a_better" (the share of
    resamples where a is better: lower WER, higher F1 and SLUE score)}} for the metrics of
    `METRICS` the references label: a WER needs transcripts, NER F1 entity labels, sentiment a
    sentiment, the SLUE score all three.
    """
    labels = {r.sentiment for r in references if r.sentiment is not None}
    for p in (*a, *b):
        labels.add(p.sentiment or UNPARSED)
    classes = sorted(labels)
    ca, cb = (utterance_counts(references, p, classes) for p in (a, b))
    n = len(references)
    whole = np.arange(n)[None, :]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    full_a, full_b = resampled_scores(ca, whole), resampled_scores(cb, whole)
    boot_a, boot_b = resampled_scores(ca, idx), resampled_scores(cb, idx)
    has = {
        "wer": any(r.text.strip() for r in references),
        "ner_f1": any(r.entities is not None for r in references),
        "sa_macro_f1": any(r.sentiment is not None for r in references),
    }
    has["slue_score"] = all(has.values())
    tail = 100 * (1 - confidence) / 2
    out: dict[str, dict[str, float]] = {}
    for m in METRICS:
        if not has[m]:
            continue
        diff = boot_a[m] - boot_b[m]
        better = diff < 0 if m == "wer" else diff > 0
        out[m] = {
            "a": float(full_a[m][0]),
            "b": float(full_b[m][0]),
            "diff": float(full_a[m][0] - full_b[m][0]),
            "low": float(np.percentile(diff, tail)),
            "high": float(np.percentile(diff, 100 - tail)),
            "a_better": float(better.mean()),
        }
    return out
