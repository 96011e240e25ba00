"""Length-sorted chunks (`train.chunk_tokens`): the gradient of a chunked step is the batch's."""

import dataclasses

import pytest
import torch
from accelerate import Accelerator

from speechllm.config import LoraSettings
from speechllm.data.manifest import Utterance
from speechllm.model.prompts import target_text
from speechllm.model.speechllm import Batch
from speechllm.training.batches import make_batch
from speechllm.training.chunks import (
    backward_in_chunks,
    chunk_examples,
    example_positions,
    plan_chunks,
)
from speechllm.training.sampler import Example
from speechllm.training.train import train
from test_model import make_model, waves
from test_train import read_log, tiny_run


def test_plan_without_a_budget_or_within_it_is_the_batch_as_drawn():
    assert plan_chunks([30, 5, 20], None) == [[0, 1, 2]]
    assert plan_chunks([30, 5, 20], 90) == [[0, 1, 2]]
    assert plan_chunks([30, 5, 20], 89) != [[0, 1, 2]]


@pytest.mark.parametrize("budget", [1, 40, 64, 100, 399])
def test_plan_sorts_and_keeps_each_chunk_within_budget(budget):
    lengths = [30, 5, 20, 7, 50, 6, 21, 8]
    chunks = plan_chunks(lengths, budget)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    flat = [lengths[i] for c in chunks for i in c]
    assert flat == sorted(lengths)
    for c in chunks:
        padded = len(c) * max(lengths[i] for i in c)
        assert padded <= budget or len(c) == 1
    if budget == 399:  # all but the longest row fit together
        assert len(chunks) == 2
    if budget == 1:
        assert len(chunks) == len(lengths)


def _examples() -> list[Example]:
    texts = [
        "the european commission met in brussels on monday",
        "hello",
        "the commission",
        "we met the european commission in brussels on monday and on the day after",
    ]
    out = []
    for i, text in enumerate(texts):
        utt = Utterance(f"u{i}", f"a{i}.wav", 1.0, text, [("PLACE", "brussels")], "Positive")
        task = ["asr", "sa", "ner", "all"][i]
        answer = target_text(task, utt.text, utt.entities, utt.sentiment)
        # The `all` example does not learn its sentiment word (a synthetic label).
        out.append(Example(utt, task, answer, learn_sentiment=task != "all"))
    return out


def _grads(model) -> dict[str, torch.Tensor]:
    return {
        n: p.grad.clone()
        for n, p in model.named_parameters()
        if p.requires_grad and p.grad is not None
    }


def _step(model, chunks, make, **kw):
    model.zero_grad()
    values = backward_in_chunks(
        Accelerator(cpu=True),
        model,
        chunks,
        make,
        lambda e: model.layout.scored_tokens(e.answer, e.unscored),
        **kw,
    )
    return values, _grads(model)


def test_chunked_text_step_has_the_whole_batch_gradient(tiny_dirs):
    m = make_model(tiny_dirs, lora=LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0))
    examples = _examples()

    def make(part):
        return make_batch(part, None)

    whole, g_whole = _step(m, [examples], make, lm=True)
    chunks = chunk_examples(m, examples, 1, None, None)  # every example alone
    assert len(chunks) == len(examples)
    assert [len(e.utt.text) for c in chunks for e in c] != [len(e.utt.text) for e in examples]
    parts, g_parts = _step(m, chunks, make, lm=True)
    assert g_whole and g_whole.keys() == g_parts.keys()
    for name, g in g_whole.items():
        torch.testing.assert_close(g_parts[name], g, atol=1e-6, rtol=1e-4, msg=name)
    assert parts["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert parts["lm_loss"] == pytest.approx(whole["lm_loss"], rel=1e-5)
    # A plain per-chunk mean (each chunk weighted alike) would not give the batch's loss.
    plain = []
    for c in chunks:
        with torch.no_grad():
            plain.append(float(m(make(c), lm=True)["loss"]))
    assert sum(plain) / len(plain) != pytest.approx(whole["loss"], rel=1e-3)


def test_chunked_frame_step_with_ctc_has_the_whole_batch_gradient(tiny_dirs):
    m = make_model(tiny_dirs)
    examples = _examples()
    # An example without a transcript: the CTC loss skips it, so chunks weight that loss by
    # their share of the transcribed examples, not of all examples.
    utt = dataclasses.replace(examples[1].utt, text="")
    examples[1] = Example(utt, "sa", examples[1].answer)
    frames, lengths = m.encoder(waves(0.4, 1.2, 0.7, 1.6))
    cache = {e.utt.audio: frames[i, : lengths[i]] for i, e in enumerate(examples)}

    class Cache:
        def get(self, audio):
            return cache[audio]

        def num_frames(self, audio):
            return cache[audio].shape[0]

    def make(part):
        return make_batch(part, Cache())

    whole, g_whole = _step(m, [examples], make, lm=True, ctc_weight=0.5)
    sizes = sorted(example_positions(m, e, None, cache[e.utt.audio].shape[0]) for e in examples)
    chunks = chunk_examples(m, examples, 2 * sizes[1], Cache(), None)  # the two shortest together
    assert 1 < len(chunks) < len(examples)
    parts, g_parts = _step(m, chunks, make, lm=True, ctc_weight=0.5)
    for name, g in g_whole.items():
        torch.testing.assert_close(g_parts[name], g, atol=1e-6, rtol=1e-4, msg=name)
    for key in ("loss", "lm_loss", "ctc_loss"):
        assert parts[key] == pytest.approx(whole[key], rel=1e-5), key


def test_positions_are_what_a_batch_row_holds(tiny_dirs):
    m = make_model(tiny_dirs)
    examples = _examples()
    for e in examples:
        n = example_positions(m, e, e.utt.text, None)
        batch = make_batch([e], None)
        speech, lengths = m.text_speech(batch.speech_texts)
        _, mask, _ = m._assemble(speech, lengths, batch.tasks, batch.answers, left_pad=False)
        assert n == int(mask.sum())
    frames, lengths = m.encoder(waves(0.9))
    batch = Batch(frames, lengths, [examples[0].task], [examples[0].answer])
    speech, speech_lengths = m.llm_speech(*m.speech_embeddings(frames, lengths))
    _, mask, _ = m._assemble(speech, speech_lengths, batch.tasks, batch.answers, left_pad=False)
    assert example_positions(m, examples[0], None, int(lengths[0])) == int(mask.sum())


def test_a_chunked_run_trains_as_the_whole_batch_does(tiny_dirs, tmp_path, monkeypatch):
    import speechllm.training.chunks as chunks

    sizes = []

    def spy(lengths, budget):
        planned = plan_chunks(lengths, budget)
        sizes.append(len(planned))
        return planned

    monkeypatch.setattr(chunks, "plan_chunks", spy)
    whole = tiny_run(tiny_dirs, tmp_path / "whole", steps=10, lora=True)
    chunked = tiny_run(tiny_dirs, tmp_path / "chunked", steps=10, lora=True, chunk_tokens=40)
    train(whole)
    assert sizes == []  # no budget: no plan
    train(chunked)
    assert len(sizes) == 10 and min(sizes) > 1  # every step ran in chunks
    a = [r for r in read_log(tmp_path / "whole" / "run") if "loss" in r]
    b = [r for r in read_log(tmp_path / "chunked" / "run") if "loss" in r]
    assert [r["step"] for r in a] == [r["step"] for r in b] == [5, 10]
    for x, y in zip(a, b, strict=True):
        for key in ("loss", "lm_loss", "ctc_loss"):
            assert y[key] == pytest.approx(x[key], rel=2e-3), key


def test_config_refuses_chunks_with_the_classifier_regularizer_and_a_zero_budget():
    from speechllm.config import ClassifierRegularizerConfig, TrainConfig
    from speechllm.errors import ConfigError

    TrainConfig(chunk_tokens=512).validate()
    with pytest.raises(ConfigError, match="chunk_tokens must be >= 1"):
        TrainConfig(chunk_tokens=0).validate()
    reg = ClassifierRegularizerConfig(weight=0.3)
    with pytest.raises(ConfigError, match="classifier regularizer"):
        TrainConfig(chunk_tokens=512, classifier_regularizer=reg).validate()
