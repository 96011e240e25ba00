"""The model on tiny random Whisper + Llama built in code: shapes, masks, batching, save/load."""

import json

import numpy as np
import pytest
import torch

from speechllm.config import AdapterConfig, LoraSettings, ModelConfig
from speechllm.model.batch import collate_frames
from speechllm.model.encoder import load_speech_encoder
from speechllm.model.speechllm import Batch, SpeechLLM


def make_model(tiny_dirs, **kw) -> SpeechLLM:
    w, lm = tiny_dirs
    cfg = ModelConfig(encoder=str(w), llm=str(lm), adapter=AdapterConfig(hidden=48), **kw)
    torch.manual_seed(0)
    return SpeechLLM.from_config(cfg).eval()


def waves(*seconds: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(int(s * 16000)) * 0.1).astype(np.float32) for s in seconds]


def test_encoder_runs_real_length_and_batches_exactly(tiny_dirs):
    enc = load_speech_encoder(str(tiny_dirs[0]))
    a, b = waves(1.3, 2.0)
    frames, lengths = enc([a, b])
    assert lengths.tolist() == [65, 100]  # 50 Hz, no padding to 30 s
    assert frames.shape == (2, 100, enc.dim)
    assert frames[0, 65:].abs().max() == 0
    alone, _ = enc([a])
    torch.testing.assert_close(frames[0, :65], alone[0], atol=1e-5, rtol=1e-5)


def test_loss_only_on_answer_tokens(tiny_dirs):
    m = make_model(tiny_dirs)
    speech = torch.randn(2, 6, m.llm.config.hidden_size)
    answers = ["the european commission", "Positive"]
    _, mask, labels = m._assemble(
        speech, torch.tensor([6, 4]), ["asr", "sa"], answers, left_pad=False
    )
    for i, ans in enumerate(answers):
        ids = m.answer_ids(ans)
        supervised = labels[i][labels[i] != -100].tolist()
        assert supervised == ids
        # The supervised tokens are the last real positions of the row.
        n = int(mask[i].sum())
        assert labels[i, n - len(ids) : n].tolist() == ids
        pre, post = m.layout.prompt_ids[["asr", "sa"][i]]
        assert n == len(pre) + [6, 4][i] + len(post) + len(ids)  # speech kept at its own length


def test_an_unscored_answer_prefix_adds_no_loss(tiny_dirs):
    m = make_model(tiny_dirs)
    speech = torch.randn(2, 4, m.llm.config.hidden_size)
    answers = ["Positive | the european commission"] * 2
    args = (speech, torch.tensor([4, 4]), ["all", "all"], answers)
    _, _, full = m._assemble(*args, left_pad=False)
    _, _, part = m._assemble(*args, left_pad=False, unscored=["Positive", ""])
    word = len(m.tokenizer("Positive", add_special_tokens=False).input_ids)
    taught = full[0][full[0] != -100].tolist()
    assert part[0][part[0] != -100].tolist() == taught[word:]
    assert torch.equal(part[1], full[1])
    with pytest.raises(ValueError, match="does not open with"):
        m._assemble(*args, left_pad=False, unscored=["Negative", ""])


def test_training_forward_backward_touches_only_trainable(tiny_dirs):
    m = make_model(tiny_dirs)
    m.train()
    frames, lengths = m.encoder(waves(1.0, 0.7))
    out = m(
        Batch(frames, lengths, ["asr", "ner"], ["hello", "[ORG hello]"], ["hello", "hello"]),
        ctc_weight=1.0,
    )
    assert {"loss", "lm_loss", "ctc_loss"} <= out.keys()
    out["loss"].backward()
    assert all(p.grad is not None for p in m.adapter.parameters())
    assert all(p.grad is None for p in m.llm.parameters())
    assert all(p.grad is None for p in m.encoder.parameters())


@pytest.mark.parametrize("speech_input", ["adapter", "ctc"])
def test_batched_generation_equals_one_by_one(tiny_dirs, speech_input):
    m = make_model(tiny_dirs, speech_input=speech_input)
    frames, lengths = m.encoder(waves(0.5, 1.7, 1.1, 0.9))
    tasks = ["asr", "ner", "sa", "asr"]
    batched = m.generate(frames, lengths, tasks, max_new_tokens=12)
    single = [
        m.generate(
            frames[i : i + 1, : lengths[i]], lengths[i : i + 1], [tasks[i]], max_new_tokens=12
        )[0]
        for i in range(4)
    ]
    assert batched == single
    assert any(batched)  # random weights still emit tokens


@pytest.mark.parametrize(("lora", "speech_input"), [(False, "adapter"), (True, "ctc")])
def test_save_load_restores_identical_logits(tiny_dirs, tmp_path, lora, speech_input):
    m = make_model(
        tiny_dirs, lora=LoraSettings(enabled=lora, r=4, alpha=8), speech_input=speech_input
    )
    m.ctc.set_vocab(list(range(3, 300, 2)))
    with torch.no_grad():  # move trained parts away from their init so the test can fail
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    frames, lengths = m.encoder(waves(1.0))
    batch = Batch(frames, lengths, ["asr"], ["hello"], None)
    before = m(batch)["lm_loss"]
    m.save(tmp_path / "run")
    saved = set(
        __import__("safetensors.torch").torch.load_file(str(tmp_path / "run/model.safetensors"))
    )
    assert any(k.startswith("adapter.") for k in saved)
    assert any("lora_" in k for k in saved) == lora
    assert not any(k.startswith(("encoder.", "llm.")) and "lora_" not in k for k in saved)
    again = SpeechLLM.load(tmp_path / "run")
    assert torch.equal(again.ctc.vocab, m.ctc.vocab)
    torch.testing.assert_close(again(batch)["lm_loss"], before, atol=0, rtol=0)


def test_parameter_report_counts_every_parameter(tiny_dirs):
    m = make_model(tiny_dirs, lora=LoraSettings(enabled=True, r=2, alpha=4))
    report = {part: (t, f) for part, t, f in m.parameter_report()}
    assert report["encoder"][0] == 0 and report["llm"][0] == 0
    assert report["adapter"][0] > 0 and report["lora"][0] > 0
    assert sum(t + f for t, f in report.values()) == sum(p.numel() for p in m.parameters())


def test_collate_pads_with_zeros():
    x, n = collate_frames([torch.ones(3, 2), torch.ones(5, 2)])
    assert x.shape == (2, 5, 2) and n.tolist() == [3, 5] and x[0, 3:].abs().sum() == 0


def test_ctc_only_step_skips_the_llm(tiny_dirs):
    m = make_model(tiny_dirs)
    m.train()
    frames, lengths = m.encoder(waves(1.0, 0.7))
    calls = []
    handle = m.llm.get_decoder().register_forward_hook(lambda *a: calls.append(1))
    out = m(
        Batch(frames, lengths, ["asr", "asr"], ["hello", "bye"], ["hello", "bye"]),
        ctc_weight=1.0,
        lm=False,
    )
    assert set(out) == {"loss", "ctc_loss"} and not calls
    m(Batch(frames, lengths, ["asr", "asr"], ["hello", "bye"], ["hello", "bye"]), ctc_weight=1.0)
    handle.remove()
    assert calls  # the hook does see the LLM when the LM loss is on
    out["loss"].backward()
    assert m.ctc.blank.grad is not None and all(p.grad is not None for p in m.adapter.parameters())


@pytest.fixture(scope="module")
def saved(tiny_dirs, tmp_path_factory):
    """A tiny model with LoRA and trained parts moved off their init, saved; (model, folder)."""
    m = make_model(tiny_dirs, lora=LoraSettings(enabled=True, r=4, alpha=8))
    m.ctc.set_vocab(list(range(3, 300, 2)))
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    return m, m.save_pretrained(tmp_path_factory.mktemp("saved") / "model")


def _outputs(m, frames, lengths):
    batch = Batch(frames, lengths, ["asr", "ner"], ["hello", "[ORG hello]"], None)
    return m(batch)["lm_loss"], m.generate(frames, lengths, ["asr", "ner"], max_new_tokens=8)


def test_saved_folder_is_a_transformers_folder_loaded_by_from_pretrained(saved):
    from transformers import AutoConfig, AutoModel, PreTrainedModel

    from speechllm.model.configuration import SpeechLLMConfig

    m, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta["model_type"] == "speechllm" and meta["architectures"] == ["SpeechLLM"]
    assert meta["encoder"] == m.config.encoder and meta["lora"]["r"] == 4
    assert isinstance(AutoConfig.from_pretrained(folder), SpeechLLMConfig)
    again = SpeechLLM.from_pretrained(folder)
    assert isinstance(again, PreTrainedModel) and not again.training
    frames, lengths = m.encoder(waves(1.0, 0.6))
    loss, answers = _outputs(m, frames, lengths)
    loss_again, answers_again = _outputs(again, frames, lengths)
    torch.testing.assert_close(loss_again, loss, atol=0, rtol=0)
    assert answers_again == answers
    mine, theirs = m.trainable_state_dict(), again.trainable_state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    auto = AutoModel.from_pretrained(folder)  # transformers' Auto classes know the model type
    assert type(auto) is SpeechLLM and _outputs(auto, frames, lengths)[1] == answers
    with pytest.raises(TypeError, match=r"unsupported options \['revision'\]"):
        SpeechLLM.from_pretrained(folder, revision="v2")  # a local folder has no revisions


def _edited(folder, tmp_path, **changes):
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    meta = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**meta, **changes}))
    return copy


def test_a_folder_of_another_prompt_version_is_refused(saved, tmp_path):
    from speechllm.errors import ModelSourceError
    from speechllm.model.prompts import PROMPT_VERSION

    folder = _edited(saved[1], tmp_path, prompt_version=PROMPT_VERSION + 1)
    with pytest.raises(ModelSourceError, match=f"prompt version {PROMPT_VERSION + 1} .*retrain"):
        SpeechLLM.from_pretrained(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"adapter_kind": "stack"}, r"unknown key\(s\) \['adapter_kind'\]"),
        ({"lora": {"enabled": True, "rank": 4}}, r"model.lora: unknown key\(s\) \['rank'\]"),
        ({"speech_input": "phonemes"}, "speech_input: 'phonemes' is not one of"),
        ({"max_new_tokens": "many"}, "max_new_tokens: expected int"),
    ],
)
def test_a_folder_with_an_unknown_key_or_a_bad_value_is_refused(saved, tmp_path, change, message):
    from speechllm.errors import ModelSourceError

    folder = _edited(saved[1], tmp_path, **change)
    with pytest.raises(ModelSourceError, match=message) as info:
        SpeechLLM.from_pretrained(folder)
    assert str(folder / "config.json") in str(info.value)  # names the file


def test_an_old_format_folder_loads_and_converts_with_tensors_unchanged(saved, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from speechllm.model.configuration import MODEL_FIELDS
    from speechllm.model.saving import convert_legacy_folder

    m, folder = saved
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    meta = json.loads((old / "config.json").read_text())
    # The layout this project wrote before its folders were transformers folders.
    legacy = {"model": {k: meta[k] for k in MODEL_FIELDS}, "prompt_version": meta["prompt_version"]}
    (old / "config.json").unlink()
    (old / "speechllm_config.json").write_text(json.dumps(legacy))
    (old / "README.md").write_text("model card\n")
    frames, lengths = m.encoder(waves(0.8, 1.1))
    loss, answers = _outputs(m, frames, lengths)
    assert _outputs(SpeechLLM.from_pretrained(old), frames, lengths)[1] == answers
    before = load_file(str(old / "model.safetensors"))
    convert_legacy_folder(old)
    assert sorted(p.name for p in old.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    after = load_file(str(old / "model.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    loss_again, answers_again = _outputs(SpeechLLM.from_pretrained(old), frames, lengths)
    torch.testing.assert_close(loss_again, loss, atol=0, rtol=0)
    assert answers_again == answers


def test_speechllm_config_refuses_unknown_keys_and_mirrors_model_config():
    import dataclasses

    from speechllm.config import ModelConfig
    from speechllm.errors import ConfigError
    from speechllm.model.configuration import MODEL_FIELDS, SpeechLLMConfig

    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['bogus'\]"):
        SpeechLLMConfig(bogus=1)
    with pytest.raises(ConfigError, match="whisper"):
        SpeechLLMConfig(speech_input="whisper", classifier_heads={"enabled": True})
    # The two views of the model's settings cannot drift apart: same fields, same defaults.
    assert set(MODEL_FIELDS) <= {f.name for f in dataclasses.fields(SpeechLLMConfig)}
    assert SpeechLLMConfig().model_config() == ModelConfig()
    config = ModelConfig(speech_input="adapter", max_new_tokens=7)
    assert SpeechLLMConfig.from_model_config(config).model_config() == config
