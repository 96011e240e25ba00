"""CTranslate2 reader and CT2 Whisper -> transformers converter, on files written here (no models).

A small CT2 writer below produces synthetic files; a tiny random Whisper built in code is exported
to CT2's WhisperSpec names (the inverse of the converter's mapping), converted back, and must give
the original's logits.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    WhisperConfig,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)

from speechllm.errors import ModelSourceError
from speechllm.hub.ct2 import read_ct2
from speechllm.hub.ct2_convert import convert_whisper

# ------------------------------------------------------------------------------ a CT2 writer

_CODES = {
    np.dtype("float32"): 0,
    np.dtype("int8"): 1,
    np.dtype("int16"): 2,
    np.dtype("int32"): 3,
    np.dtype("float16"): 4,
}
BF16 = 5


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def ct2_bytes(
    variables: dict[str, np.ndarray],
    aliases: dict[str, str] | None = None,
    *,
    spec: str = "WhisperSpec",
    version: int = 6,
    bf16: frozenset[str] = frozenset(),
) -> bytes:
    """The CTranslate2 binary format; names in `bf16` (float32 arrays) are stored as bfloat16."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", 3)]
    out.append(struct.pack("<I", len(variables)))
    for name, value in variables.items():
        value = np.asarray(value)
        if name in bf16:
            code = BF16
            data = (value.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            code = _CODES[value.dtype]
            data = value.astype(value.dtype.newbyteorder("<")).tobytes()
        out.append(_string(name) + struct.pack("<B", value.ndim))
        out.append(struct.pack(f"<{value.ndim}I", *value.shape))
        out.append(struct.pack("<BI", code, len(data)) + data)
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out.append(_string(alias) + _string(target))
    return b"".join(out)


# ------------------------------------------------------------------------------ reader


def _synthetic() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "a/f32": rng.standard_normal((3, 4)).astype(np.float32),
        "a/i8": rng.integers(-128, 127, (5,), dtype=np.int8),
        "a/i16": rng.integers(-3000, 3000, (2, 3), dtype=np.int16),
        "a/i32": rng.integers(-(2**30), 2**30, (4,), dtype=np.int32),
        "a/f16": rng.standard_normal((2, 2, 3)).astype(np.float16),
        # Values with at most 8 significant bits are exact in bfloat16.
        "a/bf16": np.array([[1.5, -2.0, 0.375], [1024.0, -0.0078125, 3.0]], np.float32),
        "a/scalar": np.array(7, np.int16),
    }


def test_read_ct2_round_trip_every_dtype(tmp_path: Path) -> None:
    variables = _synthetic()
    path = tmp_path / "model.bin"
    path.write_bytes(
        ct2_bytes(variables, {"b/alias": "a/f32", "b/other": "a/bf16"}, bf16=frozenset({"a/bf16"}))
    )
    spec, read = read_ct2(path)
    assert spec == "WhisperSpec"
    assert set(read) == {*variables, "b/alias", "b/other"}
    for name, value in variables.items():
        want = np.float32 if name == "a/bf16" else value.dtype
        assert read[name].dtype == want, name
        assert read[name].shape == value.shape, name
        np.testing.assert_array_equal(read[name], value)
    assert read["b/alias"] is read["a/f32"]
    np.testing.assert_array_equal(read["b/other"], variables["a/bf16"])


def test_read_ct2_joins_parts_in_order(tmp_path: Path) -> None:
    data = ct2_bytes(_synthetic(), {"b/alias": "a/f16"})
    cut = len(data) // 2
    (tmp_path / "p1").write_bytes(data[:cut])
    (tmp_path / "p2").write_bytes(data[cut:])
    _, whole = read_ct2([tmp_path / "p1", tmp_path / "p2"])
    for name, value in _synthetic().items():
        np.testing.assert_array_equal(whole[name], value)
    with pytest.raises(ModelSourceError):
        read_ct2([tmp_path / "p2", tmp_path / "p1"])


@pytest.mark.parametrize("keep", [2, 7, 20, 60, -9, -1])
def test_truncated_file_is_a_clear_error(tmp_path: Path, keep: int) -> None:
    data = ct2_bytes(_synthetic(), {"b/alias": "a/f32"})
    path = tmp_path / "model.bin"
    path.write_bytes(data[:keep])
    with pytest.raises(ModelSourceError, match="truncated"):
        read_ct2(path)


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    good = ct2_bytes(_synthetic())
    path.write_bytes(good + b"\0\0")
    with pytest.raises(ModelSourceError, match="unexpected bytes"):
        read_ct2(path)
    path.write_bytes(ct2_bytes(_synthetic(), version=3))
    with pytest.raises(ModelSourceError, match="version 3"):
        read_ct2(path)
    path.write_bytes(b"PK\x03\x04 this is a zip file, not a model")
    with pytest.raises(ModelSourceError, match="not a CTranslate2"):
        read_ct2(path)
    # An unknown dtype code: patch the first variable's dtype byte.
    one = ct2_bytes({"x": np.zeros(2, np.float32)})
    dtype_at = 4 + len(_string("WhisperSpec")) + 4 + 4 + len(_string("x")) + 1 + 4
    assert one[dtype_at] == 0
    path.write_bytes(one[:dtype_at] + b"\x09" + one[dtype_at + 1 :])
    with pytest.raises(ModelSourceError, match="unknown CTranslate2 dtype 9"):
        read_ct2(path)
    path.write_bytes(ct2_bytes({"x": np.zeros(2, np.float32)}, {"y": "missing"}))
    with pytest.raises(ModelSourceError, match="missing"):
        read_ct2(path)
    with pytest.raises(ModelSourceError, match="cannot read"):
        read_ct2(tmp_path / "absent.bin")


# ------------------------------------------------------------------------------ converter

LANGS = ["<|en|>", "<|de|>"]
SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    *LANGS,
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]
N_MELS = 128  # not the default 80, so the converter must read it from the weights
HEADS = 4


def _tokenizer_json(path: Path) -> int:
    """A byte-level BPE like Whisper's, with its special tokens appended; returns its size."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(["he hoped there would be stew for dinner"] * 5, trainer)
    tok.add_special_tokens(SPECIALS)
    tok.save(str(path))
    return tok.get_vocab_size()


def _tiny_whisper(vocab_size: int, eot: int, sot: int) -> WhisperForConditionalGeneration:
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=N_MELS,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=32,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
    )
    model = WhisperForConditionalGeneration(config).eval()
    # Random init leaves biases and norms at 0 / 1; perturb every parameter so a wrong mapping
    # (a swapped bias, a missed norm) changes the logits.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def whisper_to_ct2(
    model: WhisperForConditionalGeneration, *, heads_in_file: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The inverse of the converter's mapping: transformers Whisper -> CT2 WhisperSpec names."""
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    c = model.config
    out: dict[str, np.ndarray] = {}

    def linear(src: str, dst: str) -> None:
        out[f"{dst}/weight"] = sd[f"{src}.weight"]
        out[f"{dst}/bias"] = sd[f"{src}.bias"]

    def norm(src: str, dst: str) -> None:
        out[f"{dst}/gamma"] = sd[f"{src}.weight"]
        out[f"{dst}/beta"] = sd[f"{src}.bias"]

    def fused(srcs: list[str], dst: str) -> None:
        # CT2 stores the (absent) key bias as zeros.
        out[f"{dst}/weight"] = np.concatenate([sd[f"{s}.weight"] for s in srcs])
        biases = [
            np.zeros(c.d_model, np.float32) if s.endswith("k_proj") else sd[f"{s}.bias"]
            for s in srcs
        ]
        out[f"{dst}/bias"] = np.concatenate(biases)

    def self_attention_and_ffn(s: str, d: str, cross_attention: bool) -> None:
        norm(f"{s}.self_attn_layer_norm", f"{d}/self_attention/layer_norm")
        fused([f"{s}.self_attn.{p}_proj" for p in "qkv"], f"{d}/self_attention/linear_0")
        linear(f"{s}.self_attn.out_proj", f"{d}/self_attention/linear_1")
        if cross_attention:
            norm(f"{s}.encoder_attn_layer_norm", f"{d}/attention/layer_norm")
            linear(f"{s}.encoder_attn.q_proj", f"{d}/attention/linear_0")
            kv = [f"{s}.encoder_attn.k_proj", f"{s}.encoder_attn.v_proj"]
            fused(kv, f"{d}/attention/linear_1")
            linear(f"{s}.encoder_attn.out_proj", f"{d}/attention/linear_2")
        norm(f"{s}.final_layer_norm", f"{d}/ffn/layer_norm")
        linear(f"{s}.fc1", f"{d}/ffn/linear_0")
        linear(f"{s}.fc2", f"{d}/ffn/linear_1")

    enc, dec = "model.encoder", "model.decoder"
    linear(f"{enc}.conv1", "encoder/conv1")
    linear(f"{enc}.conv2", "encoder/conv2")
    out["encoder/position_encodings/encodings"] = sd[f"{enc}.embed_positions.weight"]
    for i in range(c.encoder_layers):
        self_attention_and_ffn(f"{enc}.layers.{i}", f"encoder/layer_{i}", cross_attention=False)
    norm(f"{enc}.layer_norm", "encoder/layer_norm")
    out["decoder/embeddings/weight"] = sd[f"{dec}.embed_tokens.weight"]
    out["decoder/position_encodings/encodings"] = sd[f"{dec}.embed_positions.weight"]
    for i in range(c.decoder_layers):
        self_attention_and_ffn(f"{dec}.layers.{i}", f"decoder/layer_{i}", cross_attention=True)
    norm(f"{dec}.layer_norm", "decoder/layer_norm")
    # The scalar flags faster-whisper's files carry.
    out["decoder/activation"] = np.array(3, np.int8)  # GELU
    out["decoder/alibi"] = np.array(0, np.int8)
    out["decoder/pre_norm"] = np.array(1, np.int8)
    out["decoder/scale_embeddings"] = np.array(0, np.int8)
    out["decoder/start_from_zero_embedding"] = np.array(0, np.int8)
    out["decoder/alignment_heads"] = np.array(1, np.int16)
    out["decoder/alignment_layer"] = np.array(-1, np.int16)
    if heads_in_file:
        out["encoder/num_heads"] = np.array(c.encoder_attention_heads, np.int16)
        out["decoder/num_heads"] = np.array(c.decoder_attention_heads, np.int16)
    return out, {"decoder/projection/weight": "decoder/embeddings/weight"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[WhisperForConditionalGeneration, Path]:
    """The original model and a CT2 directory (model.bin, config.json, tokenizer.json) of it."""
    ct2_dir = tmp_path_factory.mktemp("ct2")
    vocab_size = _tokenizer_json(ct2_dir / "tokenizer.json")
    ids = json.loads((ct2_dir / "tokenizer.json").read_text())["added_tokens"]
    by_content = {t["content"]: t["id"] for t in ids}
    eot, sot = by_content["<|endoftext|>"], by_content["<|startoftranscript|>"]
    model = _tiny_whisper(vocab_size, eot, sot)
    variables, aliases = whisper_to_ct2(model)
    (ct2_dir / "model.bin").write_bytes(ct2_bytes(variables, aliases))
    ct2_config = {
        "alignment_heads": [[1, 0], [1, 2]],
        "suppress_ids": [1, 2, 3],
        "suppress_ids_begin": [eot],
    }
    (ct2_dir / "config.json").write_text(json.dumps(ct2_config))
    return model, ct2_dir


def _logits(model: WhisperForConditionalGeneration) -> torch.Tensor:
    torch.manual_seed(1)
    features = torch.randn(2, N_MELS, 3000)
    decoder_ids = torch.randint(0, model.config.vocab_size, (2, 7))
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=decoder_ids).logits


def test_convert_gives_the_original_logits(tiny, tmp_path: Path) -> None:
    original, ct2_dir = tiny
    out = convert_whisper(ct2_dir, tmp_path / "hf")
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
    ):
        assert (out / name).is_file(), name
    converted = WhisperForConditionalGeneration.from_pretrained(out)
    assert converted.dtype == torch.float32
    c = converted.config
    assert (c.d_model, c.encoder_layers, c.decoder_layers) == (64, 2, 2)
    assert (c.encoder_attention_heads, c.decoder_attention_heads) == (HEADS, HEADS)
    assert c.num_mel_bins == N_MELS
    assert c.max_target_positions == 32
    torch.testing.assert_close(_logits(converted), _logits(original), rtol=0, atol=1e-5)


def test_converted_directory_works_with_processor_and_generate(tiny, tmp_path: Path) -> None:
    _, ct2_dir = tiny
    out = convert_whisper(ct2_dir, tmp_path / "hf")
    processor = WhisperProcessor.from_pretrained(out)
    model = WhisperForConditionalGeneration.from_pretrained(out)
    assert processor.feature_extractor.feature_size == N_MELS
    tok = processor.tokenizer
    assert tok.convert_tokens_to_ids("<|notimestamps|>") == SPECIALS.index("<|notimestamps|>") + (
        tok.convert_tokens_to_ids("<|endoftext|>")
    )
    # The last special token is <|notimestamps|>: WhisperTokenizer takes the next id as the first
    # timestamp.
    assert tok.all_special_ids[-1] == tok.convert_tokens_to_ids("<|notimestamps|>")
    assert tok.decode(tok("he hoped").input_ids, skip_special_tokens=True) == "he hoped"

    gen = model.generation_config
    assert gen.is_multilingual is False
    assert not hasattr(gen, "lang_to_id")
    assert gen.decoder_start_token_id == tok.convert_tokens_to_ids("<|startoftranscript|>")
    assert gen.no_timestamps_token_id == tok.convert_tokens_to_ids("<|notimestamps|>")
    assert gen.alignment_heads == [[1, 0], [1, 2]]
    assert list(gen.suppress_tokens) == [1, 2, 3]

    audio = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32) * 0.1
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    assert features.shape == (1, N_MELS, 3000)
    ids = model.generate(features, max_new_tokens=5)
    assert ids.shape[0] == 1 and ids.shape[1] >= 1
    processor.batch_decode(ids, skip_special_tokens=True)


def test_multilingual_generation_config(tiny, tmp_path: Path) -> None:
    _, ct2_dir = tiny
    out = convert_whisper(ct2_dir, tmp_path / "hf", multilingual=True)
    model = WhisperForConditionalGeneration.from_pretrained(out)
    tok = WhisperProcessor.from_pretrained(out).tokenizer
    gen = model.generation_config
    assert gen.is_multilingual is True
    assert gen.lang_to_id == {t: tok.convert_tokens_to_ids(t) for t in LANGS}
    assert gen.task_to_id == {
        "transcribe": tok.convert_tokens_to_ids("<|transcribe|>"),
        "translate": tok.convert_tokens_to_ids("<|translate|>"),
    }
    assert gen.task == "transcribe"
    features = torch.randn(1, N_MELS, 3000)
    model.generate(features, language="de", max_new_tokens=3)
    model.generate(features, max_new_tokens=3)  # language detection over lang_to_id


def test_head_count_sources(tiny, tmp_path: Path) -> None:
    original, ct2_dir = tiny
    variables, aliases = whisper_to_ct2(original, heads_in_file=False)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "tokenizer.json").write_bytes((ct2_dir / "tokenizer.json").read_bytes())
    (bare / "model.bin").write_bytes(ct2_bytes(variables, aliases))
    # No num_heads in the file or config, and d_model=64 is no standard Whisper width.
    with pytest.raises(ModelSourceError, match="num_heads"):
        convert_whisper(bare, tmp_path / "a")
    # An explicit argument...
    out = convert_whisper(bare, tmp_path / "b", num_heads=HEADS)
    converted = WhisperForConditionalGeneration.from_pretrained(out)
    torch.testing.assert_close(_logits(converted), _logits(original), rtol=0, atol=1e-5)
    # ...or CT2's config.json.
    (bare / "config.json").write_text(json.dumps({"num_heads": HEADS}))
    out = convert_whisper(bare, tmp_path / "c")
    assert WhisperConfig.from_pretrained(out).encoder_attention_heads == HEADS
    # An argument that contradicts the file is refused.
    with pytest.raises(ModelSourceError, match="contradicts"):
        convert_whisper(ct2_dir, tmp_path / "d", num_heads=8)


def test_int8_weights_are_dequantized(tiny, tmp_path: Path) -> None:
    original, ct2_dir = tiny
    variables, aliases = whisper_to_ct2(original)
    name = "encoder/layer_1/ffn/linear_0/weight"
    weight = variables[name]
    # CTranslate2's int8 scheme: one scale per output row, q = rint(w * scale).
    scale = (127.0 / np.abs(weight).max(axis=1)).astype(np.float32)
    variables[name] = np.rint(weight * scale[:, None]).astype(np.int8)
    variables[name + "_scale"] = scale
    model_dir = tmp_path / "q"
    model_dir.mkdir()
    (model_dir / "tokenizer.json").write_bytes((ct2_dir / "tokenizer.json").read_bytes())
    (model_dir / "model.bin").write_bytes(ct2_bytes(variables, aliases))
    out = convert_whisper(model_dir, tmp_path / "hf")
    converted = WhisperForConditionalGeneration.from_pretrained(out)
    got = converted.model.encoder.layers[1].fc1.weight.detach().numpy()
    np.testing.assert_allclose(got, variables[name] / scale[:, None], rtol=1e-6)
    np.testing.assert_allclose(got, weight, atol=float(np.abs(weight).max()) / 127)


def test_refuses_other_models_and_unknown_variables(tiny, tmp_path: Path) -> None:
    original, ct2_dir = tiny
    variables, aliases = whisper_to_ct2(original)
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "tokenizer.json").write_bytes((ct2_dir / "tokenizer.json").read_bytes())
    (model_dir / "model.bin").write_bytes(ct2_bytes(variables, aliases, spec="TransformerSpec"))
    with pytest.raises(ModelSourceError, match="not Whisper"):
        convert_whisper(model_dir, tmp_path / "a")
    variables["decoder/layer_0/unknown/weight"] = np.zeros((2, 2), np.float32)
    (model_dir / "model.bin").write_bytes(ct2_bytes(variables, aliases))
    with pytest.raises(ModelSourceError, match="does not know"):
        convert_whisper(model_dir, tmp_path / "b")
    truncated = tmp_path / "t"
    truncated.mkdir()
    (truncated / "tokenizer.json").write_bytes((ct2_dir / "tokenizer.json").read_bytes())
    data = (ct2_dir / "model.bin").read_bytes()
    (truncated / "model.bin").write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelSourceError, match="truncated"):
        convert_whisper(truncated, tmp_path / "c")
