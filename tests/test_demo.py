"""The embedded default: the demo's settings, the shipped model's folder, and (e2e) the demo run
end to end as the quality gate of the shipped default."""

import json

import pytest
from safetensors.torch import load_file

from speechllm import demo
from speechllm.hub.shipped import DEFAULT_MODEL, WEIGHTS_FILE, resolve_model, shipped_models
from speechllm.model.saving import read_model_config

GATE_FILE = "quality_gate.json"
"""In the shipped model's folder: its figures on the demo's clips, measured when it shipped."""

# How far the figures may fall below the recorded ones before the gate fails: the clips are the
# same on every run (seeded piper), so only arithmetic differences between machines (thread
# counts, BLAS) move them, by far less than this.
WER_MARGIN = 3.0
F1_MARGIN = 5.0


def test_demo_settings_name_a_shipped_model_and_clips():
    settings = demo.demo_settings()
    assert resolve_model(settings.get("model")).name in shipped_models()
    assert settings["ner"] > 0 and settings["sa"] > 0 and settings["show"] >= 0


def test_the_default_model_ships_trained_weights_only():
    folder = resolve_model()
    assert folder.name == DEFAULT_MODEL
    config = read_model_config(folder)  # also checks the prompt version
    weights = load_file(str(folder / WEIGHTS_FILE))
    trained = {k for k in weights if k != "ctc.vocab"}
    assert trained and all(k.startswith("llm.") and "lora_" in k for k in trained), sorted(trained)[
        :5
    ]
    assert config.lora.enabled and config.speech_input == "whisper"
    assert (folder / WEIGHTS_FILE).stat().st_size < 25e6
    assert (folder / "README.md").is_file()  # the model card: recipe command and figures
    gate = json.loads((folder / GATE_FILE).read_text())
    assert {"wer", "ner_f1", "sa_macro_f1"} <= gate.keys()


@pytest.mark.e2e
def test_demo_runs_and_the_default_model_holds_its_card_figures(shared, tmp_path):
    """`speechllm demo` end to end; the default model's figures on its seeded clips must stay
    within a few points of those recorded when it shipped (quality_gate.json)."""
    summary = demo.run_demo(tmp_path / "demo", show=2)
    gate = json.loads((resolve_model() / GATE_FILE).read_text())
    mine = summary["model_metrics"]
    assert mine["wer"] <= gate["wer"] + WER_MARGIN, (mine["wer"], gate)
    assert mine["ner_f1"] >= gate["ner_f1"] - F1_MARGIN, (mine["ner_f1"], gate)
    assert mine["sa_macro_f1"] >= gate["sa_macro_f1"] - F1_MARGIN, (mine["sa_macro_f1"], gate)
    assert summary["clips"] == 12 + 12 + 4
    # The cascade ran on the same clips and was scored by the same code.
    assert {"wer", "ner_f1", "sa_macro_f1"} <= summary["cascade_metrics"].keys()
