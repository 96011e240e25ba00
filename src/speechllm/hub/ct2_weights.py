"""CTranslate2 `WhisperSpec` tensors -> a `WhisperForConditionalGeneration` state dict
(`ct2_whisper_state_dict`): names mapped, int8 / int16 weights dequantized, fused attention
projections split, and every CTranslate2 variable accounted for."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from speechllm.errors import ModelSourceError

# Whisper sizes by width (head size is always 64); used only when neither the file, its
# config.json nor the caller says how many heads there are.
HEADS_BY_D_MODEL = {384: 6, 512: 8, 768: 12, 1024: 16, 1280: 20}

# CTranslate2's ActivationType -> transformers' activation name.
_ACTIVATIONS = {0: "relu", 1: "gelu_new", 3: "gelu"}

# ------------------------------------------------------------------------------------ mapping


class _Weights:
    """The CT2 variables, handed out as float32 with dequantization, keeping track of use."""

    def __init__(self, variables: dict[str, np.ndarray], label: str) -> None:
        self.vars = variables
        self.used: set[str] = set()
        self.label = label

    def has(self, name: str) -> bool:
        return name in self.vars

    def scalar(self, name: str) -> int | None:
        if name not in self.vars:
            return None
        self.used.add(name)
        return int(np.asarray(self.vars[name]).reshape(-1)[0])

    def get(self, name: str) -> np.ndarray:
        if name not in self.vars:
            raise ModelSourceError(f"{self.label}: variable {name} is missing")
        self.used.add(name)
        value = self.vars[name]
        scale_name = name + "_scale"
        if scale_name in self.vars:
            # CTranslate2 quantizes as q = rint(w * scale) (int8: one scale per output row,
            # int16: one for the whole matrix), so w = q / scale.
            self.used.add(scale_name)
            scale = self.vars[scale_name].astype(np.float32)
            if scale.ndim == 1 and value.ndim == 2:
                scale = scale[:, None]
            return value.astype(np.float32) / scale
        if value.dtype.kind != "f":
            raise ModelSourceError(
                f"{self.label}: variable {name} is {value.dtype} with no {scale_name} to "
                "dequantize it"
            )
        return value.astype(np.float32)

    def unused(self) -> list[str]:
        return sorted(set(self.vars) - self.used)


# Flags of CTranslate2's TransformerDecoderSpec that Whisper's converter always writes; each must
# hold the value that transformers' Whisper implements (checked, so a different model is refused).
_FLAGS_EXPECTED = {
    "decoder/alibi": 0,
    "decoder/pre_norm": 1,
    "decoder/start_from_zero_embedding": 0,
}
# Flags with no effect on the network (word-alignment settings, superseded by config.json).
_FLAGS_IGNORED = ("decoder/alignment_heads", "decoder/alignment_layer")


def _layer_count(variables: dict[str, np.ndarray], side: str) -> int:
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise ModelSourceError(f"{side} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _split_rows(value: np.ndarray, parts: int, name: str) -> list[np.ndarray]:
    if value.shape[0] % parts:
        raise ModelSourceError(f"{name}: {value.shape[0]} rows do not split into {parts} parts")
    return np.split(value, parts, axis=0)


def _linear(w: _Weights, src: str, dst: str, out: dict[str, np.ndarray], bias: bool = True) -> None:
    out[f"{dst}.weight"] = w.get(f"{src}/weight")
    if bias:
        out[f"{dst}.bias"] = w.get(f"{src}/bias")


def _norm(w: _Weights, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = w.get(f"{src}/gamma")
    out[f"{dst}.bias"] = w.get(f"{src}/beta")


def _fused(w: _Weights, src: str, dsts: list[str], out: dict[str, np.ndarray]) -> None:
    """A CT2 linear holding several projections stacked along dim 0 (q,k,v or cross-attn k,v)."""
    weights = _split_rows(w.get(f"{src}/weight"), len(dsts), f"{src}/weight")
    has_bias = w.has(f"{src}/bias")
    biases = _split_rows(w.get(f"{src}/bias"), len(dsts), f"{src}/bias") if has_bias else None
    for i, dst in enumerate(dsts):
        out[f"{dst}.weight"] = weights[i]
        if dst.endswith("k_proj"):
            # Whisper's key projection has no bias, and CT2 stores zeros there. Even a non-zero one
            # would not matter: q.(k + b) adds the same q.b to every key's score, which softmax
            # cancels. So it is dropped.
            continue
        out[f"{dst}.bias"] = biases[i] if biases is not None else np.zeros_like(weights[i][:, 0])


def _attention_heads(
    w: _Weights, side: str, d_model: int, ct2_config: dict[str, Any], explicit: int | None
) -> int:
    """Heads of the encoder or decoder: caller, else model.bin, else config.json, else width."""
    in_file = w.scalar(f"{side}/num_heads")
    in_config = ct2_config.get(f"{side}_attention_heads", ct2_config.get("num_heads"))
    if explicit is not None:
        for found, where in ((in_file, "model.bin"), (in_config, "config.json")):
            if found is not None and int(found) != explicit:
                raise ModelSourceError(
                    f"num_heads={explicit} contradicts the {side}'s {found} heads in {where}"
                )
        heads = explicit
    elif in_file is not None:
        heads = in_file
    elif in_config is not None:
        heads = int(in_config)
    elif d_model in HEADS_BY_D_MODEL:
        heads = HEADS_BY_D_MODEL[d_model]
    else:
        raise ModelSourceError(
            f"cannot tell the number of attention heads for d_model={d_model}: the model has no "
            "num_heads and it is not a standard Whisper width; pass num_heads="
        )
    if heads <= 0 or d_model % heads:
        raise ModelSourceError(f"{heads} attention heads do not divide d_model={d_model}")
    return heads


def _self_attention_and_ffn(w: _Weights, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    """The self-attention and feed-forward blocks that encoder and decoder layers share."""
    _norm(w, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
    qkv = [f"{dst}.self_attn.{p}_proj" for p in "qkv"]
    _fused(w, f"{src}/self_attention/linear_0", qkv, out)
    _linear(w, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj", out)
    _norm(w, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", out)
    _linear(w, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
    _linear(w, f"{src}/ffn/linear_1", f"{dst}.fc2", out)


def ct2_whisper_state_dict(
    variables: dict[str, np.ndarray],
    *,
    label: str = "model.bin",
    ct2_config: dict[str, Any] | None = None,
    num_heads: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Map CT2 `WhisperSpec` variables to a transformers state dict (float32) + config values.

    The config values are the WhisperConfig fields the weights determine (sizes, heads, mel bins,
    activation). Raises ModelSourceError when a variable is missing, or when the file holds
    variables or flag values this mapping does not know (rather than silently dropping them).
    """
    ct2_config = ct2_config or {}
    w = _Weights(variables, label)
    out: dict[str, np.ndarray] = {}

    for name, expected in _FLAGS_EXPECTED.items():
        value = w.scalar(name)
        if value is not None and value != expected:
            raise ModelSourceError(
                f"{label}: {name}={value} is not supported (Whisper uses {expected})"
            )
    for name in _FLAGS_IGNORED:
        w.scalar(name)
    activation_code = w.scalar("decoder/activation")
    activation = _ACTIVATIONS.get(3 if activation_code is None else activation_code)
    if activation is None:
        raise ModelSourceError(f"{label}: activation type {activation_code} is not supported")
    scale_embedding = bool(w.scalar("decoder/scale_embeddings") or 0)

    embeddings = w.get("decoder/embeddings/weight")
    vocab_size, d_model = embeddings.shape
    enc_layers = _layer_count(variables, "encoder")
    dec_layers = _layer_count(variables, "decoder")
    enc_heads = _attention_heads(w, "encoder", d_model, ct2_config, num_heads)
    dec_heads = _attention_heads(w, "decoder", d_model, ct2_config, num_heads)

    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        _linear(w, f"encoder/{conv}", f"{enc}.{conv}", out)
    out[f"{enc}.embed_positions.weight"] = w.get("encoder/position_encodings/encodings")
    for i in range(enc_layers):
        _self_attention_and_ffn(w, f"encoder/layer_{i}", f"{enc}.layers.{i}", out)
    _norm(w, "encoder/layer_norm", f"{enc}.layer_norm", out)

    out[f"{dec}.embed_tokens.weight"] = embeddings
    out[f"{dec}.embed_positions.weight"] = w.get("decoder/position_encodings/encodings")
    for i in range(dec_layers):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        _self_attention_and_ffn(w, src, dst, out)
        _norm(w, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
        _linear(w, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj", out)
        kv = [f"{dst}.encoder_attn.k_proj", f"{dst}.encoder_attn.v_proj"]
        _fused(w, f"{src}/attention/linear_1", kv, out)
        _linear(w, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj", out)
    _norm(w, "decoder/layer_norm", f"{dec}.layer_norm", out)

    # Whisper ties the output projection to the token embeddings; CT2 writes it as an alias.
    tied = True
    if w.has("decoder/projection/weight"):
        projection = w.get("decoder/projection/weight")
        if variables["decoder/projection/weight"] is not variables["decoder/embeddings/weight"]:
            tied = np.array_equal(projection, embeddings)
        if not tied:
            out["proj_out.weight"] = projection

    unused = [name for name in w.unused() if not name.endswith("_scale")]
    if unused:
        shown = ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else "")
        raise ModelSourceError(
            f"{label}: {len(unused)} variables this Whisper converter does not know: {shown}"
        )

    conv1 = out[f"{enc}.conv1.weight"]
    fields = {
        "vocab_size": int(vocab_size),
        "d_model": int(d_model),
        "num_mel_bins": int(conv1.shape[1]),
        "encoder_layers": enc_layers,
        "decoder_layers": dec_layers,
        "encoder_attention_heads": enc_heads,
        "decoder_attention_heads": dec_heads,
        "encoder_ffn_dim": int(out[f"{enc}.layers.0.fc1.weight"].shape[0]) if enc_layers else 0,
        "decoder_ffn_dim": int(out[f"{dec}.layers.0.fc1.weight"].shape[0]) if dec_layers else 0,
        "max_source_positions": int(out[f"{enc}.embed_positions.weight"].shape[0]),
        "max_target_positions": int(out[f"{dec}.embed_positions.weight"].shape[0]),
        "activation_function": activation,
        "scale_embedding": scale_embedding,
        "tie_word_embeddings": tied,
    }
    return out, fields
