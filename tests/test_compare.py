"""`speechllm compare`: the paired bootstrap reads the same figures as `compute_metrics` off
per-utterance counts, and its intervals say which of two systems is better only when it is."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from speechllm.cli import app
from speechllm.data.manifest import Utterance, write_manifest
from speechllm.evaluation.compare import paired_bootstrap, resampled_scores, utterance_counts
from speechllm.evaluation.metrics import compute_metrics
from speechllm.model.answers import Prediction

WORDS = [
    "the",
    "commission",
    "met",
    "in",
    "brussels",
    "on",
    "monday",
    "we",
    "vote",
    "today",
    "thank",
    "you",
]
TAGS = ["ORG", "PLACE", "WHEN", "PERSON"]
CLASSES = ["Negative", "Neutral", "Positive"]


def references(n: int, seed: int) -> list[Utterance]:
    """Random references: some with entities, some with a sentiment, some with both or neither,
    one with an empty transcript."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = "" if i == 0 else " ".join(rng.choices(WORDS, k=rng.randint(2, 9)))
        words = text.split()
        entities = None
        if words and rng.random() < 0.6:
            entities = [(rng.choice(TAGS), rng.choice(words)) for _ in range(rng.randint(0, 3))]
        sentiment = rng.choice(CLASSES) if rng.random() < 0.5 else None
        out.append(Utterance(f"u{i}", None, None, text, entities, sentiment))
    return out


def noisy(refs: list[Utterance], seed: int, error: float, stray: bool = True) -> list[Prediction]:
    """Predictions that get each part of each reference wrong with probability `error`: a word
    dropped, an entity's tag changed or one invented, the sentiment swapped, unparsed (None) or
    (with `stray`; a predictions file cannot hold one) a label outside the three classes."""
    rng = random.Random(seed)
    out = []
    for r in refs:
        words = [w for w in r.text.split() if rng.random() > error / 2]
        entities = list(r.entities or [])
        if rng.random() < error:
            entities = [(rng.choice(TAGS), p) for _, p in entities] + [("PLACE", "brussels")]
        sentiment = r.sentiment
        if rng.random() < error:
            sentiment = rng.choice([*CLASSES, None, "Mixed" if stray else None])
        out.append(Prediction(" ".join(words), entities, sentiment, id=r.id))
    rng.shuffle(out)  # matched by id, not by order
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_whole_set_scores_as_compute_metrics_does(seed):
    refs = references(60, seed)
    preds = noisy(refs, seed + 10, error=0.4)
    classes = sorted({*CLASSES, "Mixed", "<unparsed>"})
    counts = utterance_counts(refs, preds, classes)
    got = resampled_scores(counts, np.arange(len(refs))[None, :])
    want = compute_metrics(refs, preds, ["all"])
    for metric in ("wer", "ner_f1", "sa_macro_f1", "slue_score"):
        assert got[metric][0] == pytest.approx(want[metric], abs=1e-9), metric


def test_a_system_against_itself_differs_by_nothing():
    refs = references(40, 3)
    preds = noisy(refs, 4, error=0.3)
    result = paired_bootstrap(refs, preds, preds, resamples=500)
    assert set(result) == {"wer", "ner_f1", "sa_macro_f1", "slue_score"}
    for r in result.values():
        assert r["a"] == r["b"] and r["diff"] == r["low"] == r["high"] == 0.0
        assert r["a_better"] == 0.0


def test_a_clearly_better_system_is_better_in_nearly_every_resample():
    refs = references(120, 5)
    good, bad = noisy(refs, 6, error=0.05), noisy(refs, 7, error=0.6)
    result = paired_bootstrap(refs, good, bad, resamples=2000, seed=1)
    assert result["wer"]["high"] < 0  # lower WER is better
    for metric in ("ner_f1", "sa_macro_f1", "slue_score"):
        assert result[metric]["low"] > 0, metric
    assert all(r["a_better"] > 0.97 for r in result.values())
    # Swapped, everything mirrors.
    back = paired_bootstrap(refs, bad, good, resamples=2000, seed=1)
    assert back["slue_score"]["diff"] == pytest.approx(-result["slue_score"]["diff"])
    assert back["slue_score"]["a_better"] < 0.03


def test_a_figure_the_references_do_not_label_is_not_compared():
    refs = [Utterance(f"u{i}", None, None, "we vote today", None, "Positive") for i in range(5)]
    preds = [Prediction("we vote today", None, "Positive", id=r.id) for r in refs]
    assert set(paired_bootstrap(refs, preds, preds, resamples=100)) == {"wer", "sa_macro_f1"}


def _write(path: Path, utts: list[Utterance]) -> Path:
    write_manifest(path, utts)
    return path


def test_cli_compares_files_and_evaluate_folders(tmp_path):
    refs = references(30, 8)
    ref = _write(tmp_path / "ref.jsonl", refs)
    a = [
        Utterance(p.id, None, None, p.transcript or "", p.entities, p.sentiment)
        for p in noisy(refs, 9, 0.1, stray=False)
    ]
    b = [
        Utterance(p.id, None, None, p.transcript or "", p.entities, p.sentiment)
        for p in noisy(refs, 10, 0.5, stray=False)
    ]
    a_file = _write(tmp_path / "a.jsonl", a)
    (tmp_path / "b").mkdir()
    _write(tmp_path / "b" / "predictions.jsonl", b)
    args = ["compare", "--reference", str(ref), str(a_file), str(tmp_path / "b")]
    result = CliRunner().invoke(app, [*args, "--resamples", "300"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{") :])
    assert out["resamples"] == 300 and out["slue_score"]["diff"] > 0

    # A predictions file that misses a reference id: a clear error naming it, no traceback.
    _write(tmp_path / "short.jsonl", a[1:])
    result = CliRunner().invoke(
        app, ["compare", "--reference", str(ref), str(a_file), str(tmp_path / "short.jsonl")]
    )
    assert result.exit_code != 0
    assert f"no prediction: {a[0].id}" in result.output and "Traceback" not in result.output
