"""`speechllm export` on tiny models: a merged export reproduces the original's outputs."""

import json
import shutil

import numpy as np
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from speechllm.config import AdapterConfig, ClassifierHeadsConfig, LoraSettings, ModelConfig
from speechllm.errors import ConfigError, ModelSourceError
from speechllm.hub.shipped import CONFIG_FILE, WEIGHTS_FILE
from speechllm.model.export import MERGED_LLM_DIR, export_model
from speechllm.model.saving import read_model_config
from speechllm.model.speechllm import Batch, SpeechLLM

TASKS = ["asr", "ner", "sa"]


def trained_model(tiny_dirs, lora: bool = True, speech_input: str = "adapter") -> SpeechLLM:
    """A tiny model whose trained parts (LoRA B starts at zero) are moved off their init."""
    w, lm = tiny_dirs
    cfg = ModelConfig(
        encoder=str(w),
        llm=str(lm),
        adapter=AdapterConfig(hidden=48),
        lora=LoraSettings(enabled=lora, r=4, alpha=8, dropout=0.1),
        speech_input=speech_input,
        max_new_tokens=12,
        classifier_heads=ClassifierHeadsConfig(enabled=True, hidden=16),
    )
    torch.manual_seed(0)
    m = SpeechLLM.from_config(cfg)
    m.ctc.set_vocab(list(range(3, 300, 2)))
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    return m.eval()


def inputs(m: SpeechLLM):
    rng = np.random.default_rng(0)
    wavs = [(rng.standard_normal(int(s * 16000)) * 0.1).astype(np.float32) for s in (0.6, 1.1, 0.9)]
    frames, lengths = m.encoder(wavs)
    return frames, lengths


def full_logits(m: SpeechLLM, frames, lengths, answers) -> torch.Tensor:
    """LLM logits (B, L, V) at every position of the training layout."""
    speech = m.llm_speech(*m.speech_embeddings(frames, lengths))
    embeds, mask, _ = m._assemble(*speech, TASKS, answers, left_pad=False)
    return m.llm(inputs_embeds=embeds, attention_mask=mask).logits


@pytest.mark.parametrize("speech_input", ["adapter", "ctc"])
def test_merged_export_gives_the_same_outputs(tiny_dirs, tmp_path, speech_input):
    m = trained_model(tiny_dirs, speech_input=speech_input)
    m.save(tmp_path / "run/model")
    (tmp_path / "run/model/train_summary.json").write_text("{}\n")
    frames, lengths = inputs(m)
    answers = ["the european commission", "[PLACE brussels] on monday", "Positive"]
    batch = Batch(frames, lengths, TASKS, answers)
    with torch.no_grad():
        want_loss = m(batch)["lm_loss"]
    want_text = m.generate(frames, lengths, TASKS)
    want_cls = m.classify(frames, lengths)
    want_ctc = m.ctc_transcripts(frames, lengths)

    out = export_model(tmp_path / "run/model", tmp_path / "export", merge=True)

    # A plain HF LLM folder (weights, config, tokenizer) with no LoRA left in it.
    llm_files = {p.name for p in (out / MERGED_LLM_DIR).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= llm_files
    assert "adapter_config.json" not in llm_files
    merged_llm = load_file(str(out / MERGED_LLM_DIR / "model.safetensors"))
    assert not any("lora_" in k for k in merged_llm)
    base = load_file(str(tiny_dirs[1] / "model.safetensors"))
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged_llm[key], base[key])  # the LoRA update is in the weights
    weights = load_file(str(out / WEIGHTS_FILE))
    assert {k.split(".")[0] for k in weights} == {"adapter", "ctc", "classifier"}
    meta = json.loads((out / CONFIG_FILE).read_text())
    assert meta["llm"] == MERGED_LLM_DIR and not meta["lora"]["enabled"]
    assert meta["merged_lora"] and meta["exported_from"] == str((tmp_path / "run/model").resolve())
    assert read_model_config(out).llm == str((out / MERGED_LLM_DIR).resolve())
    assert (out / "train_summary.json").is_file()

    again = SpeechLLM.load(out)
    assert not isinstance(again.llm, PeftModel)
    with torch.no_grad():
        torch.testing.assert_close(again(batch)["lm_loss"], want_loss, atol=1e-5, rtol=1e-5)
    assert again.generate(frames, lengths, TASKS) == want_text
    assert any(want_text)
    assert again.ctc_transcripts(frames, lengths) == want_ctc
    assert again.classify(frames, lengths) == want_cls
    # Logits at every position, computed in float64 so that what is compared is the merge (one
    # float32 rounding of W + s B A) rather than float32 summation order, which alone moves these
    # logits (up to ~8) by ~2e-5.
    with torch.no_grad():
        want = full_logits(m.double(), frames.double(), lengths, answers)
        got = full_logits(again.double(), frames.double(), lengths, answers)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)

    # The export is relocatable: its LLM is named relative to the folder.
    moved = shutil.move(str(out), str(tmp_path / "elsewhere"))
    assert SpeechLLM.load(moved).generate(frames, lengths, TASKS) == want_text


def test_merge_of_a_model_without_lora_copies_the_llm(tiny_dirs, tmp_path):
    m = trained_model(tiny_dirs, lora=False)
    m.save(tmp_path / "m")
    frames, lengths = inputs(m)
    out = export_model(tmp_path / "m", tmp_path / "x", merge=True)
    assert SpeechLLM.load(out).generate(frames, lengths, TASKS) == m.generate(
        frames, lengths, TASKS
    )


def test_plain_export_is_a_byte_copy(tiny_dirs, tmp_path):
    m = trained_model(tiny_dirs)
    m.save(tmp_path / "m")
    out = export_model(tmp_path / "m", tmp_path / "copy")
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        assert (out / name).read_bytes() == (tmp_path / "m" / name).read_bytes()
    frames, lengths = inputs(m)
    assert SpeechLLM.load(out).generate(frames, lengths, TASKS) == m.generate(
        frames, lengths, TASKS
    )


def test_export_refuses_bad_source_and_existing_output(tiny_dirs, tmp_path):
    with pytest.raises(ModelSourceError, match="not a speechllm model"):
        export_model(tmp_path, tmp_path / "out")
    m = trained_model(tiny_dirs, lora=False)
    m.save(tmp_path / "m")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_model(tmp_path / "m", tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(ConfigError, match="inside the model folder"):
        export_model(tmp_path / "m", tmp_path / "m" / "sub")
    (tmp_path / "m" / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelSourceError, match=WEIGHTS_FILE):
        export_model(tmp_path / "m", tmp_path / "out")
