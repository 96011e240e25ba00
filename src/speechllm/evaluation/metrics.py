"""The one scorer: predictions against references, as the SLUE toolkit scores them.

`compute_metrics` gives every figure of `speechllm evaluate`, `speechllm score`, `speechllm
experiment`, training's held-out evaluation, the demo and the benchmarks: WER (overall and by
utterance length), NER (micro / macro / per tag, F1 and label-F1), sentiment (macro F1, per class,
confusion matrix), parse-failure counts and the SLUE score, each computed by
`speechllm.evaluation.slue`. Predictions are `model.answers.Prediction`s, matched to the
references by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from speechllm.data.manifest import Utterance
from speechllm.errors import ManifestError
from speechllm.evaluation import slue
from speechllm.labels import SENTIMENTS
from speechllm.model.answers import Prediction
from speechllm.model.prompts import TASKS

UNPARSED = "<unparsed>"
"""The class an unanswered sentiment counts as (the label `slue.sentiment_macro_f1` gives it)."""

LENGTH_BUCKETS: tuple[tuple[int, int | None], ...] = (
    (0, 0),
    (1, 5),
    (6, 10),
    (11, 20),
    (21, 40),
    (41, None),
)
"""Reference length buckets (words after SLUE normalisation, inclusive; None: no upper end)."""


def display_label(label: str) -> str:
    """A sentiment label as reports show it: "<unparsed>" would vanish as an HTML tag in
    rendered markdown."""
    return "unparsed" if label == UNPARSED else label


def align(references: Sequence[Utterance], predictions: Iterable[Prediction]) -> list[Prediction]:
    """The predictions in reference order, matched by id.

    Raises ManifestError naming (the first few of, and counting) reference ids without a
    prediction, predicted ids not in the reference, and ids predicted twice.
    """
    by_id: dict[str, Prediction] = {}
    twice: list[str] = []
    for p in predictions:
        if p.id in by_id:
            twice.append(p.id)
        by_id[p.id] = p
    ref_ids = {r.id for r in references}
    missing = [r.id for r in references if r.id not in by_id]
    extra = [i for i in by_id if i not in ref_ids]
    problems = []
    if missing:
        problems.append(f"{len(missing)} reference id(s) have no prediction: {_few(missing)}")
    if extra:
        problems.append(f"{len(extra)} predicted id(s) are not in the reference: {_few(extra)}")
    if twice:
        problems.append(f"{len(twice)} id(s) are predicted more than once: {_few(twice)}")
    if problems:
        raise ManifestError("; ".join(problems))
    return [by_id[r.id] for r in references]


def _few(ids: Sequence[str], k: int = 5) -> str:
    return ", ".join(ids[:k]) + (f", ... ({len(ids)} in all)" if len(ids) > k else "")


def compute_metrics(
    references: Sequence[Utterance],
    predictions: Iterable[Prediction],
    tasks: Sequence[str] = TASKS,
) -> dict[str, Any]:
    """All figures of predictions against references (matched by id; see `align`).

    A task is scored where it is in `tasks` and the references label it: ASR when some reference
    has text (WER then runs over every reference, as the toolkit's corpus WER does), NER over the
    references with entities (a prediction's None counts as no entities), sentiment over those
    with a sentiment (a prediction's None counts as the class `UNPARSED`, as in
    `slue.sentiment_macro_f1`). The SLUE score needs all three. Parse failures are counted over
    the same references: the predictions that flag the output (`Prediction.failed`).

    Keys (percentages x100): `n`, `tasks`; `wer`, `wer_errors`, `wer_ref_words`,
    `wer_by_length`; `ner_f1`, `ner_precision`, `ner_recall`, `ner_macro_f1`, the same with
    `ner_label_`, `ner_tp`, `ner_n_gold`, `ner_n_pred`, `ner_n`, `ner_per_tag`,
    `ner_label_per_tag`, `ner_parse_failures`; `sa_macro_f1`, `sa_accuracy`, `sa_n`,
    `sa_per_class`, `sa_confusion`, `sa_parse_failures`; `slue_score`.
    """
    preds = align(references, predictions)
    if "all" in tasks:  # one generation answers all three
        tasks = [*tasks, "asr", "ner", "sa"]
    metrics: dict[str, Any] = {
        "n": len(references),
        "tasks": [t for t in TASKS if t in tasks and t != "all"],
    }

    if "asr" in tasks and any(r.text.strip() for r in references):
        refs = [r.text for r in references]
        hyps = [p.transcript or "" for p in preds]
        edits, words = slue.word_errors(refs, hyps)
        metrics["wer"] = slue.wer(refs, hyps)
        metrics["wer_errors"] = edits
        metrics["wer_ref_words"] = words
        metrics["wer_by_length"] = wer_by_length(refs, hyps)

    ner = [(r, p) for r, p in zip(references, preds, strict=True) if r.entities is not None]
    if "ner" in tasks and ner:
        s = slue.ner_scores([r.entities or [] for r, _ in ner], [p.entities or [] for _, p in ner])
        for prefix in ("", "label_"):
            for key in ("f1", "precision", "recall", "macro_f1"):
                metrics[f"ner_{prefix}{key}"] = s[prefix + key]
        metrics.update(ner_tp=s["tp"], ner_n_gold=s["n_gold"], ner_n_pred=s["n_pred"])
        metrics["ner_n"] = len(ner)
        metrics["ner_per_tag"] = s["per_tag"]
        metrics["ner_label_per_tag"] = s["label_per_tag"]
        metrics["ner_parse_failures"] = sum(p.failed("ner") for _, p in ner)

    sa = [(r, p) for r, p in zip(references, preds, strict=True) if r.sentiment is not None]
    if "sa" in tasks and sa:
        gold = [r.sentiment or "" for r, _ in sa]
        pred = [p.sentiment for _, p in sa]
        metrics["sa_macro_f1"] = slue.sentiment_macro_f1(gold, pred)
        metrics.update(sentiment_details(gold, pred))
        metrics["sa_n"] = len(sa)
        metrics["sa_parse_failures"] = sum(p.failed("sa") for _, p in sa)

    if {"wer", "ner_f1", "sa_macro_f1"} <= metrics.keys():
        metrics["slue_score"] = slue.slue_score(
            metrics["wer"], metrics["ner_f1"], metrics["sa_macro_f1"]
        )
    return metrics


def _bucket_name(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def wer_by_length(references: Sequence[str], hypotheses: Sequence[str]) -> list[dict[str, Any]]:
    """Corpus WER per reference-length bucket (`LENGTH_BUCKETS`; empty buckets left out).

    Each: {words (bucket name), n (utterances), ref_words, errors, wer}; WER as `slue.wer` (so the
    buckets' errors and words add up to the overall figures).
    """
    groups: dict[int, list[int]] = {}
    for i, ref in enumerate(references):
        length = len(slue.normalize_text(ref).split())
        b = next(
            k
            for k, (lo, hi) in enumerate(LENGTH_BUCKETS)
            if lo <= length and (hi is None or length <= hi)
        )
        groups.setdefault(b, []).append(i)
    out = []
    for b in sorted(groups):
        idx = groups[b]
        refs = [references[i] for i in idx]
        hyps = [hypotheses[i] for i in idx]
        edits, words = slue.word_errors(refs, hyps)
        out.append(
            {
                "words": _bucket_name(*LENGTH_BUCKETS[b]),
                "n": len(idx),
                "ref_words": words,
                "errors": edits,
                "wer": slue.wer(refs, hyps),
            }
        )
    return out


def sentiment_details(gold: Sequence[str], pred: Sequence[str | None]) -> dict[str, Any]:
    """Accuracy, per-class figures and confusion matrix of sentiment predictions (x100).

    `sa_per_class` covers the classes scikit-learn's macro average runs over (those in gold or
    predictions, `UNPARSED` included), so the mean of its F1s is `sa_macro_f1`. `sa_confusion`
    is {gold, predicted, matrix}: one row per gold class (the three, plus any other label seen),
    one column per predicted class (the same, and `UNPARSED` last where some answer named none).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = [p if p is not None else UNPARSED for p in pred]
    used = set(gold) | set(labels)
    others = sorted(used - set(SENTIMENTS) - {UNPARSED})
    # Gold rows: the three classes and any other gold label; predicted columns add UNPARSED last.
    rows = [*SENTIMENTS, *others]
    columns = rows + ([UNPARSED] if UNPARSED in used else [])
    scored = [c for c in columns if c in used]  # what scikit-learn's macro average runs over
    p, r, f, _ = precision_recall_fscore_support(
        list(gold), labels, labels=scored, average=None, zero_division=0
    )
    per_class = {
        lab: {
            "precision": 100.0 * float(p[i]),
            "recall": 100.0 * float(r[i]),
            "f1": 100.0 * float(f[i]),
            "n_gold": sum(g == lab for g in gold),
            "n_pred": sum(x == lab for x in labels),
        }
        for i, lab in enumerate(scored)
    }
    matrix = confusion_matrix(list(gold), labels, labels=columns)[: len(rows)]
    accuracy = 100.0 * sum(g == x for g, x in zip(gold, labels, strict=True)) / len(gold)
    return {
        "sa_accuracy": accuracy,
        "sa_per_class": per_class,
        "sa_confusion": {"gold": rows, "predicted": columns, "matrix": matrix.tolist()},
    }
