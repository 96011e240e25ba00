"""Draft-checked greedy decoding (`model/draft_decoding.py`): the same answers as one token per
call, from fewer LLM calls when the drafts are right."""

from __future__ import annotations

import torch
from tests.tiny import tiny_llm

from speechllm.model.draft_decoding import generate_with_drafts, propose

VOCAB = 64
STOP = 3


def _prompts(batch: int, seed: int = 0, lengths: list[int] | None = None):  # type: ignore[no-untyped-def]
    """Left-padded random prompt embeddings (B, L, 32) of different lengths, and their mask."""
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [5 + 3 * i for i in range(batch)]
    width = max(lengths)
    x = torch.zeros(batch, width, 32)
    mask = torch.zeros(batch, width, dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, width - n :] = torch.randn(n, 32, generator=g)
        mask[i, width - n :] = 1
    return x, mask


def _greedy(llm: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor, n: int) -> list[list[int]]:
    out = llm.generate(
        inputs_embeds=x,
        attention_mask=mask,
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=[STOP],
        pad_token_id=0,
    )
    rows = []
    for row in out.tolist():
        kept = []
        for t in row:
            kept.append(t)
            if t == STOP:
                break
        rows.append(kept)
    return rows


class _Counting(torch.nn.Module):
    """Counts the LLM's forward calls."""

    def __init__(self, llm: torch.nn.Module) -> None:
        super().__init__()
        self.llm, self.calls = llm, 0

    def get_base_model(self) -> torch.nn.Module:
        return self.llm

    def forward(self, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.llm(**kwargs)


def test_propose_follows_the_longest_match_after_the_cursor() -> None:
    ref = [10, 11, 12, 10, 11, 13, 14]
    # "10 11" occurs twice: from cursor 0 the first, from cursor 4 the second.
    assert propose([7, 10, 11], ref, 0, 2) == ([12, 10], 2)
    assert propose([7, 10, 11], ref, 4, 3) == ([13, 14], 5)
    # The longest tail wins: "12 10 11" continues at 13 even with the cursor at 0.
    assert propose([12, 10, 11], ref, 0, 2) == ([13, 14], 5)
    # No match (a tag opened): the reference from the cursor on.
    assert propose([99], ref, 3, 2) == ([10, 11], 3)
    assert propose([99], [], 0, 4) == ([], 0)
    assert propose([10], ref, 0, 0) == ([], 0)


def test_answers_equal_one_token_per_call_whatever_the_drafts() -> None:
    llm = tiny_llm(VOCAB, seed=1)
    x, mask = _prompts(4)
    want = _greedy(llm, x, mask, 24)
    assert any(len(r) > 8 for r in want)  # the rows really generate
    g = torch.Generator().manual_seed(5)
    for refs in (
        [list(r) for r in want],  # every draft right
        [[], [], [], []],  # no drafts
        [torch.randint(4, VOCAB, (20,), generator=g).tolist() for _ in want],  # wrong drafts
        [[*r[:3], 7, 8, *r[3:]] for r in want],  # right with insertions: what markup looks like
    ):
        got = generate_with_drafts(llm, x, mask, refs, max_new_tokens=24, stop_ids=[STOP])
        assert got == want


def test_right_drafts_save_calls_and_limits_hold() -> None:
    llm = tiny_llm(VOCAB, seed=1)
    x, mask = _prompts(3)
    want = _greedy(llm, x, mask, 30)
    longest = max(len(r) for r in want)
    counted = _Counting(llm)
    got = generate_with_drafts(counted, x, mask, want, max_new_tokens=30, stop_ids=[STOP])
    assert got == want
    # One call for the prompt, then up to 1 + DRAFT_TOKENS tokens per call instead of one.
    assert counted.calls < longest / 2
    short = generate_with_drafts(llm, x, mask, want, max_new_tokens=5, stop_ids=[STOP])
    assert short == _greedy(llm, x, mask, 5)
    assert all(len(r) <= 5 for r in short)


def test_model_answers_with_and_without_references_match(model, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The shipped recipe decodes with the repetition guard off; with it on, generate_from
    # ignores the references (transformers' n-gram guard runs only in `generate`).
    monkeypatch.setattr(model.config, "repetition_guard", 0)
    texts = ["the commission met in brussels", "a short one", "and a third transcript here"]
    speech, lengths = model.text_speech(texts)
    tasks = ["all", "asr", "ner"]
    monkeypatch.setattr(model.config, "copy_reading", False)
    plain = model.generate_from(speech, lengths, tasks)
    assert model.generate_from(speech, lengths, tasks, None, texts) == plain
    assert model.generate_from(speech, lengths, tasks, None, texts, drafts=False) == plain


def test_prefill_in_chunks_of_unsorted_prompts_changes_nothing() -> None:
    llm = tiny_llm(VOCAB, seed=2)
    lengths = [17, 4, 11, 6, 20]  # not sorted: the answers must come back in this order
    x, mask = _prompts(5, seed=3, lengths=lengths)
    want = _greedy(llm, x, mask, 16)
    for rows in (1, 2, 8):
        got = generate_with_drafts(
            llm, x, mask, want, max_new_tokens=16, stop_ids=[STOP], prefill_rows=rows
        )
        assert got == want


def test_shared_prefix_run_once_changes_nothing() -> None:
    llm = tiny_llm(VOCAB, seed=4)
    lengths = [9, 15, 7, 12, 20]
    x, mask = _prompts(5, seed=6, lengths=lengths)
    prefix = torch.randn(5, 32, generator=torch.Generator().manual_seed(7))
    for i, n in enumerate(lengths):  # every row opens with the same 5 vectors
        x[i, x.shape[1] - n : x.shape[1] - n + 5] = prefix
    want = _greedy(llm, x, mask, 16)
    assert any(len(r) > 4 for r in want)
    for rows in (1, 2, 8):
        counted = _Counting(llm)
        got = generate_with_drafts(
            counted,
            x,
            mask,
            want,
            max_new_tokens=16,
            stop_ids=[STOP],
            prefill_rows=rows,
            shared_prefix=5,
        )
        assert got == want
    # The prefix really is run once, from the first row: claimed for rows that do not share it,
    # the other rows answer differently.
    y, _ = _prompts(5, seed=6, lengths=lengths)
    unshared = generate_with_drafts(
        llm, y, mask, want, max_new_tokens=16, stop_ids=[STOP], shared_prefix=5
    )
    assert unshared != _greedy(llm, y, mask, 16)
    # A prefix as long as the shortest prompt leaves it nothing to run: prefilled as before.
    got = generate_with_drafts(
        llm, x, mask, want, max_new_tokens=16, stop_ids=[STOP], shared_prefix=7
    )
    assert got == want
