"""Classifier regularizer heads on tiny models: pooling masks padding, the loss counts only
labelled examples, gradients reach the adapter, heads save and load with the model."""

import json

import pytest
import torch
from safetensors.torch import load_file

from speechllm.config import AdapterConfig, ClassifierHeadsConfig, ModelConfig
from speechllm.data.manifest import Utterance
from speechllm.hub.shipped import CONFIG_FILE
from speechllm.labels import SENTIMENTS, SLUE_TAGS
from speechllm.model.regularizer import ClassifierHeads, tag_targets
from speechllm.model.speechllm import Batch, SpeechLLM
from test_model import make_model, waves

POOLINGS = ["mean", "attention"]


def heads_model(tiny_dirs, pooling="mean", **kw) -> SpeechLLM:
    return make_model(
        tiny_dirs,
        classifier_heads=ClassifierHeadsConfig(enabled=True, pooling=pooling, hidden=16, **kw),
    )


def perturb(module: torch.nn.Module, scale: float = 0.3) -> None:
    """Move weights off their init (attention scores start at zero) so tests can fail."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_ignores_padding(pooling):
    heads = ClassifierHeads(8, ClassifierHeadsConfig(enabled=True, pooling=pooling, hidden=4))
    perturb(heads)
    heads.eval()
    speech = torch.randn(2, 6, 8)
    lengths = torch.tensor([4, 6])
    pooled = heads.pool(speech, lengths)
    assert pooled.shape == (2, 8)
    garbage = speech.clone()
    garbage[0, 4:] = 1e3  # whatever the adapter writes past the end must not count
    torch.testing.assert_close(heads.pool(garbage, lengths), pooled)
    torch.testing.assert_close(heads.pool(speech[:1, :4], lengths[:1]), pooled[:1])
    if pooling == "mean":
        torch.testing.assert_close(pooled[0], speech[0, :4].mean(0))
    sa, tags = heads(speech, lengths)
    assert sa.shape == (2, len(SENTIMENTS)) and tags.shape == (2, len(SLUE_TAGS))


def test_attention_pooling_starts_as_the_mean():
    heads = ClassifierHeads(8, ClassifierHeadsConfig(enabled=True, pooling="attention"))
    speech, lengths = torch.randn(2, 5, 8), torch.tensor([3, 5])
    torch.testing.assert_close(heads.pool(speech, lengths)[0], speech[0, :3].mean(0))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_classify_batched_equals_one_by_one(tiny_dirs, pooling):
    m = heads_model(tiny_dirs, pooling)
    perturb(m.classifier)
    frames, lengths = m.encoder(waves(0.6, 1.4))
    batched = m.classify(frames, lengths)
    alone = m.classify(frames[:1, : lengths[0]], lengths[:1])
    assert len(batched) == 2
    assert set(batched[0]["sentiment"]) == set(SENTIMENTS)
    assert set(batched[0]["entity_tags"]) == set(SLUE_TAGS)
    assert sum(batched[0]["sentiment"].values()) == pytest.approx(1.0)
    for key in ("sentiment", "entity_tags"):
        for name, p in alone[0][key].items():
            assert batched[0][key][name] == pytest.approx(p, abs=1e-5)


def test_loss_counts_only_labelled_examples():
    heads = ClassifierHeads(8, ClassifierHeadsConfig(enabled=True, hidden=4, dropout=0.0))
    speech, lengths = torch.randn(3, 5, 8), torch.tensor([5, 3, 4])
    sa, tags = heads(speech, lengths)
    got = heads.loss(speech, lengths, ["Positive", None, None], [None, ["PLACE", "LAW"], None])
    want_sa = torch.nn.functional.cross_entropy(sa[:1], torch.tensor([2]))
    want_tags = torch.nn.functional.binary_cross_entropy_with_logits(
        tags[1:2], tag_targets(["PLACE", "LAW"])[None]
    )
    torch.testing.assert_close(got, (want_sa + want_tags) / 2)
    # An unlabelled row's contents do not matter.
    other = speech.clone()
    other[2] = 5.0
    torch.testing.assert_close(
        heads.loss(other, lengths, ["Positive", None, None], [None, ["PLACE", "LAW"], None]), got
    )
    # [] is a label ("no entities"): all seven targets 0.
    none = heads.loss(speech, lengths, [None] * 3, [[], None, None])
    torch.testing.assert_close(
        none, torch.nn.functional.binary_cross_entropy_with_logits(tags[:1], torch.zeros(1, 7))
    )
    assert heads.loss(speech, lengths, [None] * 3, [None] * 3) is None
    assert heads.loss(speech, lengths, None, None) is None
    with pytest.raises(ValueError, match="Happy"):
        heads.loss(speech, lengths, ["Happy", None, None], None)
    with pytest.raises(ValueError, match="GPE"):
        heads.loss(speech, lengths, None, [["GPE"], None, None])


def test_unlabelled_batch_adds_no_cls_loss(tiny_dirs):
    m = heads_model(tiny_dirs)
    m.train()
    frames, lengths = m.encoder(waves(1.0, 0.7))
    batch = Batch(frames, lengths, ["asr", "asr"], ["hello", "bye"], None, [None, None])
    out = m(batch, cls_weight=1.0)
    assert "cls_loss" not in out
    torch.testing.assert_close(out["loss"], out["lm_loss"])
    out["loss"].backward()  # heads unused: no crash, no gradient
    assert all(p.grad is None for p in m.classifier.parameters())


def test_cls_loss_gradients_reach_adapter_and_heads(tiny_dirs):
    m = heads_model(tiny_dirs, "attention")
    m.train()
    frames, lengths = m.encoder(waves(1.0, 0.7))
    batch = Batch(
        frames, lengths, ["sa", "ner"], ["Positive", "[PLACE brussels]"], None,
        ["Positive", None], [None, ["PLACE"]],
    )  # fmt: skip
    out = m(batch, cls_weight=0.5)
    assert {"loss", "lm_loss", "cls_loss"} <= out.keys()
    torch.testing.assert_close(out["loss"], out["lm_loss"] + 0.5 * out["cls_loss"])
    out["cls_loss"].backward()
    for part in (m.classifier, m.adapter.mlp):
        for name, p in part.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in m.llm.parameters())


def test_cls_weight_without_heads_is_an_error(tiny_dirs):
    m = make_model(tiny_dirs)
    assert m.classifier is None
    frames, lengths = m.encoder(waves(0.5))
    with pytest.raises(ValueError, match="classifier_heads"):
        m(Batch(frames, lengths, ["sa"], ["Positive"], None, ["Positive"]), cls_weight=1.0)
    with pytest.raises(ValueError, match="classifier heads"):
        m.classify(frames, lengths)


def test_save_load_with_heads_gives_identical_classify(tiny_dirs, tmp_path):
    m = heads_model(tiny_dirs, "attention")
    perturb(m.classifier)
    frames, lengths = m.encoder(waves(0.8, 1.2))
    before = m.classify(frames, lengths)
    m.save(tmp_path / "m")
    saved = load_file(str(tmp_path / "m/model.safetensors"))
    assert any(k.startswith("classifier.attention.") for k in saved)
    again = SpeechLLM.load(tmp_path / "m")  # strict: every head weight found
    assert again.config.classifier_heads == m.config.classifier_heads
    assert again.classify(frames, lengths) == before


def test_model_saved_before_heads_existed_still_loads(tiny_dirs, tmp_path):
    m = make_model(tiny_dirs)
    m.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / CONFIG_FILE).read_text())
    del meta["classifier_heads"]  # a config written before the field existed
    (tmp_path / "old" / CONFIG_FILE).write_text(json.dumps(meta))
    again = SpeechLLM.load(tmp_path / "old")
    assert again.classifier is None
    assert not any(n.startswith("classifier") for n, _ in again.named_parameters())


def test_bad_head_settings_are_clear_errors():
    with pytest.raises(ValueError, match="hidden"):
        ClassifierHeads(8, ClassifierHeadsConfig(enabled=True, hidden=-1))
    with pytest.raises(ValueError, match="dropout"):
        ClassifierHeads(8, ClassifierHeadsConfig(enabled=True, dropout=1.0))


def test_evaluate_reports_the_heads_sentiment_f1(tiny_dirs):
    from speechllm.inference.evaluate import evaluate

    w, lm = tiny_dirs
    cfg = ModelConfig(
        encoder=str(w),
        llm=str(lm),
        adapter=AdapterConfig(hidden=48),
        max_new_tokens=4,
        classifier_heads=ClassifierHeadsConfig(enabled=True, hidden=8),
    )
    m = SpeechLLM.from_config(cfg).eval()
    frames, lengths = m.encoder(waves(0.5, 0.7, 0.9))
    per_clip = [f[:n] for f, n in zip(frames, lengths.tolist(), strict=True)]
    utts = [
        Utterance("a", None, 0.5, "the", [("PLACE", "x")], "Positive"),
        Utterance("b", None, 0.7, "met", [], None),
        Utterance("c", None, 0.9, "in", None, "Negative"),
    ]
    metrics, _ = evaluate(m, utts, ["sa"], frames=per_clip)
    assert {"sa_macro_f1", "cls_sa_macro_f1", "cls_tag_f1"} <= metrics.keys()
    assert 0.0 <= metrics["cls_sa_macro_f1"] <= 100.0
    plain = make_model(tiny_dirs)
    metrics, _ = evaluate(plain, utts, ["sa"], frames=per_clip)
    assert not any(k.startswith("cls_") for k in metrics)
