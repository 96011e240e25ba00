"""CTC over the LLM's own vocabulary: the alignment signal, and the `ctc` speech input.

The adapter's output vectors y_t (B, T', D) live in the LLM's token-embedding space. Scoring them
against the LLM's frozen input-embedding table E gives CTC logits without any new output layer:

    logit(t, v) = s * <y_t, E_v> / (D * rms(E)^2)        for v in the CTC vocabulary
    logit(t, blank) = the same with a learned blank vector

`s` is a learned temperature (init 16). It is separate from the adapter's output scale because the
LLM needs speech vectors at the embeddings' norm, whereas a confident CTC posterior needs logits
far apart; tying the two kept the CTC loss on a plateau in our CPU runs (docs/alignment.md).

The CTC vocabulary can be restricted to the tokens of the training transcripts: the projection
onto SmolLM2's 49,152 rows then shrinks to a few thousand and a CTC step is several times cheaper;
tokens that never occur in training could not be learned anyway. Because the table is the frozen
embedding matrix, widening the vocabulary later (fine-tuning on new text) adds no parameters.
`train+words:N` (`ctc_vocabulary`) adds the tokens of the N most frequent English words, so a
word the training text lacks can still be spelt from the pieces its neighbours taught; the
head's cost grows with the vocabulary (docs/recipe.md: SmolLM2, N = 20000).

`soft_tokens` turns CTC posteriors into LLM input (the `ctc` speech input, as LegoSLM does with
an ASR model's CTC posteriors): frames whose best label is blank are dropped, runs of the same
label are merged, and each remaining segment becomes the posterior-weighted mix of token
embeddings. The LLM then reads speech as near-text, about one position per spoken token.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from speechllm.config.model import ctc_word_count
from speechllm.errors import ModelSourceError

WORDFREQ_HINT = "pip install wordfreq (or pip install 'speechllm[vocab]')"


def word_list_ids(tokenizer: Any, words: int) -> set[int]:
    """Every LLM token of wordfreq's `words` most frequent English words, each tokenised with
    and without a leading space (word-initial and word-internal pieces)."""
    try:
        from wordfreq import top_n_list
    except ImportError as exc:
        raise ModelSourceError(
            f"ctc_vocab 'train+words:N' needs wordfreq: {WORDFREQ_HINT}"
        ) from exc
    listed = top_n_list("en", words)
    rows = tokenizer(listed + [" " + w for w in listed], add_special_tokens=False).input_ids
    return {t for row in rows for t in row}


def ctc_vocabulary(
    ctc_vocab: str, tokenizer: Any, transcripts: Iterable[list[int]], known: Iterable[int] = ()
) -> list[int] | None:
    """The token ids a `ctc_vocab` setting scores: None for `all` (the whole table), else the
    tokens of the training transcripts (their ids), those already `known` (a model being
    fine-tuned: widened, never narrowed) and, for `train+words:N`, `word_list_ids`."""
    if ctc_vocab == "all":
        return None
    ids = {t for row in transcripts for t in row}.union(known)
    words = ctc_word_count(ctc_vocab)
    if words:
        ids |= word_list_ids(tokenizer, words)
    return sorted(ids)


class CTCHead(nn.Module):
    """Learned blank vector and temperature, plus the (optional) vocabulary subset."""

    def __init__(self, dim: int, embedding_rms: float, init_scale: float = 16.0) -> None:
        super().__init__()
        self.blank = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.norm = 1.0 / (dim * embedding_rms**2)
        # Token ids scored by CTC, ascending; empty = the whole embedding table.
        self.register_buffer("vocab", torch.zeros(0, dtype=torch.long))

    def set_vocab(self, token_ids: list[int] | torch.Tensor) -> None:
        """Restrict CTC to these token ids (deduplicated, sorted); an empty list = all tokens."""
        ids = torch.as_tensor(sorted({int(t) for t in token_ids}), dtype=torch.long)
        self.vocab = ids.to(self.blank.device)

    def table(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The (V', D) rows of the LLM embedding table (V, D) that CTC scores."""
        return embeddings if self.vocab.numel() == 0 else embeddings[self.vocab]

    def logits(self, speech: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """speech (B, T', D), embeddings (V, D) -> logits (B, T', V'+1), blank last."""
        table = torch.cat([self.table(embeddings), self.blank[None]], dim=0).float()
        return (speech.float() @ table.T) * (self.log_scale.exp() * self.norm)

    def targets(self, token_ids: list[int]) -> list[int]:
        """LLM token ids -> CTC label indices; ids outside the vocabulary are dropped."""
        if self.vocab.numel() == 0:
            return list(token_ids)
        index = torch.searchsorted(self.vocab, torch.as_tensor(token_ids, dtype=torch.long))
        index = index.clamp(max=self.vocab.numel() - 1)
        found = self.vocab[index] == torch.as_tensor(token_ids, dtype=torch.long)
        return index[found].tolist()

    def loss(
        self,
        speech: torch.Tensor,
        lengths: torch.Tensor,
        token_ids: list[list[int]],
        embeddings: torch.Tensor,
    ) -> torch.Tensor:
        """Mean CTC loss per target token over a batch; speech (B, T', D), lengths (B,)."""
        labels = [self.targets(ids) for ids in token_ids]
        logp = self.logits(speech, embeddings).log_softmax(-1).transpose(0, 1)  # T', B, V'+1
        return nn.functional.ctc_loss(
            logp,
            torch.tensor([t for ids in labels for t in ids], dtype=torch.long),
            lengths.cpu(),
            torch.tensor([len(ids) for ids in labels]),
            blank=logp.shape[-1] - 1,
            reduction="mean",
            zero_infinity=True,
        )

    def token_ids(self, labels: list[int]) -> list[int]:
        """CTC label indices -> LLM token ids."""
        if self.vocab.numel() == 0:
            return list(labels)
        return self.vocab[torch.as_tensor(labels, dtype=torch.long)].tolist()

    def greedy(
        self, speech: torch.Tensor, lengths: torch.Tensor, embeddings: torch.Tensor
    ) -> list[list[int]]:
        """Best-path decoding (argmax, merge repeats, drop blanks) -> LLM token ids per item."""
        best = self.logits(speech, embeddings).argmax(-1)
        blank = best.new_tensor(self.table(embeddings).shape[0])
        out = []
        for row, n in zip(best, lengths.tolist(), strict=True):
            row = row[:n]
            start = torch.ones_like(row, dtype=torch.bool)
            start[1:] = row[1:] != row[:-1]
            out.append(self.token_ids(row[start & (row != blank)].tolist()))
        return out

    def soft_tokens(
        self, speech: torch.Tensor, lengths: torch.Tensor, embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech vectors (B, T', D) -> CTC-compressed soft tokens (B, N, D), lengths (B,).

        N is the longest item's segment count (zero-padded). A clip where every frame is blank
        keeps its single most token-like frame, so the LLM always gets some speech.
        """
        table = self.table(embeddings)
        probs = self.logits(speech, embeddings).softmax(-1)  # B, T', V'+1
        blank = table.shape[0]
        rows = []
        for i, n in enumerate(lengths.tolist()):
            p = probs[i, :n]
            best = p.argmax(-1)
            keep = best != blank
            if not bool(keep.any()):
                keep = torch.zeros_like(keep)
                keep[p[:, :blank].max(-1).values.argmax()] = True
            start = keep.clone()
            start[1:] &= best[1:] != best[:-1]
            segment = start.cumsum(0) - 1  # segment index of each kept frame
            tokens = p[keep, :blank]
            tokens = tokens / tokens.sum(-1, keepdim=True)  # renormalise without blank
            count = int(start.sum())
            # (segments, kept frames) averaging matrix: each row is a segment's frame mean.
            member = segment[keep][None] == torch.arange(count, device=p.device)[:, None]
            member = member.to(tokens.dtype)
            mixed = (member / member.sum(-1, keepdim=True)) @ tokens
            rows.append(mixed.to(table.dtype) @ table)
        out_lengths = torch.tensor([r.shape[0] for r in rows], device=speech.device)
        out = speech.new_zeros(len(rows), int(out_lengths.max()), table.shape[1])
        for i, r in enumerate(rows):
            out[i, : r.shape[0]] = r.to(out.dtype)
        return out, out_lengths
