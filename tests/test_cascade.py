"""The cascade baseline (`evaluate --cascade`): tiny random models, then the real packaged
Whisper tiny.en + SmolLM2 on two LibriSpeech clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from speechllm.annotate import Annotator
from speechllm.cascade import (
    WhisperTranscriber,
    normalize_transcript,
    number_words,
    ordinal_words,
    run_cascade,
)
from speechllm.cli import app
from speechllm.config import AdapterConfig, ModelConfig
from speechllm.labels import SENTIMENTS, SLUE_TAGS
from speechllm.manifest import Utterance, read_manifest, write_manifest
from speechllm.model import SpeechLLM
from tiny import save_tiny_whisper_asr

runner = CliRunner()

# ------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (17, "seventeen"),
        (80, "eighty"),
        (250, "two hundred and fifty"),
        (2014, "two thousand and fourteen"),
        (2800, "two thousand eight hundred"),
        (7_000_000_000, "seven billion"),
        (1_000_005, "one million and five"),
    ],
)
def test_number_words_as_slue_spells_them(n, words):
    # Spellings as SLUE-VoxPopuli's normalized_text has them ("two thousand and fourteen").
    assert number_words(n) == words


def test_ordinal_words():
    assert [ordinal_words(n) for n in (1, 2, 3, 12, 20, 21, 100)] == [
        "first",
        "second",
        "third",
        "twelfth",
        "twentieth",
        "twenty first",
        "one hundredth",
    ]


def test_normalize_transcript_gives_slue_style_text():
    assert (
        normalize_transcript("In 2014, 15% of the EU's budget (€1,250 million) went to the 13th.")
        == "in two thousand and fourteen fifteen per cent of the eu's budget euro one thousand "
        "two hundred and fifty million went to the thirteenth."
    )
    assert normalize_transcript("A well-known fact: 2.5 points... Really?") == (
        "a well known fact two point five points... really?"
    )
    assert normalize_transcript("  ") == ""


# ------------------------------------------------------------------ tiny models


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def tiny_run(tiny_dirs, tmp_path_factory) -> Path:
    """A saved SpeechLLM run whose encoder is the tiny Whisper-with-decoder."""
    root = tmp_path_factory.mktemp("cascade")
    asr = save_tiny_whisper_asr(root / "tiny-whisper-asr")
    torch.manual_seed(0)
    model = SpeechLLM.from_config(
        ModelConfig(
            encoder=str(asr),
            llm=str(tiny_dirs[1]),
            adapter=AdapterConfig(hidden=48),
            max_new_tokens=8,
        )
    )
    model.save(root / "run" / "model")
    return root / "run"


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cascade-data")
    rows = []
    labels = [([("PLACE", "brussels")], "Positive"), ([], None), (None, "Negative")]
    for i, (entities, sentiment) in enumerate(labels):
        sf.write(root / f"c{i}.wav", noise(1.0 + 0.5 * i, i), 16000)
        rows.append(
            Utterance(
                f"c{i}",
                str(root / f"c{i}.wav"),
                1.0 + 0.5 * i,
                "the council met in brussels",
                entities,
                sentiment,
                "dev",
            )
        )
    write_manifest(root / "m.jsonl", rows)
    return root / "m.jsonl"


def test_transcriber_batches_like_one_by_one(tiny_run):
    t = WhisperTranscriber.load(str(tiny_run.parent / "tiny-whisper-asr"))
    audios = [noise(s, i) for i, s in enumerate((1.0, 2.5, 0.5))]
    batched = t.transcribe(audios)
    assert batched == [t.transcribe([a])[0] for a in audios]
    assert all(batched) and len(set(batched)) > 1


def test_run_cascade_labels_the_normalised_transcript(tiny_run, tiny_manifest, tiny_dirs):
    utts = read_manifest(tiny_manifest, require_audio=True)
    transcriber = WhisperTranscriber.load(str(tiny_run.parent / "tiny-whisper-asr"))
    annotator = Annotator.load(str(tiny_dirs[1]))
    result = run_cascade(utts, ["asr", "ner", "sa"], transcriber, annotator, batch_size=2)
    assert [a["id"] for a in result.answers] == ["c0", "c1", "c2"]
    for a in result.answers:
        assert a["transcript"] == normalize_transcript(a["transcript"])  # already normalised
        assert a["raw"]["asr"] == a["transcript"]
    # NER where the reference has entity labels, SA where it has a sentiment: as end to end.
    assert [("entities" in a, "sentiment" in a) for a in result.answers] == [
        (True, True),
        (True, False),
        (False, True),
    ]
    for a in result.answers:
        assert all(tag in SLUE_TAGS and p in a["transcript"] for tag, p in a.get("entities", []))
        assert a.get("sentiment", "Neutral") in SENTIMENTS
    assert result.asr_seconds > 0 and result.label_seconds > 0


def test_cli_cascade_and_end_to_end_share_the_report(tiny_run, tiny_manifest, tmp_path):
    outs = {}
    for name, extra in (("e2e", []), ("cascade", ["--cascade"])):
        out = tmp_path / name
        result = runner.invoke(
            app,
            [
                "evaluate",
                "--model",
                str(tiny_run),
                "--manifest",
                str(tiny_manifest),
                "--out",
                str(out),
                "--batch-size",
                "2",
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
        outs[name] = out
    e2e = json.loads((outs["e2e"] / "metrics.json").read_text())
    cascade = json.loads((outs["cascade"] / "metrics.json").read_text())
    for m in (e2e, cascade):
        assert m["wall_seconds"] > 0 and m["cpu_seconds"] > 0
        assert {"wer", "ner_f1", "ner_label_f1", "sa_macro_f1", "slue_score"} <= m.keys()
    assert cascade["cascade"]["asr"] == str(tiny_run.parent / "tiny-whisper-asr")
    assert cascade["cascade"]["asr_seconds"] > 0 and cascade["cascade"]["label_seconds"] > 0
    # The same scoring and report code: the same figures and files, whichever system decoded.
    only_e2e = {"ctc_wer"}
    assert set(e2e) - only_e2e - {"cascade"} == set(cascade) - {"cascade"}
    assert sorted(p.name for p in outs["e2e"].iterdir()) == sorted(
        p.name for p in outs["cascade"].iterdir()
    )
    preds = read_manifest(outs["cascade"] / "predictions.jsonl")
    assert [p.id for p in preds] == ["c0", "c1", "c2"]
    assert "cascade" in (outs["cascade"] / "report.md").read_text()


# ------------------------------------------------------------------ real models


@pytest.mark.e2e
def test_cascade_on_librispeech_with_the_packaged_models(shared, tmp_path):
    from speechllm.importers import import_librispeech

    utts = import_librispeech(shared / "data/librispeech-sample/LibriSpeech")[:2]
    for u in utts:  # labels, so that the LLM labels the transcripts too
        u.entities, u.sentiment = [], "Neutral"
    write_manifest(tmp_path / "m.jsonl", utts)
    run = Path(__file__).parents[1] / "src/speechllm/assets/pretrained/smollm2-135m-whisper-tiny.en"
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--cascade",
            "--model",
            str(run),
            "--manifest",
            str(tmp_path / "m.jsonl"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # Whisper tiny.en reads clean LibriSpeech well (LibriSpeech, CC BY 4.0, Panayotov et al.).
    assert metrics["wer"] < 20, metrics["wer"]
    assert metrics["cascade"] == {
        **metrics["cascade"],
        "asr": "whisper-tiny.en",
        "llm": "smollm2-135m-instruct",
    }
    assert metrics["ner_parse_failures"] == 0 and metrics["sa_parse_failures"] == 0
    preds = read_manifest(out / "predictions.jsonl")
    assert all(p.text == p.text.lower() and p.sentiment in SENTIMENTS for p in preds)
    assert metrics["wall_seconds"] > 0
