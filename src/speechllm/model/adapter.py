"""Adapters: encoder frames (B, T, C) -> LLM input embeddings (B, T', D).

- `StackingAdapter` (the proposed adapter): concatenate k consecutive frames (B, T, C) ->
  (B, ceil(T/k), k*C), then a small MLP to D. With Whisper's 50 Hz frames and k=4 the LLM sees
  12.5 vectors per second, about 3-4 per word, and the adapter stays small.
- `BaselineProjector` (the ablation's baseline): no down-sampling, one LLM position per 50 Hz frame,
  and a wider MLP, as Ultravox/SLAM-style projectors are.
"""

from __future__ import annotations

import torch
from torch import nn

from speechllm.config import AdapterConfig

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


def _mlp(d_in: int, hidden: int, d_out: int, depth: int, activation: str) -> nn.Sequential:
    if depth < 1:
        raise ValueError(f"adapter depth must be >= 1, got {depth}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"adapter activation {activation!r} is not one of {list(_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = d_in
    for _ in range(depth - 1):
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation]()]
        width = hidden
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


class _EmbeddingScale(nn.Module):
    """RMS-normalise each vector, then multiply by a learned scalar (init: the LLM embedding RMS).

    A randomly initialised MLP emits vectors whose norm has nothing to do with the token
    embeddings'; the LLM's first layers then see out-of-distribution inputs. Starting at the right
    scale removes that mismatch without constraining direction.
    """

    def __init__(self, target_rms: float) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(target_rms)).log())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = x.float().pow(2).mean(-1, keepdim=True).add(1e-6).rsqrt()
        return (x * rms.to(x.dtype)) * self.log_scale.exp().to(x.dtype)


class SpeechAdapter(nn.Module):
    """Shared machinery: optional input norm, MLP, optional embedding-scale matching."""

    stride: int = 1

    def __init__(
        self, d_in: int, d_out: int, config: AdapterConfig, target_rms: float | None
    ) -> None:
        super().__init__()
        self.config = config
        self.norm = nn.LayerNorm(d_in) if config.input_norm else nn.Identity()
        self.mlp = _mlp(d_in, config.hidden, d_out, config.depth, config.activation)
        use_scale = config.match_embedding_scale and target_rms is not None
        self.scale = _EmbeddingScale(target_rms) if use_scale else nn.Identity()

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths + self.stride - 1) // self.stride

    def forward(
        self, frames: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, T, C), lengths (B,) -> embeddings (B, T', D), lengths (B,)."""
        x = self.group(frames)
        return self.scale(self.mlp(self.norm(x))), self.output_lengths(lengths)

    def group(self, frames: torch.Tensor) -> torch.Tensor:
        return frames


class StackingAdapter(SpeechAdapter):
    """Stack k frames then MLP: (B, T, C) -> (B, ceil(T/k), k*C) -> (B, ceil(T/k), D)."""

    def __init__(
        self, d_in: int, d_out: int, config: AdapterConfig, target_rms: float | None = None
    ) -> None:
        if config.stack < 1:
            raise ValueError(f"adapter.stack must be >= 1, got {config.stack}")
        self.stride = config.stack
        super().__init__(d_in * config.stack, d_out, config, target_rms)

    def group(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, c = frames.shape
        k = self.stride
        pad = (-t) % k
        if pad:
            # Zero frames past the end: the encoder output is already zero beyond each length.
            frames = nn.functional.pad(frames, (0, 0, 0, pad))
        return frames.reshape(b, (t + pad) // k, k * c)


class BaselineProjector(SpeechAdapter):
    """No down-sampling: (B, T, C) -> (B, T, D) through a wider MLP (hidden x4)."""

    def __init__(
        self, d_in: int, d_out: int, config: AdapterConfig, target_rms: float | None = None
    ) -> None:
        wide = AdapterConfig(**{**config.__dict__, "hidden": config.hidden * 4})
        super().__init__(d_in, d_out, wide, target_rms)


def build_adapter(
    d_in: int, d_out: int, config: AdapterConfig, target_rms: float | None = None
) -> SpeechAdapter:
    """The adapter named by `config.kind`."""
    if config.kind == "stack":
        return StackingAdapter(d_in, d_out, config, target_rms)
    if config.kind == "baseline":
        return BaselineProjector(d_in, d_out, config, target_rms)
    raise ValueError(f"adapter.kind {config.kind!r} is not one of ['stack', 'baseline']")
