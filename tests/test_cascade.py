"""The cascade baseline (`evaluate --cascade`): tiny random models, then the real packaged
Whisper tiny.en + SmolLM2 on two LibriSpeech clips. (Its text normalisation: test_normalize.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from clips import noise
from speechllm.annotate.annotator import Annotator
from speechllm.cli import app
from speechllm.data.manifest import Utterance, read_manifest, write_manifest
from speechllm.data.normalize import normalize_transcript
from speechllm.evaluation.cascade import run_cascade
from speechllm.labels import SENTIMENTS, SLUE_TAGS
from speechllm.model.whisper_reader import WhisperTranscriber

runner = CliRunner()

# ------------------------------------------------------------------ tiny models


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


def test_transcriber_batches_like_one_by_one(tiny_asr_run):
    t = WhisperTranscriber.load(str(tiny_asr_run.parent / "tiny-whisper-asr"))
    audios = [noise(s, i) for i, s in enumerate((1.0, 2.5, 0.5))]
    batched = t.transcribe(audios)
    assert batched == [t.transcribe([a])[0] for a in audios]
    assert all(batched) and len(set(batched)) > 1


def test_run_cascade_labels_the_normalised_transcript(tiny_asr_run, tiny_manifest, tiny_dirs):
    utts = read_manifest(tiny_manifest, require_audio=True)
    transcriber = WhisperTranscriber.load(str(tiny_asr_run.parent / "tiny-whisper-asr"))
    annotator = Annotator.load(str(tiny_dirs[1]))
    result = run_cascade(utts, ["asr", "ner", "sa"], transcriber, annotator, batch_size=2)
    assert [p.id for p in result.predictions] == ["c0", "c1", "c2"]
    for p in result.predictions:
        assert p.transcript == normalize_transcript(p.transcript)  # already normalised
        assert p.raw["asr"] == p.transcript
    # NER where the reference has entity labels, SA where it has a sentiment: as end to end.
    assert [(p.entities is not None, p.has_sentiment) for p in result.predictions] == [
        (True, True),
        (True, False),
        (False, True),
    ]
    for p in result.predictions:
        assert all(tag in SLUE_TAGS and ph in p.transcript for tag, ph in p.entities or [])
        assert p.sentiment in SENTIMENTS or not p.has_sentiment
        # The JSON shape is the model's: the same keys for the same outputs.
        assert set(p.to_dict()) == {"raw", "parse_failures", "transcript"} | (
            {"entities"} if p.entities is not None else set()
        ) | ({"sentiment"} if p.has_sentiment else set())
    assert result.asr_seconds > 0 and result.label_seconds > 0


def test_cli_cascade_and_end_to_end_share_the_report(tiny_asr_run, tiny_manifest, tmp_path):
    outs = {}
    for name, extra in (("e2e", []), ("cascade", ["--cascade"])):
        out = tmp_path / name
        result = runner.invoke(
            app,
            [
                "evaluate",
                "--model",
                str(tiny_asr_run),
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
    assert cascade["cascade"]["asr"] == str(tiny_asr_run.parent / "tiny-whisper-asr")
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
    from speechllm.data.importers.librispeech import import_librispeech

    utts = import_librispeech(shared / "data/librispeech-sample/LibriSpeech")[:2]
    for u in utts:  # labels, so that the LLM labels the transcripts too
        u.entities, u.sentiment = [], "Neutral"
    write_manifest(tmp_path / "m.jsonl", utts)
    from speechllm.hub.shipped import resolve_model

    run = resolve_model()
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
