"""Scores to files: SLUE submission files, the NER `.wrd` files, plots and the markdown report.

`speechllm evaluate` (decode a manifest, then score) and `speechllm score` (score predictions made
elsewhere) write the same files from the same predictions (`write_report`): `metrics.json` (the
figures of `evaluation.metrics.compute_metrics`), `predictions.jsonl` (manifest format),
`slue_submission.tsv` (SLUE's submission layout), the NER `.wrd` files the SLUE evaluator reads,
PNG plots (`evaluation.plots`) and `report.md`.

Predictions are `model.answers.Prediction`s: `transcript`, `entities` (None: no NER answer) and
`sentiment` (None: no answer, or an answer that named no class).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from speechllm.data.manifest import Utterance, read_manifest, write_manifest
from speechllm.evaluation.metrics import align, display_label
from speechllm.evaluation.plots import plot_confusion, plot_ner_f1, plot_wer_by_length
from speechllm.evaluation.slue import normalize_phrase, slue_tag
from speechllm.labels import SLUE_TAGS
from speechllm.model.answers import Prediction

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


def read_predictions(path: str | os.PathLike[str]) -> list[Prediction]:
    """Predictions in manifest format (JSONL); `audio` and `duration` may be left out.

    Every line is checked as a manifest line is (tags, sentiment classes, unique ids); all
    problems are reported together, "file:line: what is wrong" per line. A missing entity list or
    sentiment counts as an answer that did not parse (`Prediction.from_utterance`).
    """
    utts = read_manifest(path, defaults={"audio": None, "duration": None}, what="predictions file")
    return [Prediction.from_utterance(u) for u in utts]


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


# ------------------------------------------------------------------ report


def write_report(
    out_dir: str | os.PathLike[str],
    references: Sequence[Utterance],
    predictions: Iterable[Prediction],
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
        p.to_utterance(r) for r, p in zip(references, align(references, predictions), strict=True)
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
                    display_label(c),
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
            ["gold \\ predicted", *map(display_label, confusion["predicted"])],
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
