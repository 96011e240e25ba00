"""CLI round trip on the real packaged models: import, synthesize, train (loss falls), info, infer."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from speechllm.cli import app
from speechllm.data.manifest import Utterance, read_manifest, write_manifest

pytestmark = pytest.mark.e2e
runner = CliRunner()

SENTENCES = [
    ("s1", "the commission met in brussels", [("ORG", "commission"), ("PLACE", "brussels")]),
    ("s2", "we vote on monday", [("WHEN", "monday")]),
    ("s3", "france supports the report", [("PLACE", "france")]),
    ("s4", "thank you mister president", []),
]


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_cli_round_trip(tmp_path, shared):
    # import: SLUE tsv -> text manifest
    out = tmp_path / "slue.jsonl"
    invoke(
        "data",
        "import",
        "slue-voxpopuli",
        str(shared / "data/slue-voxpopuli/slue-voxpopuli_dev.tsv"),
        "--out",
        str(out),
        "--limit",
        "3",
    )
    assert len(read_manifest(out)) == 3
    invoke(
        "data",
        "import",
        "librispeech",
        str(shared / "data/librispeech-sample"),
        "--out",
        str(tmp_path / "libri.jsonl"),
    )
    assert len(read_manifest(tmp_path / "libri.jsonl", require_audio=True)) == 4

    # synth: short sentences so each training step is quick
    text = tmp_path / "text.jsonl"
    write_manifest(text, [Utterance(i, None, None, t, e, None, "train") for i, t, e in SENTENCES])
    invoke("data", "synth", str(text), "--out", str(tmp_path / "tts"))
    spoken = read_manifest(tmp_path / "tts/manifest.jsonl", require_audio=True)
    assert len(spoken) == 4 and all(u.duration > 0.5 for u in spoken)

    # train: a few steps on the real models; the LM loss must fall
    cfg = {
        "model": {
            "encoder": "whisper-tiny.en",
            "llm": "smollm2-135m-instruct",
            "max_new_tokens": 16,
        },
        "data": {
            "train": [str(tmp_path / "tts/manifest.jsonl")],
            "eval": [str(tmp_path / "tts/manifest.jsonl")],
            "tasks": ["asr", "ner"],
            "max_eval_utterances": 2,
        },
        "train": {
            "output_dir": str(tmp_path / "run"),
            "batch_size": 4,
            "lr": 3e-3,
            "warmup_steps": 2,
            "max_steps": 16,
            "eval_every": 0,
            "save_every": 8,
            "log_every": 4,
            "precision": "fp32",
            "feature_cache": str(tmp_path / "features"),
        },
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    invoke("train", str(tmp_path / "cfg.yaml"))
    log = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    losses = [r["lm_loss"] for r in log if "lm_loss" in r]
    assert losses[-1] < 0.85 * losses[0], losses
    assert [r for r in log if r.get("eval")][-1]["n"] == 2

    info = invoke("info", str(tmp_path / "run"))
    assert "adapter" in info.output and "encoder" in info.output

    # infer: JSON per file; a corrupt file gets an error entry, the good one still decodes
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really audio")
    result = runner.invoke(
        app, ["infer", "--model", str(tmp_path / "run"), "--task", "all", spoken[0].audio, str(bad)]
    )
    assert result.exit_code == 1, result.output
    decoded = json.loads(result.stdout)
    assert {"transcript", "entities", "sentiment", "raw"} <= decoded[0].keys()
    assert "bad.wav" in decoded[1]["error"]


def test_infer_with_no_other_argument_uses_the_shipped_default_quietly(shared, tmp_path):
    """`speechllm infer clip.wav` on a fresh install: the default model answers, and stderr holds
    no third-party warnings or weight-loading bars (`--verbose` shows them)."""
    import subprocess
    import sys
    from pathlib import Path

    from speechllm.hub.shipped import resolve_model
    from speechllm.hub.sources import fetch
    from speechllm.model.saving import read_model_config

    # Base models fetched first: a first fetch's conversion is a separate, one-off step.
    config = read_model_config(resolve_model())
    fetch(config.encoder), fetch(config.llm)
    clip = sorted((shared / "data/librispeech-sample").rglob("*.flac"))[0]
    speechllm = Path(sys.executable).with_name("speechllm")
    done = subprocess.run(
        [str(speechllm), "infer", str(clip)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    (answer,) = json.loads(done.stdout)
    assert {"transcript", "entities", "sentiment"} <= answer.keys()
    assert "wait no longer" in answer["transcript"] or len(answer["transcript"].split()) > 3
    for noise in ("Warning", "warn(", "Loading weights", "it/s]"):
        assert noise not in done.stderr, done.stderr
