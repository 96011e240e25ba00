"""Transcripts standing in for speech: the `whisper` route's readings and `kind: text` stages.

A transcript enters the LLM as its own token embeddings. In training (`TextNoiseConfig`) its
tokens are substituted, deleted and inserted, and embeddings smeared towards near tokens, so what
the LLM learns from text transfers to the errors of the speech front end. Near means cosine-near
in the LLM's (frozen) input-embedding table.
"""

from __future__ import annotations

import torch
from torch import nn

from speechllm.config import TextNoiseConfig


class NearTokens:
    """The nearest tokens of each token in a frozen embedding table (cosine), memoised: each
    token's neighbours are found once, all new tokens of a call in one matmul."""

    def __init__(self) -> None:
        self._found: dict[int, torch.Tensor] = {}
        self._unit: torch.Tensor | None = None

    def copy(self) -> NearTokens:
        """A copy with its own memo (the found rows themselves are shared: never changed)."""
        other = NearTokens()
        other._found, other._unit = dict(self._found), self._unit
        return other

    @torch.no_grad()
    def find(self, tokens: list[int], k: int, table: torch.Tensor) -> None:
        """Memoise the `k` nearest tokens of each of `tokens`; `table` (V, D)."""
        todo = sorted({t for t in tokens if len(self._found.get(t, ())) < k})
        if not todo:
            return
        if self._unit is None:  # the table is frozen: normalise it once
            self._unit = nn.functional.normalize(table.detach().float(), dim=-1)
        sims = self._unit[todo] @ self._unit.T  # (len(todo), V)
        sims[torch.arange(len(todo)), torch.tensor(todo)] = -2.0
        for t, row in zip(todo, sims.topk(k, dim=-1).indices.cpu(), strict=True):
            self._found[t] = row

    @torch.no_grad()
    def get(self, token: int, k: int, table: torch.Tensor) -> torch.Tensor:
        """The `k` tokens (k,) nearest to `token` in `table` (V, D), itself excluded."""
        self.find([token], k, table)
        return self._found[token][:k]


def noisy_embeddings(
    ids: list[int], table: torch.Tensor, near: NearTokens, noise: TextNoiseConfig
) -> torch.Tensor:
    """The embeddings (N', D) of token `ids` after `noise`, drawn from torch's global RNG
    (checkpointed, so a resumed run draws the same); `table` (V, D) is the embedding table."""
    table = table.detach()
    near.find(ids, noise.neighbours, table)
    out: list[torch.Tensor] = []
    for t in ids:
        u = torch.rand(3).tolist()
        if u[0] < noise.delete:
            continue
        close = near.get(t, noise.neighbours, table)
        if u[1] < noise.substitute:
            t = int(close[torch.randint(len(close), (1,))])
            close = near.get(t, noise.neighbours, table)
        vec = table[t]
        if noise.smear > 0:
            vec = (1 - noise.smear) * vec + noise.smear * table[close[:3]].mean(0)
        out.append(vec)
        if u[2] < noise.insert:
            out.append(table[int(close[torch.randint(len(close), (1,))])])
    return torch.stack(out) if out else table.new_zeros(0, table.shape[1])


def text_embeddings(
    ids: list[list[int]],
    table: torch.Tensor,
    near: NearTokens,
    noise: TextNoiseConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of B transcripts -> their embeddings (B, N, D), zero-padded, and lengths (B,);
    corrupted per `noise` when given (`noisy_embeddings`). `table` (V, D)."""
    rows = [noisy_embeddings(i, table, near, noise) if noise else table[i] for i in ids]
    lengths = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
    out = table.new_zeros(len(rows), max(1, int(lengths.max()) if rows else 0), table.shape[1])
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out.to(table.device), lengths.to(table.device)
