"""Tiny randomly initialised Whisper and Llama models, built in code (no downloads)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperModel,
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "the european commission met in brussels on monday",
    "transcribe the speech and mark named entities inline as tag phrase",
    "place quant org when norp person law negative neutral positive",
    "what is the sentiment of the speech answer",
    "second the economic benefits will bring benefits to all citizens",
]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
    )
    fast.chat_template = CHATML
    return fast


def tiny_llm(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        # Larger than the 0.02 default so a random model has logits that inputs can move.
        initializer_range=0.3,
    )
    return LlamaForCausalLM(config).eval()


def tiny_whisper_config(**ids: object) -> WhisperConfig:
    """The tiny Whisper shape every test model shares; `ids` set its vocabulary and special
    tokens (and any other field)."""
    shape = dict(
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=4,
        decoder_layers=1,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=64,
    )
    return WhisperConfig(**{**shape, **ids})


def tiny_whisper(seed: int = 0) -> WhisperModel:
    torch.manual_seed(seed)
    config = tiny_whisper_config(
        vocab_size=100,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    return WhisperModel(config).eval()


def save_tiny_models(root: Path) -> tuple[Path, Path]:
    """Write a tiny Whisper dir and a tiny LLM dir under `root`; return (whisper_dir, llm_dir)."""
    wdir, ldir = root / "tiny-whisper", root / "tiny-llm"
    if not (wdir / "config.json").exists():
        tiny_whisper().save_pretrained(wdir)
        WhisperFeatureExtractor(feature_size=80).save_pretrained(wdir)
    if not (ldir / "config.json").exists():
        tok = tiny_tokenizer()
        tiny_llm(len(tok)).save_pretrained(ldir)
        tok.save_pretrained(ldir)
    return wdir, ldir


def save_tiny_whisper_asr(out: Path, whisper_tokens: bool = False) -> Path:
    """A random Whisper with a decoder, speaking tests/tiny.py's tokenizer; with
    `whisper_tokens`, plus Whisper's own start-of-transcript and no-timestamps tokens, which
    CTranslate2's Whisper looks up by name."""
    if (out / "config.json").is_file():
        return out
    tok = tiny_tokenizer()
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    no_timestamps = None
    if whisper_tokens:
        tok.add_special_tokens(
            {"additional_special_tokens": ["<|startoftranscript|>", "<|notimestamps|>"]}
        )
        start, no_timestamps = tok.convert_tokens_to_ids(
            ["<|startoftranscript|>", "<|notimestamps|>"]
        )
    config = tiny_whisper_config(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=start,
        eos_token_id=end,
        decoder_start_token_id=start,
        begin_suppress_tokens=None,
        suppress_tokens=None,
        init_std=0.3,  # random but lively: the decoder writes varied tokens
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=end, pad_token_id=tok.pad_token_id
    )
    if no_timestamps is not None:
        model.generation_config.no_timestamps_token_id = no_timestamps
    model.save_pretrained(out)
    tok.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out)
    return out


def tiny_asr_model(asr_dir: Path, llm_dir: Path, *, max_new_tokens: int, **fields: Any):
    """A random SpeechLLM (seed 0, in eval mode) whose encoder is the Whisper-with-decoder saved
    at `asr_dir` by `save_tiny_whisper_asr` and whose LLM is `llm_dir`; `fields` set other
    ModelConfig fields (`speech_input`, `lora`)."""
    from speechllm.config import AdapterConfig, ModelConfig
    from speechllm.model.speechllm import SpeechLLM

    config = ModelConfig(
        encoder=str(asr_dir),
        llm=str(llm_dir),
        adapter=AdapterConfig(hidden=48),
        max_new_tokens=max_new_tokens,
        **fields,
    )
    torch.manual_seed(0)
    return SpeechLLM.from_config(config).eval()


def save_tiny_asr_run(root: Path, llm_dir: Path) -> Path:
    """A saved SpeechLLM run under `root` (returned: `root/run`, its model in `run/model`) whose
    encoder is the random Whisper-with-decoder of `save_tiny_whisper_asr` (`root/tiny-whisper-asr`),
    so that the cascade and the demo can read speech with it; its LLM is `llm_dir`."""
    asr = save_tiny_whisper_asr(root / "tiny-whisper-asr")
    tiny_asr_model(asr, llm_dir, max_new_tokens=8).save(root / "run" / "model")
    return root / "run"


def require(module: str, installed_by: str) -> ModuleType:
    """Import `module`, which `make venv` installs (`installed_by` says from where). Missing, the
    test fails and says so: a package the Makefile installs is never a reason to skip."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(
            f"cannot import {module} ({exc}): `make venv` installs it ({installed_by})",
            pytrace=False,
        )


def absent(message: str) -> NoReturn:
    """A system package or folder that `make venv` provides (apt) or CI mounts is missing: skip
    on a developer's machine, fail under CI, where it is always there."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def lively_tiny_model(tiny_dirs: tuple[Path, Path]):
    """The tiny random SpeechLLM of the server, CLI and web tests: its adapter perturbed so that
    answers (noise, but real ones) move with the audio."""
    from speechllm.config import AdapterConfig, ModelConfig
    from speechllm.model.speechllm import SpeechLLM

    w, lm = tiny_dirs
    torch.manual_seed(0)
    m = SpeechLLM.from_config(
        ModelConfig(encoder=str(w), llm=str(lm), adapter=AdapterConfig(hidden=48), max_new_tokens=6)
    ).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    return m
