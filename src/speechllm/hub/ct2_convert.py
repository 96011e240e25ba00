"""CTranslate2 (faster-whisper) Whisper -> a transformers Whisper directory (`convert_whisper`):
the weights (`ct2_weights.py`), the config and generation config, the tokenizer and the feature
extractor, so that `from_pretrained`, `WhisperProcessor.from_pretrained` and `generate` work
offline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechllm.errors import ModelSourceError
from speechllm.hub.ct2 import read_ct2
from speechllm.hub.ct2_weights import ct2_whisper_state_dict

# Whisper's reference rule (openai/whisper): multilingual checkpoints have >= 51865 tokens.
_MULTILINGUAL_MIN_VOCAB = 51865

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
