"""The `whisper` speech input: Whisper's own decoder reads the frozen encoder's frames.

LegoSLM's idea (an ASR model's token posteriors mapped into the LLM's embedding space) with
Whisper's decoder in place of a CTC model: the decoder, frozen and from the same checkpoint as the
encoder, writes its greedy transcript; the transcript is normalised as SLUE's references are
(lower case, numbers spelt out: `speechllm.data.normalize`) and enters the LLM as the LLM's
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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from speechllm.data.audio import SAMPLE_RATE
from speechllm.data.normalize import normalize_transcript
from speechllm.errors import ModelSourceError

if TYPE_CHECKING:
    from transformers import (
        PreTrainedTokenizerBase,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )


@dataclass
class WhisperTranscriber:
    """Whisper with its own decoder: waveforms -> text, greedy, English."""

    model: WhisperForConditionalGeneration
    feature_extractor: WhisperFeatureExtractor
    tokenizer: PreTrainedTokenizerBase

    @classmethod
    def load(cls, name_or_path: str) -> WhisperTranscriber:
        """Load a packaged name (`sources.py`), a local HF directory or a hub id."""
        from transformers import (
            AutoTokenizer,
            WhisperFeatureExtractor,
            WhisperForConditionalGeneration,
        )

        from speechllm.hub.sources import resolve

        path = resolve(name_or_path)
        try:
            model = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
            feature_extractor = WhisperFeatureExtractor.from_pretrained(path)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except OSError as exc:
            raise ModelSourceError(
                f"cannot load Whisper {name_or_path!r} (decoder and tokenizer included) from "
                f"{path}: {exc}"
            ) from exc
        return cls(model.eval(), feature_extractor, tokenizer)

    @torch.no_grad()
    def transcribe(self, audios: Sequence[np.ndarray]) -> list[str]:
        """Transcripts of 16 kHz waveforms (each (N_i,), at most 30 s), decoded together.

        Features are (B, n_mels, 3000): every clip padded to Whisper's 30 s window, as the
        decoder was trained, so a clip's transcript does not depend on its batch.
        """
        if not audios:
            return []
        features = self.feature_extractor(
            list(audios), sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features
        kwargs: dict[str, Any] = {}
        if getattr(self.model.generation_config, "is_multilingual", False):
            # English-only checkpoints refuse a language; multilingual ones must not guess it.
            kwargs.update(language="en", task="transcribe")
        device = next(self.model.parameters()).device
        out = self.model.generate(
            features.to(device),
            do_sample=False,
            num_beams=1,
            # The decoder's whole context, as the checkpoint's own generation config has it.
            max_length=self.model.config.max_target_positions,
            **kwargs,
        )
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


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

    def check_window(self, frames: torch.Tensor, lengths: torch.Tensor) -> None:
        """Raise ValueError unless frames (B, T, C) are whole windows (T = 1500, every length)."""
        window = self.whisper.config.max_source_positions
        if frames.shape[1] != window or bool((lengths != window).any()):
            raise ValueError(
                f"Whisper's decoder reads whole {window}-frame windows; got frames {tuple(frames.shape)}"
                " (encode with SpeechEncoder(pad_to_window=True))"
            )

    @torch.no_grad()
    def read(self, frames: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Greedy transcripts of encoder frames (B, T, C) with lengths (B,), normalised."""
        from transformers.modeling_outputs import BaseModelOutput

        kwargs: dict[str, Any] = {}
        if getattr(self.whisper.generation_config, "is_multilingual", False):
            kwargs.update(language="en", task="transcribe")
        self.check_window(frames, lengths)
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
    transcriber = WhisperTranscriber.load(name_or_path)
    return WhisperReader(transcriber.model, transcriber.tokenizer)
