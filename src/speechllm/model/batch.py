"""`Batch`: the inputs of `SpeechLLM.forward` for a list of examples, and `collate_frames`, which
pads encoder frames into its `frames` tensor."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Model inputs for a list of examples.

    frames (B, T, C) encoder output, zero-padded; frame_lengths (B,); tasks: one per example;
    answers: target texts (training) or None (generation); transcripts: plain transcripts for the
    CTC loss (None where unknown); sentiments: each utterance's sentiment class, entity_tags: the
    SLUE tags of its entities ([] = labelled, none), for the classifier loss (None where unknown,
    whatever the example's task). speech_texts: transcripts that stand in for the speech
    (`kind: text` stages, and the `whisper` route's transcripts); frames are then None.
    unscored: per example, a leading part of its answer that adds no loss ("" = none): a
    synthetic sentiment word with `train.synthetic_sentiment_loss` off.
    """

    frames: torch.Tensor | None
    frame_lengths: torch.Tensor | None
    tasks: list[str]
    answers: list[str] | None = None
    transcripts: list[str | None] | None = None
    sentiments: list[str | None] | None = None
    entity_tags: list[list[str] | None] | None = None
    speech_texts: list[str] | None = None
    unscored: list[str] | None = None


def collate_frames(frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, C) -> zero-padded (B, T, C) and lengths (B,)."""
    lengths = torch.tensor([f.shape[0] for f in frames])
    out = torch.zeros(len(frames), int(lengths.max()), frames[0].shape[1])
    for i, f in enumerate(frames):
        out[i, : f.shape[0]] = f
    return out, lengths
