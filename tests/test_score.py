"""`speechllm score` on text-only files: scoring reads ids, text and labels, never audio, so a
reference (or predictions) may leave out `audio` and `duration` or hold nulls there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from speechllm.cli import app
from speechllm.data.manifest import read_manifest
from test_report import PREDICTIONS as REPORT_PREDICTIONS

runner = CliRunner()

# Text and labels only; `audio` / `duration` are added per test.
REFERENCE: list[dict[str, Any]] = [
    {
        "id": "r1",
        "text": "the commission met in brussels",
        "entities": [["ORG", "commission"], ["PLACE", "brussels"]],
        "sentiment": "Neutral",
        "split": "dev",
    },
    {
        "id": "r2",
        "text": "we vote on monday",
        "entities": [["WHEN", "monday"]],
        "sentiment": "Positive",
        "split": "dev",
    },
    {"id": "r3", "text": "thank you mister president", "entities": [], "sentiment": "Negative"},
]
# r1 and r2 as tests/test_report.py predicts them.
PREDICTIONS: list[dict[str, Any]] = [
    *REPORT_PREDICTIONS[:2],
    {"id": "r3", "text": "thank you president", "entities": [], "sentiment": None},
]
# By hand: WER 2 errors (vote->voted, "mister" deleted) / 13 reference words; NER gold 3,
# predicted 3, correct 2 -> F1 2/3; sentiment right on r1 only -> accuracy 1/3.
WER = 100 * 2 / 13


def with_audio(rows: list[dict[str, Any]], how: str) -> list[dict[str, Any]]:
    """The rows with `audio`/`duration` absent, null, or present (files that need not exist)."""
    if how == "absent":
        return [dict(r) for r in rows]
    if how == "null":
        return [{**r, "audio": None, "duration": None} for r in rows]
    return [{**r, "audio": f"wav/{r['id']}.wav", "duration": 1.5 + i} for i, r in enumerate(rows)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def score(tmp_path: Path, ref_how: str, pred_how: str, *extra: str) -> dict[str, Any]:
    folder = tmp_path / f"{ref_how}-{pred_how}"
    folder.mkdir()
    ref = write_jsonl(folder / "ref.jsonl", with_audio(REFERENCE, ref_how))
    pred = write_jsonl(folder / "pred.jsonl", with_audio(PREDICTIONS, pred_how))
    result = runner.invoke(
        app, ["score", "--reference", str(ref), "--predictions", str(pred), *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def with_audio_figures(tmp_path_factory) -> dict[str, Any]:
    """The figures of the same reference with `audio` and `duration` present."""
    return score(tmp_path_factory.mktemp("score"), "present", "present")


def test_figures_of_a_reference_with_audio(with_audio_figures):
    m = with_audio_figures
    assert m["n"] == 3 and m["tasks"] == ["asr", "ner", "sa"]
    assert m["wer"] == pytest.approx(WER, abs=1e-9)
    assert (m["wer_errors"], m["wer_ref_words"]) == (2, 13)
    assert m["ner_f1"] == pytest.approx(100 * 2 / 3, abs=1e-9)
    assert m["sa_accuracy"] == pytest.approx(100 / 3, abs=1e-9)


@pytest.mark.parametrize("ref_how", ["absent", "null"])
@pytest.mark.parametrize("pred_how", ["absent", "null", "present"])
def test_text_only_reference_scores_as_with_audio(tmp_path, with_audio_figures, ref_how, pred_how):
    assert score(tmp_path, ref_how, pred_how) == with_audio_figures


@pytest.mark.parametrize("ref_how", ["absent", "null"])
def test_text_only_reference_writes_the_report(tmp_path, with_audio_figures, ref_how):
    out = tmp_path / "out"
    metrics = score(tmp_path, ref_how, "absent", "--out", str(out))
    assert metrics == with_audio_figures
    assert json.loads((out / "metrics.json").read_text()) == with_audio_figures
    assert (out / "report.md").is_file() and (out / "slue_submission.tsv").is_file()
    # predictions.jsonl carries the reference's (null) audio and duration: a manifest again.
    again = read_manifest(out / "predictions.jsonl")
    assert [(u.id, u.audio, u.duration, u.text) for u in again] == [
        (p["id"], None, None, p["text"]) for p in PREDICTIONS
    ]
    assert score(tmp_path, "null", "present") == with_audio_figures


def test_a_reference_is_still_validated(tmp_path):
    # Only `audio` and `duration` may be left out: a line without text is still refused.
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": "r1", "sentiment": "Neutral"}])
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": "r1", "text": "x"}])
    result = runner.invoke(app, ["score", "--reference", str(ref), "--predictions", str(pred)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert "ref.jsonl:1: missing key(s) 'text'" in said
    assert "'audio'" not in said and "'duration'" not in said
