"""Classifier regularizer: utterance-level sentiment and entity-tag heads on the adapter output.

The paper ("SpeechLLM ... Low Resource Settings", arXiv 2509.04473) names a classifier
regularizer without defining it. Ours:

- Input: the adapter's vectors y (B, T', D), the speech as the adapter writes it, before any CTC
  compression (`speech_input: ctc` changes what the LLM reads, not what the heads see). Positions
  past each clip's length are masked out, so padding never changes a clip's result.
- Pooling (B, T', D) -> (B, D): the masked mean, or attention pooling (a learned score per
  position, softmax over the clip's positions; zero-initialised, so it starts as the mean).
  A LayerNorm then makes the heads independent of the adapter's output scale (which matches the
  LLM's embedding RMS and is learned).
- Heads: two small MLPs on the pooled vector:
  sentiment, 3-way softmax over `labels.SENTIMENTS`, trained with cross-entropy;
  entity tags, 7 independent sigmoids over `labels.SLUE_TAGS` (does the clip contain at least one
  entity of this tag?), trained with binary cross-entropy.
- Loss: each head's loss is the mean over the examples that carry its label (sentiment not None;
  entities not None, where [] means "labelled: no entities", i.e. all 7 targets 0). `cls_loss` is
  the mean of the head losses that have any labelled example in the batch (None when neither
  has: the batch then adds nothing). Training adds `weight * cls_loss` to the LM (+ CTC) loss
  on full steps (`train.classifier_regularizer.weight`; CTC-only warm-up steps stay CTC only).
  Labels come from the utterance whatever the example's task, so an `asr` example of a clip
  with a sentiment label trains the sentiment head too.

The heads are part of the model only when `model.classifier_heads.enabled` (their shape lives
there, so `SpeechLLM.load` can rebuild them); models without them keep their parameter names and
load strictly as before.

Why: with little labelled speech, the LM loss reaches the adapter through a frozen (or barely
adapted) LLM; utterance-level labels give the adapter a short, direct gradient path towards
encoding what the SLU tasks ask about (affect, and the presence of names, places, numbers, dates).
At inference the heads are also a cheap classifier in their own right (`SpeechLLM.classify`),
measured against the LLM's own sentiment answer by `inference.evaluate`.
"""

from __future__ import annotations

import torch
from torch import nn

from speechllm.config import ClassifierHeadsConfig
from speechllm.labels import SENTIMENTS, SLUE_TAGS


def length_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """lengths (B,) -> bool mask (B, T'), True at each clip's real positions."""
    return torch.arange(steps, device=lengths.device)[None] < lengths[:, None]


class _AttentionPool(nn.Module):
    """(B, T', D) -> (B, D): softmax over a clip's positions of a learned linear score."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        # No bias: softmax ignores a shift shared by all positions.
        self.score = nn.Linear(dim, 1, bias=False)
        # Equal scores at the start: attention pooling begins as the mean and learns from there.
        nn.init.zeros_(self.score.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1).to(x.dtype)  # B, T'
        return (weights[..., None] * x).sum(1)


def _head(dim: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    if hidden == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, out))
    return nn.Sequential(
        nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out)
    )


class ClassifierHeads(nn.Module):
    """Pooling, then a sentiment head (3 logits) and an entity-tag head (7 logits)."""

    def __init__(self, dim: int, config: ClassifierHeadsConfig) -> None:
        super().__init__()
        if config.pooling not in ("mean", "attention"):
            raise ValueError(
                f"classifier_heads.pooling {config.pooling!r} is not one of ['mean', 'attention']"
            )
        if config.hidden < 0:
            raise ValueError(f"classifier_heads.hidden must be >= 0, got {config.hidden}")
        if not 0.0 <= config.dropout < 1.0:
            raise ValueError(f"classifier_heads.dropout must be in [0, 1), got {config.dropout}")
        self.config = config
        self.attention = _AttentionPool(dim) if config.pooling == "attention" else None
        self.norm = nn.LayerNorm(dim)
        self.sentiment = _head(dim, config.hidden, len(SENTIMENTS), config.dropout)
        self.tags = _head(dim, config.hidden, len(SLUE_TAGS), config.dropout)

    def pool(self, speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Adapter vectors (B, T', D), lengths (B,) -> one vector per clip (B, D), masked."""
        mask = length_mask(lengths, speech.shape[1])
        if self.attention is not None:
            return self.attention(speech, mask)
        # Multiply by the mask rather than trust the padding: the adapter's MLP turns zero-padded
        # frames into non-zero vectors (its biases).
        summed = (speech * mask[..., None].to(speech.dtype)).sum(1)
        return summed / lengths.clamp(min=1)[:, None].to(summed.dtype)

    def forward(
        self, speech: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T', D), (B,) -> sentiment logits (B, 3), tag logits (B, 7), in float32."""
        pooled = self.norm(self.pool(speech, lengths))
        return self.sentiment(pooled).float(), self.tags(pooled).float()

    def loss(
        self,
        speech: torch.Tensor,
        lengths: torch.Tensor,
        sentiments: list[str | None] | None,
        entity_tags: list[list[str] | None] | None,
    ) -> torch.Tensor | None:
        """`cls_loss` over a batch (see the module docstring); None where no example has a label.

        sentiments: one class name per example or None; entity_tags: per example the SLUE tags
        of its entities ([] = labelled, none present) or None (not labelled).
        """
        b = speech.shape[0]
        sentiments = sentiments if sentiments is not None else [None] * b
        entity_tags = entity_tags if entity_tags is not None else [None] * b
        if len(sentiments) != b or len(entity_tags) != b:
            raise ValueError(
                f"{b} examples but {len(sentiments)} sentiments and {len(entity_tags)} tag lists"
            )
        with_sa = [i for i, s in enumerate(sentiments) if s is not None]
        with_tags = [i for i, t in enumerate(entity_tags) if t is not None]
        if not with_sa and not with_tags:
            return None
        # Only the labelled rows go through the heads.
        rows = sorted(set(with_sa) | set(with_tags))
        sa_logits, tag_logits = self(speech[rows], lengths[rows])
        at = {i: j for j, i in enumerate(rows)}
        losses = []
        if with_sa:
            target = torch.tensor(
                [sentiment_index(sentiments[i]) for i in with_sa], device=sa_logits.device
            )
            losses.append(nn.functional.cross_entropy(sa_logits[[at[i] for i in with_sa]], target))
        if with_tags:
            target = torch.stack([tag_targets(entity_tags[i]) for i in with_tags])
            losses.append(
                nn.functional.binary_cross_entropy_with_logits(
                    tag_logits[[at[i] for i in with_tags]], target.to(tag_logits.device)
                )
            )
        return torch.stack(losses).mean()

    @torch.no_grad()
    def probabilities(
        self, speech: torch.Tensor, lengths: torch.Tensor
    ) -> list[dict[str, dict[str, float]]]:
        """Per clip {'sentiment': {class: p} (sums to 1), 'entity_tags': {tag: p} (independent)}."""
        sa_logits, tag_logits = self(speech, lengths)
        sa, tags = sa_logits.softmax(-1).tolist(), tag_logits.sigmoid().tolist()
        return [
            {
                "sentiment": dict(zip(SENTIMENTS, s, strict=True)),
                "entity_tags": dict(zip(SLUE_TAGS, t, strict=True)),
            }
            for s, t in zip(sa, tags, strict=True)
        ]


def sentiment_index(sentiment: str) -> int:
    """Class index in `labels.SENTIMENTS`; ValueError for anything else."""
    if sentiment not in SENTIMENTS:
        raise ValueError(f"sentiment {sentiment!r} is not one of {list(SENTIMENTS)}")
    return SENTIMENTS.index(sentiment)


def tag_targets(tags: list[str]) -> torch.Tensor:
    """SLUE tags present in a clip -> multi-hot float targets (7,); ValueError for unknown tags."""
    unknown = sorted(set(tags) - set(SLUE_TAGS))
    if unknown:
        raise ValueError(f"entity tag(s) {unknown} not among the SLUE tags {list(SLUE_TAGS)}")
    return torch.tensor([float(t in tags) for t in SLUE_TAGS])


def predicted_sentiment(probs: dict[str, dict[str, float]]) -> str:
    """The most probable class of one `probabilities` item."""
    return max(probs["sentiment"], key=probs["sentiment"].__getitem__)


def predicted_tags(probs: dict[str, dict[str, float]], threshold: float = 0.5) -> set[str]:
    """Tags whose probability reaches `threshold` in one `probabilities` item."""
    return {t for t, p in probs["entity_tags"].items() if p >= threshold}
