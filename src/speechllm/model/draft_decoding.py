"""Greedy decoding that checks several tokens per LLM call, drafted from the transcript the LLM
reads (prompt-lookup decoding, Saxena 2023; the verification of speculative decoding, Leviathan
et al. 2023, with a copy of the input as the draft model).

Why: on the `whisper` route the LLM reads Whisper's transcript as its own token ids, and most of
an answer copies it (`Neutral | the [ORG european commission] met in ...`). Generating one token
per call pays the whole weight read for a single position: SmolLM2-135M on one thread of this CPU
takes ~120 ms for one new token of one row, ~350 ms for one token in each of 16 rows, ~710 ms
for 5 tokens in each of 16 rows (fp32, a 100-token cache). Offering each row the next
transcript tokens after its last output and keeping those the model itself predicts turns many
sequential calls into a few wider ones.

Exactness: every kept token is the argmax of the LLM's own logits given the tokens before it, as
in greedy decoding; a draft only decides how many positions one call checks. Rejected positions
stay in the key/value cache but are masked out (a "hole" in the attention mask, with positions
counted over kept tokens only), so no cache surgery is needed per row. A call over several
positions runs matrix shapes that differ from a one-position call, so the logits can differ in
their last bits and an exact near-tie can flip: the answers are greedy decoding's up to such
ties (`benchmarks/inference.py` counts identical answers).

Drafting (`propose`): the longest n-gram (n <= 3) of the row's last output tokens found in its
transcript proposes the transcript tokens that follow it, preferring a match at or after where
the previous draft ended; with no match (the sentiment word, a tag name just opened) the
transcript from that cursor on is proposed, which is what follows `|` and `[TAG`.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from speechllm.model.answer_grammar import CANDIDATES, GrammarChooser, ReadingGrammar

try:  # transformers >= 4.56: caches hold one DynamicLayer (keys, values) per layer
    from transformers.cache_utils import DynamicLayer  # noqa: F401

    _LAYERED_CACHE = True
except ImportError:  # pragma: no cover - older transformers
    _LAYERED_CACHE = False

DRAFT_TOKENS = 6
"""Transcript tokens offered per row and call (chosen on training speech, docs in
benchmarks/README.md: fewer wastes calls, more wastes compute on rejected positions)."""

PREFILL_ROWS = 8
"""Prompts per prefill call (`_prefill`): fewer pad less, more share the weight reads."""

MAX_NGRAM = 3
"""Longest run of last output tokens looked up in the transcript."""


def propose(
    output: Sequence[int], reference: Sequence[int], cursor: int, k: int
) -> tuple[list[int], int]:
    """Up to `k` draft tokens continuing `output` from `reference`, and the reference index
    just past the n-gram they continue (the next cursor candidate).

    The longest suffix of `output` (up to MAX_NGRAM tokens) that occurs in `reference` picks
    the continuation, preferring the first occurrence at or after `cursor`, else the last one
    before it; with none, `reference[cursor:cursor + k]`.
    """
    if k <= 0 or not reference:
        return [], cursor
    for n in range(min(MAX_NGRAM, len(output)), 0, -1):
        tail = list(output[-n:])
        starts = [i for i in range(len(reference) - n + 1) if list(reference[i : i + n]) == tail]
        if not starts:
            continue
        after = [s for s in starts if s + n >= cursor]
        start = (after[0] if after else starts[-1]) + n
        return list(reference[start : start + k]), start
    return list(reference[cursor : cursor + k]), cursor


def _choose(
    logits: torch.Tensor,
    positions: int,
    output: list[int],
    rules: Sequence[ReadingGrammar] | None,
    chooser: GrammarChooser | None,
    row: int,
    draft: Sequence[int] = (),
) -> list[int]:
    """The greedy token after each of the first `positions` positions of one row's logits
    (W, V), position j following `output` + `draft[:j]`: the argmax, or under `rules[row]` the
    best token it allows. Stops at the first position that leaves the draft (later ones are not
    kept); with `positions` 0, the one token after `output` (logits (1, V))."""
    positions = max(positions, 1)
    if rules is None or chooser is None:
        return logits[:positions].argmax(-1).tolist()
    top = logits[:positions].topk(CANDIDATES, dim=-1).indices.tolist()
    out: list[int] = []
    for j in range(positions):
        out.append(chooser.pick(rules[row], [*output, *draft[:j]], top[j]))
        if j >= len(draft) or out[-1] != draft[j]:
            break
    return out


def _cache_argument(llm: nn.Module) -> str:
    """The forward argument that takes the key/value cache: `cache` in transformers 5, where
    `past_key_values` is deprecated, `past_key_values` before."""
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@torch.no_grad()
def generate_with_drafts(
    llm: nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    references: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    draft_tokens: int = DRAFT_TOKENS,
    prefill_rows: int = PREFILL_ROWS,
    shared_prefix: int = 0,
    grammars: Sequence[ReadingGrammar] | None = None,
    chooser: GrammarChooser | None = None,
) -> list[list[int]]:
    """Greedy answers of a causal LM for left-padded prompts (B, L, D) with mask (B, L), each
    row's draft drawn from `references[b]` (token ids it should mostly copy).

    `shared_prefix`: how many of each row's first (unpadded) input vectors every row shares (the
    chat template's opening turns); they are run once for the whole batch (`_prefill`).
    `grammars` (one per row, with the `chooser` that applies them): each token is the
    highest-scoring one the row's grammar allows (`answer_grammar.py`) instead of the argmax.
    `draft_tokens=0` decodes one token per call.

    Returns per row the generated ids, ending with its stop id when one was produced (at most
    `max_new_tokens` ids). The LLM must accept `inputs_embeds`, `attention_mask` (2D, zeros for
    padding anywhere), `position_ids`, `cache` and `logits_to_keep` (transformers' causal LMs).
    """
    if len(references) != inputs_embeds.shape[0]:
        raise ValueError(f"{inputs_embeds.shape[0]} prompts but {len(references)} references")
    if grammars is not None and (chooser is None or len(grammars) != len(references)):
        raise ValueError("grammars need a chooser and one grammar per prompt")
    stops = set(int(s) for s in stop_ids)
    device = inputs_embeds.device
    mask = attention_mask.to(torch.long)
    # Rows shortest first, so each prefill chunk pads little; answers go back in input order.
    order = torch.argsort(mask.sum(-1), stable=True).tolist()
    mask = mask[order]
    references = [references[i] for i in order]
    rules = [grammars[i] for i in order] if grammars is not None else None
    cache_arg = _cache_argument(llm)
    cache, mask, last = _prefill(
        llm, inputs_embeds[order], mask, cache_arg, prefill_rows, shared_prefix
    )
    first = [_choose(last[b : b + 1], 0, [], rules, chooser, b)[0] for b in range(len(order))]
    outputs: list[list[int]] = [[t] for t in first]
    next_pos = mask.sum(-1)  # (B,) position of each row's next token
    cursors = [0] * len(first)
    active = [b for b, t in enumerate(first) if t not in stops and max_new_tokens > 1]
    if len(active) < len(first):
        keep = torch.tensor(active, dtype=torch.long, device=device)
        cache.batch_select_indices(keep)
        mask, next_pos = mask[keep], next_pos[keep]
    while active:
        drafts = []
        for b in active:
            room = max_new_tokens - len(outputs[b]) - 1
            draft, cursor = propose(outputs[b], references[b], cursors[b], min(draft_tokens, room))
            drafts.append(draft)
            cursors[b] = cursor
        width = 1 + max(len(d) for d in drafts)
        ids = torch.zeros(len(active), width, dtype=torch.long, device=device)
        new_mask = torch.zeros(len(active), width, dtype=torch.long, device=device)
        for r, (b, draft) in enumerate(zip(active, drafts, strict=True)):
            row = [outputs[b][-1], *draft]
            ids[r, : len(row)] = torch.tensor(row, device=device)
            new_mask[r, : len(row)] = 1
        mask = torch.cat([mask, new_mask], dim=1)
        step_pos = next_pos[:, None] + torch.arange(width, device=device)[None, :]
        out = llm(
            input_ids=ids,
            attention_mask=mask,
            position_ids=step_pos,
            use_cache=True,
            logits_to_keep=0,
            **{cache_arg: cache},
        )
        cache = getattr(out, cache_arg)
        still: list[int] = []
        for r, (b, draft) in enumerate(zip(active, drafts, strict=True)):
            # The token after each position (width,), under the row's grammar where given.
            choices = _choose(out.logits[r], len(draft) + 1, outputs[b], rules, chooser, b, draft)
            kept = 0
            while kept < len(draft) and draft[kept] == choices[kept]:
                kept += 1
            new = [*draft[:kept], choices[kept]]
            for j, tok in enumerate(new):
                if tok in stops:
                    new = new[: j + 1]
                    break
            outputs[b].extend(new)
            cursors[b] += kept
            # Fed this call: the last output token and the drafts; the rejected drafts are holes.
            mask[r, mask.shape[1] - width + 1 + kept :] = 0
            next_pos[r] += 1 + kept
            if new[-1] not in stops and len(outputs[b]) < max_new_tokens:
                still.append(r)
        if len(still) < len(active):
            keep = torch.tensor(still, dtype=torch.long, device=device)
            cache.batch_select_indices(keep)
            mask, next_pos = mask[keep], next_pos[keep]
            active = [active[r] for r in still]
        # Columns that are holes in every remaining row only cost attention: drop them.
        if active:
            valid = mask.any(0).nonzero()
            drop = mask.shape[1] - 1 - int(valid[-1]) if len(valid) else 0
            if drop > 0:
                cache.crop(-drop)
                mask = mask[:, : mask.shape[1] - drop]
    answers: list[list[int]] = [[] for _ in order]
    for row, i in enumerate(order):
        answers[i] = outputs[row]
    return answers


def _prefill(
    llm: nn.Module, x: torch.Tensor, mask: torch.Tensor, cache_arg: str, rows: int, prefix: int = 0
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The prompts (B, L, D) with mask (B, L) run through the LLM, `rows` rows per call, each
    call without the columns that are padding in all of its rows: (the key/value cache of all
    B rows, its mask (B, L') and the logits (B, V) of each row's first answer token).

    Why in chunks: a batch's prompts are padded to its longest, and the padding is computed like
    any token (24 benchmark clips: 26.3 s of decoding in one call, 23.8 s in chunks). A chunk's
    cache is then left-padded with zeros to the batch's width, which the mask hides, so the rows
    decode together as if prefilled in one call.

    Why the shared prefix once: every prompt opens with the same chat-template tokens (system
    turn, user header: 14 of SmolLM2's 28 `all` prompt tokens), whose keys and values do not
    depend on what follows. With `prefix` > 0 they are computed for one row and copied into each
    chunk's cache; the cache's columns are then [prefix][padding][rest of the prompt], the mask
    hiding the padding in the middle. Caches without per-layer tensors (transformers before the
    `DynamicLayer` caches) are prefilled in one call, prefix included.
    """
    if not _LAYERED_CACHE:
        prefix = 0
    lengths = mask.sum(-1)
    if prefix > 0 and int(lengths.min()) <= prefix:
        prefix = 0  # a prompt of no more than the prefix: nothing left to run after it
    shared = None
    if prefix > 0:
        first_col = x.shape[1] - int(lengths[0])
        out = llm(
            inputs_embeds=x[:1, first_col : first_col + prefix],
            attention_mask=mask.new_ones(1, prefix),
            position_ids=torch.arange(prefix, device=x.device)[None],
            use_cache=True,
            logits_to_keep=1,
        )
        shared = getattr(out, cache_arg)
        x, mask = _drop_prefix(x, mask, lengths, prefix)
    positions = (mask.cumsum(-1) - 1).clamp(min=0) + prefix
    chunks = [(s, min(s + rows, x.shape[0])) for s in range(0, x.shape[0], max(rows, 1))]
    if len(chunks) > 1 and not _LAYERED_CACHE:
        chunks = [(0, x.shape[0])]
    caches, last = [], []
    for a, b in chunks:
        used = mask[a:b].any(0).nonzero()
        start = int(used[0]) if len(used) else 0
        past: dict[str, Any] = {}
        if shared is not None:
            chunk_cache = copy.deepcopy(shared)
            chunk_cache.batch_repeat_interleave(b - a)
            past = {cache_arg: chunk_cache}
        out = llm(
            inputs_embeds=x[a:b, start:],
            attention_mask=torch.cat([mask.new_ones(b - a, prefix), mask[a:b, start:]], dim=1),
            position_ids=positions[a:b, start:],
            use_cache=True,
            logits_to_keep=1,
            **past,
        )
        caches.append((getattr(out, cache_arg), start))
        last.append(out.logits[:, -1])
    cache = caches[0][0]
    if len(caches) > 1:
        for i, layer in enumerate(cache.layers):
            for name in ("keys", "values"):
                parts = [  # (b, heads, prefix + T, head_dim): padding goes after the prefix
                    _pad_after(getattr(c.layers[i], name), prefix, start) for c, start in caches
                ]
                setattr(layer, name, torch.cat(parts))
    return cache, torch.cat([mask.new_ones(mask.shape[0], prefix), mask], dim=1), torch.cat(last)


def _drop_prefix(
    x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor, prefix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded rows (B, L, D), mask (B, L) without each row's first `prefix` vectors:
    (B, L - prefix, D) and (B, L - prefix), still left-padded."""
    width = x.shape[1] - prefix
    out = x.new_zeros(x.shape[0], width, x.shape[2])
    out_mask = mask.new_zeros(x.shape[0], width)
    for b, n in enumerate(lengths.tolist()):
        out[b, width - (n - prefix) :] = x[b, x.shape[1] - (n - prefix) :]
        out_mask[b, width - (n - prefix) :] = 1
    return out, out_mask


def _pad_after(t: torch.Tensor, prefix: int, pad: int) -> torch.Tensor:
    """Cache tensor (b, heads, prefix + T, head_dim) with `pad` zero columns after the prefix."""
    if pad == 0:
        return t
    zeros = t.new_zeros(*t.shape[:2], pad, t.shape[3])
    return torch.cat([t[:, :, :prefix], zeros, t[:, :, prefix:]], dim=2)
