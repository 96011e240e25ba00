"""The `whisper` speech input: Whisper's own decoder reads the frozen encoder's frames.

LegoSLM's idea (an ASR model's token posteriors mapped into the LLM's embedding space) with
Whisper's decoder in place of a CTC model: the decoder, frozen and from the same checkpoint as the
encoder, writes its greedy transcript; the transcript is normalised as SLUE's references are
(lower case, numbers spelt out: `cascade.normalize_transcript`) and enters the LLM as the LLM's
own token embeddings, where the other routes put their speech vectors. The LLM's LoRA then learns
the tasks from text (`kind: text` stages), since text is what it reads here.

Why: on this project's benchmark Whisper tiny.en's decoder reads synthetic and real speech at
6-10% WER, where the CTC head trained on a few hours of synthetic speech reads 25-56%.

The decoder reads frames of the whole 30 s window (`SpeechEncoder(pad_to_window=True)`), as it
was trained: on real-length frames it loops ("he could wait no longer." sixty times for a 2 s
clip). Every clip then has 1500 frames, so clips batch without padding and a clip's transcript
does not depend on its batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from speechllm.cascade import normalize_transcript

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, WhisperForConditionalGeneration


class WhisperReader(nn.Module):
    """Frozen Whisper decoder: encoder frames (B, T, C) -> SLUE-normalised transcripts (B,)."""

    def __init__(
        self, whisper: WhisperForConditionalGeneration, tokenizer: PreTrainedTokenizerBase
    ) -> None:
        super().__init__()
        # The encoder half is the SpeechEncoder's: only the decoder and its output layer are used.
        self.whisper = whisper
        self.tokenizer = tokenizer
        self.whisper.requires_grad_(False)
        self.whisper.eval()

    def train(self, mode: bool = True) -> WhisperReader:
        super().train(False)  # frozen: never in training mode
        return self

    @torch.no_grad()
    def read(self, frames: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Greedy transcripts of encoder frames (B, T, C) with lengths (B,), normalised."""
        from transformers.modeling_outputs import BaseModelOutput

        kwargs: dict[str, Any] = {}
        if getattr(self.whisper.generation_config, "is_multilingual", False):
            kwargs.update(language="en", task="transcribe")
        window = self.whisper.config.max_source_positions
        if frames.shape[1] != window or bool((lengths != window).any()):
            raise ValueError(
                f"Whisper's decoder reads whole {window}-frame windows; got frames {tuple(frames.shape)}"
                " (encode with SpeechEncoder(pad_to_window=True))"
            )
        from transformers.utils import logging as hf_logging

        # Whisper's generate logs notes meant for its own pipeline (the attention mask of the
        # decoder prompt, its suppress-token settings) on every call: not the user's concern.
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            out = self.whisper.generate(
                encoder_outputs=BaseModelOutput(
                    last_hidden_state=frames.to(self.whisper.device, self.whisper.dtype)
                ),
                do_sample=False,
                num_beams=1,
                max_length=self.whisper.config.max_target_positions,
                **kwargs,
            )
        finally:
            hf_logging.set_verbosity(level)
        raw = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [normalize_transcript(t.strip()) for t in raw]


def load_whisper_reader(name_or_path: str) -> WhisperReader:
    """The decoder half of a Whisper checkpoint (packaged name, local dir or hub id)."""
    from speechllm.cascade import WhisperTranscriber

    transcriber = WhisperTranscriber.load(name_or_path)
    return WhisperReader(transcriber.model, transcriber.tokenizer)
