"""`speechllm score` / `evaluate` and speechllm.evaluation.report: figures computed by hand, SLUE files, plots."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from speechllm.cli import app
from speechllm.data.manifest import Utterance, read_manifest, write_manifest
from speechllm.errors import ManifestError
from speechllm.evaluation import plots, report
from speechllm.evaluation.metrics import align, compute_metrics
from tiny import require

runner = CliRunner()

REFERENCE = [
    Utterance(
        "r1",
        None,
        None,
        "the commission met in brussels",
        [("ORG", "commission"), ("PLACE", "brussels")],
        "Neutral",
        "dev",
    ),
    Utterance("r2", None, None, "we vote on monday", [("WHEN", "monday")], "Positive", "dev"),
    Utterance("r3", None, None, "thank you mister president", [], "Negative", "dev"),
    Utterance(
        "r4",
        None,
        None,
        "france supports the report of the committee today",
        [("PLACE", "france"), ("WHEN", "today")],
        "Positive",
        "dev",
    ),
]

# Predictions as another system would write them: no audio or duration keys.
PREDICTIONS = [
    {
        "id": "r1",
        "text": "the commission met in brussels",
        "entities": [["ORG", "commission"], ["PLACE", "brussels"]],
        "sentiment": "Neutral",
    },
    {
        "id": "r2",
        "text": "we voted on monday",
        "entities": [["WHEN", "on monday"]],
        "sentiment": "Negative",
    },
    {
        "id": "r3",
        "text": "thank you president",
        "entities": [["PERSON", "president"]],
        "sentiment": None,
    },
    {
        "id": "r4",
        "text": "france supports a report of the committee",
        "entities": [["PLACE", "france"], ["QUANT", "today"]],
        "sentiment": "Positive",
    },
]

# By hand:
# WER: r2 vote->voted (1 sub), r3 "mister" deleted (1), r4 the->a and "today" deleted (2):
#   4 errors / 21 reference words; r1-r3 (4-5 words) 2/13, r4 (8 words) 2/8.
# NER: gold 5 entities, predicted 6, correct 3 (commission, brussels, france) -> P 3/6, R 3/5,
#   F1 6/11. Label-F1 (phrases ignored): r2's WHEN and r4's PLACE also match -> 4 correct,
#   F1 8/11. Per tag: ORG, PLACE 100; WHEN, PERSON, QUANT 0 -> macro 40.
# Sentiment: gold Neu Pos Neg Pos, predicted Neu Neg (none) Pos. F1: Negative 0, Neutral 1,
#   Positive 2/3 (P 1, R 1/2), <unparsed> 0 -> macro (5/3)/4 = 5/12; accuracy 1/2.
WER = 100 * 4 / 21
NER_F1 = 100 * 6 / 11
NER_LABEL_F1 = 100 * 8 / 11
SA_F1 = 100 * 5 / 12
SLUE = ((100 - WER) + NER_F1 + SA_F1) / 3


def write_pair(tmp_path: Path, predictions: list[dict] = PREDICTIONS) -> tuple[Path, Path]:
    ref = tmp_path / "ref.jsonl"
    write_manifest(ref, REFERENCE)
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(p) + "\n" for p in predictions), encoding="utf-8")
    return ref, pred


def test_score_matches_hand_computed_figures(tmp_path):
    ref, pred = write_pair(tmp_path)
    result = runner.invoke(app, ["score", "--reference", str(ref), "--predictions", str(pred)])
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert m["n"] == 4 and m["tasks"] == ["asr", "ner", "sa"]
    assert m["wer"] == pytest.approx(WER, abs=1e-9)
    assert (m["wer_errors"], m["wer_ref_words"]) == (4, 21)
    assert [(b["words"], b["n"], b["ref_words"], b["errors"]) for b in m["wer_by_length"]] == [
        ("1-5", 3, 13, 2),
        ("6-10", 1, 8, 2),
    ]
    assert [b["wer"] for b in m["wer_by_length"]] == pytest.approx([100 * 2 / 13, 25.0])

    assert m["ner_f1"] == pytest.approx(NER_F1, abs=1e-9)
    assert (m["ner_precision"], m["ner_recall"]) == pytest.approx((50.0, 60.0))
    assert (m["ner_tp"], m["ner_n_gold"], m["ner_n_pred"], m["ner_n"]) == (3, 5, 6, 4)
    assert m["ner_label_f1"] == pytest.approx(NER_LABEL_F1, abs=1e-9)
    assert m["ner_macro_f1"] == pytest.approx(40.0)
    assert {t: v["f1"] for t, v in m["ner_per_tag"].items()} == pytest.approx(
        {"ORG": 100.0, "PLACE": 100.0, "WHEN": 0.0, "PERSON": 0.0, "QUANT": 0.0}
    )
    assert m["ner_label_per_tag"]["WHEN"]["f1"] == pytest.approx(100 * 2 / 3)
    assert m["ner_parse_failures"] == 0

    assert m["sa_macro_f1"] == pytest.approx(SA_F1, abs=1e-9)
    assert m["sa_accuracy"] == pytest.approx(50.0)
    assert m["sa_parse_failures"] == 1 and m["sa_n"] == 4
    assert {c: v["f1"] for c, v in m["sa_per_class"].items()} == pytest.approx(
        {"Negative": 0.0, "Neutral": 100.0, "Positive": 100 * 2 / 3, "<unparsed>": 0.0}
    )
    assert list(m["sa_per_class"]) == ["Negative", "Neutral", "Positive", "<unparsed>"]
    assert m["sa_confusion"] == {
        "gold": ["Negative", "Neutral", "Positive"],
        "predicted": ["Negative", "Neutral", "Positive", "<unparsed>"],
        "matrix": [[0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 1, 0]],
    }
    assert m["slue_score"] == pytest.approx(SLUE, abs=1e-9)


def test_score_writes_the_report_files(tmp_path):
    ref, pred = write_pair(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["score", "--reference", str(ref), "--predictions", str(pred), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(report.FILES.values())
    assert json.loads((out / "metrics.json").read_text()) == json.loads(result.stdout)

    # predictions.jsonl: a manifest again, in reference order, scoring the same.
    again = read_manifest(out / "predictions.jsonl")
    assert [u.id for u in again] == ["r1", "r2", "r3", "r4"]
    assert again[1].entities == [("WHEN", "on monday")] and again[2].sentiment is None
    rescored = compute_metrics(REFERENCE, report.read_predictions(out / "predictions.jsonl"))
    assert rescored == json.loads(result.stdout)

    assert (out / "slue_submission.tsv").read_text().splitlines() == [
        "id\tpred_text\tpred_ner\tpred_sentiment",
        "r1\tthe commission met in brussels\t[['ORG', 'commission'], ['GPE', 'brussels']]\tNeutral",
        "r2\twe voted on monday\t[['DATE', 'on monday']]\tNegative",
        "r3\tthank you president\t[['PERSON', 'president']]\tNone",
        "r4\tfrance supports a report of the committee\t[['GPE', 'france'], ['CARDINAL', 'today']]\tPositive",
    ]

    sizes = {
        "ner_f1_by_tag.png": plots.NER_PLOT_SIZE,
        "sentiment_confusion.png": plots.CONFUSION_PLOT_SIZE,
        "wer_by_length.png": plots.WER_PLOT_SIZE,
    }
    assert [tuple(round(x * plots.DPI) for x in s) for s in sizes.values()] == [
        (800, 450),
        (600, 500),
        (800, 450),
    ]
    for name, (w, h) in sizes.items():
        with Image.open(out / name) as img:
            img.verify()  # a whole, valid PNG
        with Image.open(out / name) as img:
            assert img.format == "PNG"
            assert img.size == (round(w * plots.DPI), round(h * plots.DPI))
            assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10

    md = (out / "report.md").read_text()
    for needle in (
        "| WER (%) | 19.05 |",
        "| NER F1 (%) | 54.55 |",
        "| Sentiment macro F1 (%) | 41.67 |",
        f"| SLUE score | {SLUE:.2f} |",
        "| Sentiment parse failures | 1 |",
        "| WHEN | 2 | 1 | 0 | 0.00 | 0.00 | 0.00 | 66.67 |",
        "| 6-10 | 1 | 8 | 2 | 25.00 |",
        "| Positive | 1 | 0 | 1 | 0 |",
        "![NER F1 per tag](ner_f1_by_tag.png)",
        "![Sentiment confusion matrix](sentiment_confusion.png)",
        "![WER by utterance length](wer_by_length.png)",
    ):
        assert needle in md, needle
    assert "<unparsed>" not in md  # an HTML tag to a markdown renderer


def test_ner_wrd_files_score_the_same_with_the_slue_evaluator(tmp_path):
    """The `.wrd` files are what slue-toolkit's `eval_ner(hyp, ref)` reads; it agrees with us."""
    require("slue_evaluator", "the dev extra of pyproject.toml")
    import slue_evaluator.eval as reader
    import slue_evaluator.slue_toolkit_eval_utils as utils

    metrics = compute_metrics(REFERENCE, report.read_predictions(write_pair(tmp_path)[1]))
    files = report.write_report(
        tmp_path / "out", REFERENCE, report.read_predictions(tmp_path / "pred.jsonl"), metrics
    )
    assert files["ner_hyp"].read_text().splitlines() == [
        "` commission ] % brussels ]",
        "@ on monday ]",
        "} president ]",
        "% france ] ! today ]",
    ]
    for score_type, key in (("standard", "ner_f1"), ("label", "ner_label_f1")):
        labels, _ = reader.get_gt_pred(
            score_type, str(files["ner_hyp"]), str(files["ner_ref"]), "combined"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            theirs = utils.get_ner_scores(labels["ref"], labels["hypo"])
        assert 100 * theirs["overall_micro"]["fscore"] == pytest.approx(metrics[key], abs=1e-9)


def test_missing_and_extra_ids_are_named(tmp_path):
    preds = [*PREDICTIONS[:3], {**PREDICTIONS[3], "id": "x9"}]
    ref, pred = write_pair(tmp_path, preds)
    result = runner.invoke(app, ["score", "--reference", str(ref), "--predictions", str(pred)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert "1 reference id(s) have no prediction: r4" in said
    assert "1 predicted id(s) are not in the reference: x9" in said

    many = [Utterance(f"u{i}", None, None, "a", None, None) for i in range(8)]
    with pytest.raises(
        ManifestError,
        match=r"8 reference id\(s\) have no prediction: "
        r"u0, u1, u2, u3, u4, \.\.\. \(8 in all\)",
    ):
        align(many, [])


def test_bad_prediction_lines_are_reported(tmp_path):
    ref, pred = write_pair(
        tmp_path,
        [{"id": "r1", "text": "x", "sentiment": "Happy"}, {"id": "r1", "text": "y"}],
    )
    with pred.open("a") as f:
        f.write("{not json\n")
    result = runner.invoke(app, ["score", "--reference", str(ref), "--predictions", str(pred)])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "pred.jsonl:1: 'sentiment' must be one of" in said
    assert "pred.jsonl:2: duplicate id 'r1' (first on line 1)" in said
    assert "pred.jsonl:3: not valid JSON" in said


def test_tasks_limit_what_is_scored(tmp_path):
    ref, pred = write_pair(tmp_path)
    full = ["score", "--reference", str(ref), "--predictions", str(pred)]
    assert runner.invoke(app, [*full, "--out", str(tmp_path / "out")]).exit_code == 0
    assert (tmp_path / "out/wer_by_length.png").is_file()
    result = runner.invoke(
        app,
        [
            "score",
            "--reference",
            str(ref),
            "--predictions",
            str(pred),
            "--tasks",
            "sa",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert "sa_macro_f1" in m and not {"wer", "ner_f1", "slue_score"} & m.keys()
    assert (tmp_path / "out/sentiment_confusion.png").is_file()
    # The earlier full run's other files are gone: the folder holds one run only.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        report.FILES[k]
        for k in ("metrics", "predictions", "submission", "confusion_plot", "report")
    )
    result = runner.invoke(
        app, ["score", "--reference", str(ref), "--predictions", str(pred), "--tasks", "pos"]
    )
    assert result.exit_code == 2 and "--tasks" in result.output


# --- evaluate on a tiny trained run ----------------------------------------------------------


def test_evaluate_on_a_tiny_run(tiny_dirs, tmp_path):
    from speechllm.training.train import train
    from test_train import tiny_run

    cfg = tiny_run(tiny_dirs, tmp_path, steps=2)
    train(cfg)
    data = tmp_path / "data"
    tiny = data / "tiny.jsonl"  # beside m.jsonl, so its relative audio paths still resolve
    write_manifest(tiny, read_manifest(data / "m.jsonl")[:3])

    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tmp_path / "run"),
            "--manifest",
            str(tiny),
            "--out",
            str(out),
            "--batch-size",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(result.stdout) == metrics
    assert {
        "n",
        "wer",
        "ner_f1",
        "ner_label_f1",
        "sa_macro_f1",
        "slue_score",
        "ctc_wer",
        "ner_per_tag",
        "sa_per_class",
        "sa_confusion",
        "wer_by_length",
        "ner_parse_failures",
        "sa_parse_failures",
    } <= metrics.keys()
    assert metrics["n"] == 3
    for name in report.FILES.values():
        assert (out / name).is_file(), name
    preds = read_manifest(out / "predictions.jsonl")
    assert [u.id for u in preds] == ["u0", "u1", "u2"]

    # Scoring the written predictions again gives evaluate's figures (parse failures aside: a
    # predictions file cannot tell a malformed NER answer from a well-formed one).
    result = runner.invoke(
        app, ["score", "--reference", str(tiny), "--predictions", str(out / "predictions.jsonl")]
    )
    assert result.exit_code == 0, result.output
    rescored = json.loads(result.stdout)
    # Timings are evaluate's own (decoding), not part of the scores.
    skip = {"ctc_wer", "ner_parse_failures", "wall_seconds", "cpu_seconds"}
    assert {k: v for k, v in rescored.items() if k not in skip} == {
        k: v for k, v in metrics.items() if k not in skip
    }


def test_training_held_out_figures_are_evaluates_exactly(tiny_dirs, tmp_path):
    """One path from audio to score: the held-out record training logs for its final weights is
    what `speechllm evaluate` prints for the same manifest and weights, every figure (training
    logs top-level floats rounded to 3 places), nested tables and parse failures included."""
    from speechllm.training.train import train
    from test_train import read_log, tiny_run

    cfg = tiny_run(tiny_dirs, tmp_path, steps=2, lora=True)
    train(cfg)
    logged = [r for r in read_log(tmp_path / "run") if r.get("eval")][-1]
    held_out = tmp_path / "data" / "held-out.jsonl"  # beside m.jsonl: its audio paths resolve
    write_manifest(held_out, read_manifest(cfg.data.eval[0])[: cfg.data.max_eval_utterances])
    result = runner.invoke(
        app,
        [
            "evaluate",
            *("--model", str(tmp_path / "run"), "--manifest", str(held_out)),
            *("--out", str(tmp_path / "eval"), "--tasks", ",".join(cfg.data.tasks)),
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    timings = {"wall_seconds", "cpu_seconds"}
    assert {"wer", "ctc_wer", "ner_f1", "sa_macro_f1", "slue_score"} <= printed.keys()
    assert printed.keys() - timings <= logged.keys()
    for key, value in printed.items():
        if key not in timings:
            assert logged[key] == (round(value, 3) if isinstance(value, float) else value), key
