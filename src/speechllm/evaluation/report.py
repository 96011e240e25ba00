"""Scores to files: metrics from references and predictions, SLUE submission files, plots, report.

`speechllm evaluate` (decode a manifest, then score) and `speechllm score` (score predictions made
elsewhere) share everything here, so the same predictions give the same files either way:

- `compute_metrics`: WER, NER (micro/macro/per tag, F1 and label-F1) and sentiment (macro F1, per
  class, confusion matrix) exactly as `speechllm.evaluation.slue` scores them (the SLUE toolkit's numbers),
  WER by utterance length, parse-failure counts and the SLUE score.
- `write_report`: `metrics.json`, `predictions.jsonl` (manifest format), `slue_submission.tsv`
  (SLUE's submission layout), the NER `.wrd` files the SLUE evaluator reads, PNG plots and
  `report.md`.

Predictions are `Utterance`s: `text` is the predicted transcript, `entities` the predicted
(tag, phrase) pairs (None: no NER answer), `sentiment` the predicted class (None: no answer, or an
answer that named no class).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from speechllm.data.manifest import Utterance, read_manifest, write_manifest
from speechllm.errors import ManifestError
from speechllm.evaluation.slue import (
    ner_scores,
    normalize_phrase,
    normalize_text,
    sentiment_macro_f1,
    slue_score,
    slue_tag,
    wer,
    word_errors,
)
from speechllm.labels import SENTIMENTS, SLUE_TAGS
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

DPI = 100
NER_PLOT_SIZE = (8.0, 4.5)
CONFUSION_PLOT_SIZE = (6.0, 5.0)
WER_PLOT_SIZE = (8.0, 4.5)
"""Plot sizes in inches; at `DPI` dots per inch the PNGs are 800x450, 600x500 and 800x450."""

FILES: dict[str, str] = {
    "metrics": "metrics.json",
    "predictions": "predictions.jsonl",
    "submission": "slue_submission.tsv",
    "ner_hyp": "slue_ner_hyp.wrd",
    "ner_ref": "slue_ner_ref.wrd",
    "ner_plot": "ner_f1_by_tag.png",
    "confusion_plot": "sentiment_confusion.png",
    "wer_plot": "wer_by_length.png",
    "report": "report.md",
}
"""What `write_report` writes into its folder (the NER files and plots only where scored)."""

SUBMISSION_COLUMNS = ("id", "pred_text", "pred_ner", "pred_sentiment")

# SLUE's submission format and its evaluator name entities by OntoNotes tag and score them after
# mapping to the combined tags. Our model predicts combined tags, so each is written as one
# OntoNotes tag that maps back to it: scoring on combined tags (SLUE's reported NER figure) is
# then exact.
SLUE_TO_ONTONOTES: dict[str, str] = {
    "PLACE": "GPE",
    "QUANT": "CARDINAL",
    "WHEN": "DATE",
    "ORG": "ORG",
    "NORP": "NORP",
    "PERSON": "PERSON",
    "LAW": "LAW",
}

# slue-toolkit `generic_utils.raw_entity_to_spl_char` for the tags above: the character that
# opens an entity in a `.wrd` line (`... in % strasbourg ] that ...`); `]` closes it.
_WRD_MARK: dict[str, str] = {
    "GPE": "%",
    "CARDINAL": "!",
    "DATE": "@",
    "ORG": "`",
    "NORP": ")",
    "PERSON": "}",
    "LAW": "&",
}


# ------------------------------------------------------------------ predictions


def align(references: Sequence[Utterance], predictions: Iterable[Utterance]) -> list[Utterance]:
    """The predictions in reference order, matched by id.

    Raises ManifestError naming (the first few of, and counting) reference ids without a
    prediction, predicted ids not in the reference, and ids predicted twice.
    """
    by_id: dict[str, Utterance] = {}
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


def read_predictions(path: str | os.PathLike[str]) -> list[Utterance]:
    """Predictions in manifest format (JSONL); `audio` and `duration` may be left out.

    Every line is checked as a manifest line is (tags, sentiment classes, unique ids); all
    problems are reported together, "file:line: what is wrong" per line.
    """
    return read_manifest(path, defaults={"audio": None, "duration": None}, what="predictions file")


def predictions_from_answers(
    references: Sequence[Utterance], answers: Sequence[dict[str, Any]]
) -> list[Utterance]:
    """`inference.evaluate`'s parsed answers as predictions, one per reference (reference order).

    A reference without answers (no task applied to it) gets an empty prediction. Entities whose
    phrase is only whitespace are dropped (no manifest line may hold one; SLUE scoring drops
    them too, so the scores do not change).
    """
    by_id = {a["id"]: a for a in answers}
    out = []
    for r in references:
        a = by_id.get(r.id, {})
        ents = a.get("entities")
        entities = (
            None if ents is None else [(t, " ".join(ph.split())) for t, ph in ents if ph.strip()]
        )
        out.append(
            Utterance(
                r.id,
                r.audio,
                r.duration,
                a.get("transcript", ""),
                entities,
                a.get("sentiment"),
                r.split,
            )
        )
    return out


def score_answers(
    references: Sequence[Utterance],
    answers: Sequence[dict[str, Any]],
    raw_metrics: dict[str, Any],
    tasks: Sequence[str],
) -> tuple[dict[str, Any], list[Utterance]]:
    """`inference.evaluate`'s (raw_metrics, answers) -> (SLUE metrics, predictions).

    The one scoring step of `speechllm evaluate` and `speechllm experiment`: parse failures
    counted per task, `compute_metrics`, and the figures only a model gives kept beside them (the
    CTC head's WER, the classifier heads' `cls_*` scores, a cascade's timings).
    """
    predictions = predictions_from_answers(references, answers)
    failures = {t: sum(t in a["parse_failures"] for a in answers) for t in ("ner", "sa")}
    metrics = compute_metrics(references, predictions, tasks, parse_failures=failures)
    for key, value in raw_metrics.items():
        if key in ("ctc_wer", "cascade") or key.startswith("cls_"):
            metrics[key] = value
    return metrics, predictions


# ------------------------------------------------------------------ metrics


def compute_metrics(
    references: Sequence[Utterance],
    predictions: Iterable[Utterance],
    tasks: Sequence[str] = TASKS,
    parse_failures: dict[str, int] | None = None,
) -> dict[str, Any]:
    """All figures of predictions against references (matched by id; see `align`).

    A task is scored where it is in `tasks` and the references label it: ASR when some reference
    has text (WER then runs over every reference, as the toolkit's corpus WER does), NER over the
    references with entities (a prediction's None counts as no entities), sentiment over those
    with a sentiment (a prediction's None counts as the class `UNPARSED`, as in
    `slue.sentiment_macro_f1`). The SLUE score needs all three.

    Keys (percentages x100): `n`, `tasks`; `wer`, `wer_errors`, `wer_ref_words`,
    `wer_by_length`; `ner_f1`, `ner_precision`, `ner_recall`, `ner_macro_f1`, the same with
    `ner_label_`, `ner_tp`, `ner_n_gold`, `ner_n_pred`, `ner_n`, `ner_per_tag`,
    `ner_label_per_tag`, `ner_parse_failures`; `sa_macro_f1`, `sa_accuracy`, `sa_n`,
    `sa_per_class`, `sa_confusion`, `sa_parse_failures`; `slue_score`.

    `parse_failures` ({"ner": k, "sa": k}) are the malformed answers where the caller knows them
    (`speechllm evaluate`); otherwise they are counted from the predictions: labelled references
    whose prediction has entities / sentiment None (what an unparsed answer becomes in a
    predictions file).
    """
    preds = align(references, predictions)
    if "all" in tasks:  # one generation answers all three
        tasks = [*tasks, "asr", "ner", "sa"]
    metrics: dict[str, Any] = {
        "n": len(references),
        "tasks": [t for t in TASKS if t in tasks and t != "all"],
    }
    known = parse_failures or {}

    if "asr" in tasks and any(r.text.strip() for r in references):
        refs = [r.text for r in references]
        hyps = [p.text for p in preds]
        edits, words = word_errors(refs, hyps)
        metrics["wer"] = wer(refs, hyps)
        metrics["wer_errors"] = edits
        metrics["wer_ref_words"] = words
        metrics["wer_by_length"] = wer_by_length(refs, hyps)

    ner = [(r, p) for r, p in zip(references, preds, strict=True) if r.entities is not None]
    if "ner" in tasks and ner:
        s = ner_scores([r.entities or [] for r, _ in ner], [p.entities or [] for _, p in ner])
        for prefix in ("", "label_"):
            for key in ("f1", "precision", "recall", "macro_f1"):
                metrics[f"ner_{prefix}{key}"] = s[prefix + key]
        metrics.update(ner_tp=s["tp"], ner_n_gold=s["n_gold"], ner_n_pred=s["n_pred"])
        metrics["ner_n"] = len(ner)
        metrics["ner_per_tag"] = s["per_tag"]
        metrics["ner_label_per_tag"] = s["label_per_tag"]
        metrics["ner_parse_failures"] = known.get("ner", sum(p.entities is None for _, p in ner))

    sa = [(r, p) for r, p in zip(references, preds, strict=True) if r.sentiment is not None]
    if "sa" in tasks and sa:
        gold = [r.sentiment or "" for r, _ in sa]
        pred = [p.sentiment for _, p in sa]
        metrics["sa_macro_f1"] = sentiment_macro_f1(gold, pred)
        metrics.update(sentiment_details(gold, pred))
        metrics["sa_n"] = len(sa)
        metrics["sa_parse_failures"] = known.get("sa", sum(p is None for p in pred))

    if {"wer", "ner_f1", "sa_macro_f1"} <= metrics.keys():
        metrics["slue_score"] = slue_score(
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
        length = len(normalize_text(ref).split())
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
        edits, words = word_errors(refs, hyps)
        out.append(
            {
                "words": _bucket_name(*LENGTH_BUCKETS[b]),
                "n": len(idx),
                "ref_words": words,
                "errors": edits,
                "wer": wer(refs, hyps),
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


# ------------------------------------------------------------------ SLUE files


def submission_ner(entities: Sequence[tuple[str, str]] | None) -> str:
    """A `pred_ner` cell: `[['GPE', 'strasbourg'], ...]` (OntoNotes tag, phrase), or `None`.

    Phrases are SLUE-normalised (`slue.normalize_phrase`, as the toolkit tokenises its
    references) so that an exact-match scorer gives our numbers; entities SLUE drops are left out.
    """
    if not entities:
        return "None"
    items = [
        [SLUE_TO_ONTONOTES.get(tag, tag), normalize_phrase(phrase)]
        for tag, phrase in entities
        if slue_tag(tag) is not None and normalize_phrase(phrase)
    ]
    return repr(items) if items else "None"


def submission_tsv(predictions: Sequence[Utterance]) -> str:
    """SLUE's submission tsv (`id, pred_text, pred_ner, pred_sentiment`); `None` where a
    prediction is absent, as SLUE's how-to-submit asks."""
    lines = ["\t".join(SUBMISSION_COLUMNS)]
    for p in predictions:
        # The tsv is not quoted: whitespace inside a transcript must not start a new cell or line.
        text = " ".join(p.text.split())
        lines.append(
            "\t".join([p.id, text or "None", submission_ner(p.entities), p.sentiment or "None"])
        )
    return "\n".join(lines) + "\n"


def wrd_line(entities: Sequence[tuple[str, str]]) -> str:
    """One utterance's entities as a line of the `.wrd` files the SLUE evaluator reads.

    Each entity is `<mark> phrase tokens ]` with the mark of its OntoNotes tag; the reader takes
    only the marked phrases, so the words between entities are left out. A phrase token that is
    itself a mark character would be misread (no SLUE reference holds one).
    """
    parts = []
    for tag, phrase in entities:
        combined, norm = slue_tag(tag), normalize_phrase(phrase)
        if combined is None or not norm:
            continue
        parts.append(f"{_WRD_MARK[SLUE_TO_ONTONOTES.get(combined, combined)]} {norm} ]")
    return " ".join(parts)


# ------------------------------------------------------------------ plots


def _figure(size: tuple[float, float]) -> Any:
    # A bare Figure on the Agg canvas: no pyplot, so no global backend switch and no GUI.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    # No bbox_inches="tight": the PNG keeps exactly size x DPI pixels.
    fig.savefig(path, dpi=DPI, format="png")


def plot_ner_f1(metrics: dict[str, Any], path: Path) -> None:
    """Per-tag NER F1 and label-F1 bars (tags in SLUE order, then any other)."""
    per_tag, label_per_tag = metrics["ner_per_tag"], metrics["ner_label_per_tag"]
    tags = [t for t in SLUE_TAGS if t in per_tag] + sorted(set(per_tag) - set(SLUE_TAGS))
    fig = _figure(NER_PLOT_SIZE)
    ax = fig.add_subplot()
    x = list(range(len(tags)))
    width = 0.4
    ax.bar([i - width / 2 for i in x], [per_tag[t]["f1"] for t in tags], width, label="F1")
    ax.bar(
        [i + width / 2 for i in x],
        [label_per_tag.get(t, {}).get("f1", 0.0) for t in tags],
        width,
        label="label-F1",
    )
    ax.set_xticks(x, [f"{t}\n(n={per_tag[t]['n_gold']})" for t in tags])
    # Headroom above 100 keeps the legend clear of full bars.
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("%")
    ax.set_title(
        f"NER per tag: micro F1 {metrics['ner_f1']:.1f}, label-F1 {metrics['ner_label_f1']:.1f}"
    )
    ax.legend(loc="upper right", ncols=2)
    _save(fig, path)


def plot_confusion(metrics: dict[str, Any], path: Path) -> None:
    """Sentiment confusion matrix: counts, shaded by the share of each gold row."""
    confusion = metrics["sa_confusion"]
    matrix = confusion["matrix"]
    shares = [[c / (sum(row) or 1) for c in row] for row in matrix]
    fig = _figure(CONFUSION_PLOT_SIZE)
    ax = fig.add_subplot()
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                color="white" if shares[i][j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(confusion["predicted"])), map(_display, confusion["predicted"]))
    ax.set_yticks(range(len(confusion["gold"])), confusion["gold"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"Sentiment: macro F1 {metrics['sa_macro_f1']:.1f}")
    _save(fig, path)


def plot_wer_by_length(metrics: dict[str, Any], path: Path) -> None:
    """WER per reference-length bucket, each bar labelled with its number of utterances."""
    buckets = metrics["wer_by_length"]
    fig = _figure(WER_PLOT_SIZE)
    ax = fig.add_subplot()
    x = list(range(len(buckets)))
    bars = ax.bar(x, [b["wer"] for b in buckets])
    ax.bar_label(bars, labels=[f"n={b['n']}" for b in buckets])
    ax.set_xticks(x, [b["words"] for b in buckets])
    ax.set_xlabel("reference length (words)")
    ax.set_ylabel("WER (%)")
    ax.set_ylim(0, max([100.0, *(b["wer"] * 1.1 for b in buckets)]))
    ax.set_title(f"WER by utterance length: overall {metrics['wer']:.1f}")
    _save(fig, path)


def _display(label: str) -> str:
    # "<unparsed>" would vanish as an HTML tag in rendered markdown.
    return "unparsed" if label == UNPARSED else label


# ------------------------------------------------------------------ report


def write_report(
    out_dir: str | os.PathLike[str],
    references: Sequence[Utterance],
    predictions: Iterable[Utterance],
    metrics: dict[str, Any],
    *,
    sources: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Write `FILES` into `out_dir` (created); return {key: path} of what was written.

    `predictions.jsonl` holds one manifest line per reference, in reference order, with the
    reference's audio, duration and split, so it can be scored again (`speechllm score`) or
    listened to. Files of `FILES` that this call does not write (a task not scored) are removed,
    so the folder never mixes two runs. The NER `.wrd` files (hypothesis and reference lines, one per NER-labelled
    reference) are what slue-toolkit's `eval_ner(hyp, ref)` reads. `sources` (e.g. model and
    manifest paths) head the report.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preds = [
        Utterance(r.id, r.audio, r.duration, p.text, p.entities, p.sentiment, r.split)
        for r, p in zip(references, align(references, predictions), strict=True)
    ]
    paths = {key: out / name for key, name in FILES.items()}
    written: dict[str, Path] = {}

    paths["metrics"].write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    written["metrics"] = paths["metrics"]
    write_manifest(paths["predictions"], preds)
    written["predictions"] = paths["predictions"]
    paths["submission"].write_text(submission_tsv(preds), encoding="utf-8")
    written["submission"] = paths["submission"]

    if "ner_f1" in metrics:
        ner = [(r, p) for r, p in zip(references, preds, strict=True) if r.entities is not None]
        for key, lines in (
            ("ner_hyp", [wrd_line(p.entities or []) for _, p in ner]),
            ("ner_ref", [wrd_line(r.entities or []) for r, _ in ner]),
        ):
            paths[key].write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            written[key] = paths[key]
        plot_ner_f1(metrics, paths["ner_plot"])
        written["ner_plot"] = paths["ner_plot"]
    if "sa_macro_f1" in metrics:
        plot_confusion(metrics, paths["confusion_plot"])
        written["confusion_plot"] = paths["confusion_plot"]
    if "wer" in metrics:
        plot_wer_by_length(metrics, paths["wer_plot"])
        written["wer_plot"] = paths["wer_plot"]

    written["report"] = paths["report"]
    paths["report"].write_text(render_markdown(metrics, written, sources), encoding="utf-8")
    for key, path in paths.items():
        # A plot or .wrd file left by an earlier run into this folder would pass for this one's.
        if key not in written:
            path.unlink(missing_ok=True)
    return written


def _pct(value: float) -> str:
    return f"{value:.2f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(
    metrics: dict[str, Any], files: dict[str, Path], sources: dict[str, str] | None = None
) -> str:
    """The markdown report: summary, WER by length, NER per tag, sentiment per class, files."""
    lines = ["# Evaluation report", ""]
    head = [
        *(sources or {}).items(),
        ("utterances", metrics["n"]),
        ("tasks", ", ".join(metrics["tasks"])),
    ]
    lines += _table(["", ""], [(k, f"`{v}`" if k in (sources or {}) else v) for k, v in head])

    summary = [
        (label, _pct(metrics[key]))
        for key, label in (
            ("wer", "WER (%)"),
            ("ctc_wer", "CTC WER (%)"),
            ("ner_f1", "NER F1 (%)"),
            ("ner_label_f1", "NER label-F1 (%)"),
            ("sa_macro_f1", "Sentiment macro F1 (%)"),
            ("slue_score", "SLUE score"),
        )
        if key in metrics
    ]
    summary += [
        (label, metrics[key])
        for key, label in (
            ("ner_parse_failures", "NER parse failures"),
            ("sa_parse_failures", "Sentiment parse failures"),
        )
        if key in metrics
    ]
    lines += ["", "## Summary", ""]
    lines += _table(["metric", "value"], summary) if summary else ["Nothing could be scored."]
    lines += [
        "",
        "Scored as the SLUE toolkit scores: corpus WER on SLUE-normalised text, NER micro F1 over "
        "(combined tag, phrase) pairs per utterance, sentiment macro F1 (scikit-learn); "
        "SLUE score = ((100 - WER) + NER F1 + sentiment F1) / 3.",
    ]

    if "wer" in metrics:
        lines += ["", "## ASR: WER by utterance length", ""]
        lines += _table(
            ["reference words", "utterances", "words", "errors", "WER (%)"],
            [
                (b["words"], b["n"], b["ref_words"], b["errors"], _pct(b["wer"]))
                for b in metrics["wer_by_length"]
            ],
        )
        lines += ["", f"![WER by utterance length]({files['wer_plot'].name})"]

    if "ner_f1" in metrics:
        per_tag, label_per_tag = metrics["ner_per_tag"], metrics["ner_label_per_tag"]
        tags = [t for t in SLUE_TAGS if t in per_tag] + sorted(set(per_tag) - set(SLUE_TAGS))
        rows = [
            (
                t,
                per_tag[t]["n_gold"],
                per_tag[t]["n_pred"],
                per_tag[t]["tp"],
                _pct(per_tag[t]["precision"]),
                _pct(per_tag[t]["recall"]),
                _pct(per_tag[t]["f1"]),
                _pct(label_per_tag.get(t, {}).get("f1", 0.0)),
            )
            for t in tags
        ]
        rows.append(
            (
                "**micro**",
                metrics["ner_n_gold"],
                metrics["ner_n_pred"],
                metrics["ner_tp"],
                _pct(metrics["ner_precision"]),
                _pct(metrics["ner_recall"]),
                _pct(metrics["ner_f1"]),
                _pct(metrics["ner_label_f1"]),
            )
        )
        rows.append(
            (
                "**macro**",
                "",
                "",
                "",
                "",
                "",
                _pct(metrics["ner_macro_f1"]),
                _pct(metrics["ner_label_macro_f1"]),
            )
        )
        lines += ["", f"## NER per tag ({metrics['ner_n']} utterances)", ""]
        lines += _table(
            ["tag", "gold", "predicted", "correct", "precision", "recall", "F1", "label-F1"], rows
        )
        lines += ["", f"![NER F1 per tag]({files['ner_plot'].name})"]

    if "sa_macro_f1" in metrics:
        per_class = metrics["sa_per_class"]
        lines += ["", f"## Sentiment per class ({metrics['sa_n']} utterances)", ""]
        lines += _table(
            ["class", "gold", "predicted", "precision", "recall", "F1"],
            [
                (
                    _display(c),
                    v["n_gold"],
                    v["n_pred"],
                    _pct(v["precision"]),
                    _pct(v["recall"]),
                    _pct(v["f1"]),
                )
                for c, v in per_class.items()
            ],
        )
        lines += ["", f"Accuracy {_pct(metrics['sa_accuracy'])} %.", ""]
        confusion = metrics["sa_confusion"]
        lines += ["Confusion matrix (rows: gold, columns: predicted):", ""]
        lines += _table(
            ["gold \\ predicted", *map(_display, confusion["predicted"])],
            [(lab, *row) for lab, row in zip(confusion["gold"], confusion["matrix"], strict=True)],
        )
        lines += ["", f"![Sentiment confusion matrix]({files['confusion_plot'].name})"]

    descriptions = {
        "metrics": "all figures (JSON)",
        "predictions": "predictions, one manifest line per reference",
        "submission": "SLUE submission tsv (`id, pred_text, pred_ner, pred_sentiment`)",
        "ner_hyp": "NER hypotheses in the SLUE evaluator's `.wrd` format",
        "ner_ref": "NER references in the same format (`eval_ner(hyp, ref)`)",
    }
    lines += ["", "## Files", ""]
    lines += [f"- `{files[k].name}`: {d}" for k, d in descriptions.items() if k in files]
    return "\n".join(lines) + "\n"
