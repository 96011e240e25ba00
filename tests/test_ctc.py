"""The CTC head over the LLM vocabulary: targets, greedy decoding, soft tokens, gradients."""

import torch

from speechllm.model.ctc import CTCHead

D = 8


def setup() -> tuple[CTCHead, torch.Tensor]:
    """Six orthogonal token embeddings and a blank orthogonal to all of them."""
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(0)))
    table = q[:6] * 3.0
    head = CTCHead(D, embedding_rms=float(table.pow(2).mean().sqrt()))
    with torch.no_grad():
        head.blank.copy_(q[6] * 3.0)
    return head, table


def frames(head: CTCHead, table: torch.Tensor, labels: list[int | None]) -> torch.Tensor:
    """(1, T, D) speech whose frame t points at token labels[t] (None = blank)."""
    return torch.stack([head.blank.detach() if v is None else table[v] for v in labels])[None]


def test_vocab_restriction_maps_targets_and_back():
    head, _ = setup()
    head.set_vocab([5, 1, 3, 3])
    assert head.vocab.tolist() == [1, 3, 5]
    assert head.targets([5, 2, 1, 5]) == [2, 0, 2]  # token 2 is outside the vocabulary
    assert head.token_ids([2, 0]) == [5, 1]
    head.set_vocab([])
    assert head.targets([4, 2]) == [4, 2]


def test_greedy_merges_repeats_and_drops_blanks():
    head, table = setup()
    x = frames(head, table, [2, 2, None, 2, 4, 4, None, 1, None])
    assert head.greedy(x, torch.tensor([9]), table) == [[2, 2, 4, 1]]
    assert head.greedy(x, torch.tensor([5]), table) == [[2, 2, 4]]  # frames past length ignored
    head.set_vocab([1, 2, 4])
    assert head.greedy(x, torch.tensor([9]), table) == [[2, 2, 4, 1]]


def test_soft_tokens_are_one_embedding_per_segment():
    head, table = setup()
    head.set_vocab([1, 2, 4])
    a = frames(head, table, [None, 2, 2, None, 2, 4, 4, None])
    b = frames(head, table, [None, None, None, None, None, None, None, None])
    out, lengths = head.soft_tokens(torch.cat([a, b]), torch.tensor([8, 5]), table)
    assert lengths.tolist() == [3, 1]  # an all-blank clip keeps one position
    assert out.shape == (2, 3, D)
    for pos, token in enumerate([2, 2, 4]):
        cos = torch.cosine_similarity(out[0, pos], table[token], dim=0)
        assert cos > 0.99, (pos, token, cos)
    assert out[1, 1:].abs().sum() == 0  # zero padding after the short item


def test_soft_tokens_and_loss_pass_gradients_to_the_speech():
    head, table = setup()
    x = frames(head, table, [1, None, 3, 3, None]).clone().requires_grad_(True)
    out, _ = head.soft_tokens(x, torch.tensor([5]), table)
    loss = out.sum() + head.loss(x, torch.tensor([5]), [[1, 3]], table)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert head.blank.grad is not None and head.log_scale.grad is not None


def test_ctc_loss_prefers_the_right_transcript():
    head, table = setup()
    x = frames(head, table, [1, None, 3, 3, None, 5])
    n = torch.tensor([6])
    right = head.loss(x, n, [[1, 3, 5]], table)
    wrong = head.loss(x, n, [[5, 3, 1]], table)
    assert right < 0.1 < wrong


def test_the_word_list_widens_the_training_vocabulary():
    from wordfreq import top_n_list

    from speechllm.model.ctc import ctc_vocabulary, word_list_ids
    from tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    transcripts = [tok(" the council met", add_special_tokens=False).input_ids]
    train = ctc_vocabulary("train", tok, transcripts, known=[7])
    assert train == sorted({*transcripts[0], 7})
    assert ctc_vocabulary("all", tok, transcripts) is None
    words = word_list_ids(tok, 200)
    for w in top_n_list("en", 200)[:20]:  # each word with and without a leading space
        assert set(tok(w, add_special_tokens=False).input_ids) <= words
        assert set(tok(" " + w, add_special_tokens=False).input_ids) <= words
    wide = ctc_vocabulary("train+words:200", tok, transcripts, known=[7])
    assert wide == sorted(set(train) | words) and len(wide) > len(train)
    assert len(word_list_ids(tok, 1000)) >= len(words)


def test_ctc_vocab_settings_are_validated():
    import pytest

    from speechllm.config.model import ModelConfig, ctc_word_count
    from speechllm.errors import ConfigError

    assert [ctc_word_count(v) for v in ("train", "all", "train+words:20000")] == [0, 0, 20000]
    for ok in ("train", "all", "train+words:1", "train+words:20000"):
        ModelConfig(ctc_vocab=ok).validate()
    for bad in ("words", "train+words:0", "train+words:", "train+words:-5", "Train", "all+words:9"):
        with pytest.raises(ConfigError, match="ctc_vocab"):
            ModelConfig(ctc_vocab=bad).validate()
