"""The embedded default: its config is valid and describes the adapter the package ships."""

import dataclasses

import pytest
from safetensors.torch import load_file

from speechllm import demo
from speechllm.config import RunConfig
from speechllm.model import WEIGHTS_FILE, read_model_config

# The shipped model scored 27.5% WER (CTC head 24.1%) on 40 held-out sentences; 8 others vary
# more, and a model that does not transcribe scores near or above 100%.
WER_LIMIT = 50.0


def test_demo_config_builds():
    settings = demo.demo_settings()
    run = RunConfig.from_dict(settings["run"])
    assert run.model.speech_input == "ctc" and run.train.ctc_weight > 0
    assert settings["data"]["train_utterances"] > 0 and settings["data"]["dev_utterances"] > 0


def test_shipped_adapter_matches_the_demo_model():
    settings = demo.demo_settings()
    shipped = demo.pretrained_dir() / settings["init_from"]
    assert (shipped / WEIGHTS_FILE).is_file(), "the release ships its pretrained adapter"
    run = RunConfig.from_dict(settings["run"])
    assert dataclasses.asdict(read_model_config(shipped)) == dataclasses.asdict(run.model)
    weights = load_file(str(shipped / WEIGHTS_FILE))
    # Trained parts only: adapter, CTC head (+ its vocabulary) and LoRA; no base-model weights.
    assert {k.split(".")[0] for k in weights} == {"adapter", "ctc", "llm"}
    assert all("lora_" in k for k in weights if k.startswith("llm."))
    assert weights["ctc.vocab"].numel() > 1000
    assert (shipped / WEIGHTS_FILE).stat().st_size < 25e6
    assert (shipped / "README.md").is_file()  # the command that reproduces it


@pytest.mark.e2e
def test_shipped_adapter_transcribes_held_out_speech(shared, tmp_path):
    """The shipped model on 8 SLUE-VoxPopuli dev sentences it never trained on, spoken by piper."""
    from speechllm.features import FeatureCache
    from speechllm.importers import import_slue_voxpopuli
    from speechllm.inference import ctc_decode, decode, evaluate
    from speechllm.model import SpeechLLM
    from speechllm.slue import wer
    from speechllm.tts import synthesize_manifest

    dev = import_slue_voxpopuli(shared / "data/slue-voxpopuli/slue-voxpopuli_dev.tsv")[40:48]
    utts = synthesize_manifest(dev, tmp_path / "tts", seed=3, progress=False)
    model = SpeechLLM.load(demo.pretrained_dir() / demo.demo_settings()["init_from"])
    cache = FeatureCache(model.encoder, tmp_path / "features")
    frames = [cache.get(u.audio) for u in utts]
    refs = [u.text for u in utts]
    llm_wer = wer(refs, decode(model, frames, ["asr"] * len(utts)))
    ctc_wer = wer(refs, ctc_decode(model, frames))
    assert llm_wer < WER_LIMIT and ctc_wer < WER_LIMIT, (llm_wer, ctc_wer)
    metrics, _ = evaluate(model, utts, frames, ["ner"])
    assert metrics["ner_parse_failures"] < len(utts)
