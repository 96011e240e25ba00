"""`speechllm demo` end to end in seconds: the shipped default swapped for a tiny random model that
reads speech with a tiny Whisper-with-decoder (tests/test_demo.py runs the real one, e2e)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import speechllm.hub.sources
from speechllm import demo
from speechllm.cli import app

SETTINGS = {"ner": 1, "sa": 1, "seed": 0, "show": 6}  # piper speaks 2 clips: most of the time
LIBRISPEECH_CLIPS = 4


def test_demo_command_on_a_tiny_model(shared, tiny_asr_run, tmp_path, monkeypatch):
    settings = {**SETTINGS, "model": str(tiny_asr_run)}
    monkeypatch.setattr(demo, "demo_settings", lambda: settings)
    # The tiny model names its base models by folder, not as packaged models to build.
    monkeypatch.setattr(speechllm.hub.sources, "fetch", lambda name, **_: Path(name))
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--workdir", str(workdir), "--show", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((workdir / "demo_summary.json").read_text())
    assert summary["model"] == "model"  # the run's model/ folder
    assert summary["clips"] == SETTINGS["ner"] + SETTINGS["sa"] + LIBRISPEECH_CLIPS
    assert summary["audio_seconds"] > 0
    # Both systems answered every task and were scored on the same clips.
    for system in ("model_metrics", "cascade_metrics"):
        assert {"wer", "ner_f1", "sa_macro_f1"} <= summary[system].keys(), system
    # Two clips side by side (gold, model, cascade), then the table of scores.
    assert result.stdout.count("gold") == 2
    for label in ("WER %", "NER F1", "sentiment macro F1", "SLUE score", "seconds"):
        assert label in result.stdout, label
