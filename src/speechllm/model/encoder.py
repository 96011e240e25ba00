"""The frozen Whisper encoder, run on the clip's real length.

Whisper's encoder is trained on 30 s windows and `WhisperEncoder.forward` insists on them. Padding a
3 s clip to 30 s costs 10x the compute and fills the sequence with silence frames; instead we run the
encoder's own modules on the real number of mel frames and slice the positional-embedding table to
match (speech frames stay at cosine >= 0.99 to the 30 s run; see tests). In a batch, padded positions
are zeroed after each convolution and masked out of self-attention, so every item's valid frames are
the same as when it is encoded alone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from speechllm.data.audio import SAMPLE_RATE, WHISPER_WINDOW_SECONDS
from speechllm.errors import AudioError

HOP = 160  # samples per mel frame at 16 kHz (Whisper's feature extractor)


class SpeechEncoder(nn.Module):
    """Frozen Whisper encoder: list of 16 kHz waveforms -> (B, T, C) frames at 50 Hz + lengths."""

    def __init__(
        self,
        encoder: WhisperEncoder,
        feature_extractor: WhisperFeatureExtractor,
        pad_to_window: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.feature_extractor = feature_extractor
        # Whisper's own decoder needs what it was trained on: every clip padded to the 30 s
        # window (on real-length frames it loops, "he could wait no longer." x60). Only the
        # `whisper` speech input asks for it; the adapter routes read real-length frames.
        self.pad_to_window = pad_to_window
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.max_frames = encoder.config.max_source_positions  # 1500 frames = 30 s

    @property
    def dim(self) -> int:
        return self.encoder.config.d_model

    def train(self, mode: bool = True) -> SpeechEncoder:
        # Always frozen: dropout stays off even when the surrounding model trains.
        super().train(False)
        return self

    def check(self, audio: np.ndarray, source: object = "<audio>") -> np.ndarray:
        """Raise AudioError naming `source` if the waveform does not fit Whisper's 30 s window."""
        if len(audio) > self.max_frames * 2 * HOP:
            raise AudioError(
                source,
                f"{len(audio) / SAMPLE_RATE:.1f} s is longer than Whisper's {WHISPER_WINDOW_SECONDS:g} s window",
            )
        return audio

    def mel(self, audio: np.ndarray) -> torch.Tensor:
        """16 kHz waveform (N,) -> log-mel (n_mels, N // 160), unpadded."""
        self.check(audio)
        if self.pad_to_window:
            return self.feature_extractor(
                audio, sampling_rate=SAMPLE_RATE, return_tensors="pt"
            ).input_features[0]
        n_frames = max(2, len(audio) // HOP)
        feats = self.feature_extractor(
            audio,
            sampling_rate=SAMPLE_RATE,
            padding="do_not_pad",
            truncation=False,
            return_tensors="pt",
        ).input_features[0]
        return feats[:, :n_frames]

    @torch.no_grad()
    def forward(self, audios: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of waveforms.

        Returns frames (B, T, C) with T = ceil(max mel frames / 2), zero beyond each item's
        length, and lengths (B,) = ceil(mel frames / 2) per item.
        """
        mels = [self.mel(a) for a in audios]
        return self.encode_mels(mels)

    @torch.no_grad()
    def encode_mels(self, mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """List of (n_mels, F_i) -> frames (B, T, C), lengths (B,)."""
        enc = self.encoder
        device = enc.conv1.weight.device
        dtype = enc.conv1.weight.dtype
        mel_lens = torch.tensor([m.shape[1] for m in mels], device=device)
        f_max = int(mel_lens.max())
        x = torch.zeros(len(mels), mels[0].shape[0], f_max, device=device, dtype=dtype)
        for i, m in enumerate(mels):
            x[i, :, : m.shape[1]] = m.to(device=device, dtype=dtype)
        mel_mask = torch.arange(f_max, device=device)[None, :] < mel_lens[:, None]  # B, F

        # conv1 (stride 1) then zero the padded positions, so conv2 sees zeros beyond the end
        # exactly as it does for an unpadded clip (its own zero padding).
        h = nn.functional.gelu(enc.conv1(x)) * mel_mask[:, None, :]
        h = nn.functional.gelu(enc.conv2(h))  # B, C, ceil(F/2)
        lengths = (mel_lens + 1) // 2
        t_max = h.shape[-1]
        frame_mask = torch.arange(t_max, device=device)[None, :] < lengths[:, None]  # B, T
        h = h.permute(0, 2, 1) + enc.embed_positions.weight[:t_max]
        # Additive attention mask (B, 1, T, T): padded keys get -inf-like values.
        attn = torch.zeros(len(mels), 1, t_max, t_max, device=device, dtype=h.dtype)
        attn = attn.masked_fill(~frame_mask[:, None, None, :], torch.finfo(h.dtype).min)
        for layer in enc.layers:
            h = layer(h, attn)
            if isinstance(h, tuple):  # older transformers return (hidden, attn_weights)
                h = h[0]
        h = enc.layer_norm(h) * frame_mask[..., None]
        return h, lengths


def load_speech_encoder(name_or_path: str, dtype: torch.dtype = torch.float32) -> SpeechEncoder:
    """Load the encoder half of a Whisper checkpoint (HF dir or hub id) and its feature extractor."""
    from transformers import WhisperModel

    model = WhisperModel.from_pretrained(name_or_path, dtype=dtype)
    fe = WhisperFeatureExtractor.from_pretrained(name_or_path)
    return SpeechEncoder(model.get_encoder(), fe)
