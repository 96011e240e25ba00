"""`SpeechLLMConfig`: a saved SpeechLLM's transformers configuration (its folder's config.json).

The fields are the model section of a run's config (`speechllm.config.ModelConfig`, where each
one's meaning is written), plus what a saved model records about itself: the prompt version it was
trained on and where it came from. Validated on construction, so a folder whose config.json has
an unknown key, a wrong type, conflicting fields or another prompt version is refused on load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from speechllm.config import (
    AdapterConfig,
    ClassifierHeadsConfig,
    LoraSettings,
    ModelConfig,
    build,
)
from speechllm.errors import ConfigError, ModelSourceError
from speechllm.hub.shipped import MODEL_TYPE
from speechllm.model.prompts import PROMPT_VERSION

_DEFAULT = ModelConfig()

MODEL_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelConfig))
"""The fields a SpeechLLMConfig shares with `ModelConfig` (same names, types and defaults)."""

RECORD_FIELDS: tuple[str, ...] = ("prompt_version", "stage", "exported_from", "merged_lora")
"""The fields only a saved model has: what it records about itself."""

_TRANSFORMERS_KEYS = frozenset(
    {
        # What transformers writes into, or passes along with, every config.json.
        "model_type",
        "name_or_path",
        "_name_or_path",
        "torch_dtype",
        "output_attentions",
        "attn_implementation",
        "experts_implementation",
        "_commit_hash",
        "num_labels",
    }
)


class SpeechLLMConfig(PreTrainedConfig):
    """The configuration of a `SpeechLLM`: which base models, how they are joined, and what the
    saved model records. Nested sections are typed (`AdapterConfig`, ...) on the object and plain
    mappings in config.json.

    Raises ConfigError on construction for an unknown key, a value of the wrong type or fields
    that contradict each other (`ModelConfig.validate`), and ModelSourceError for a prompt
    version other than this code's (`model/prompts.py`).
    """

    model_type = MODEL_TYPE

    encoder: str = _DEFAULT.encoder
    """Whisper model: a packaged name, a local HF folder or a hub id (`ModelConfig.encoder`)."""
    llm: str = _DEFAULT.llm
    """Causal LM: a packaged name, a local HF folder or a hub id; a relative folder inside the
    model folder (a merged export's `llm/`) is resolved against it on load."""
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    """The adapter from encoder frames to LLM embeddings (`ModelConfig.adapter`)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA on the LLM (`ModelConfig.lora`)."""
    speech_input: str = _DEFAULT.speech_input
    """What the LLM reads for the speech: `adapter`, `ctc` or `whisper` (`ModelConfig`)."""
    ctc_vocab: str = _DEFAULT.ctc_vocab
    """Tokens the CTC head scores: `train`, `all` or `train+words:N` (`ModelConfig.ctc_vocab`)."""
    classifier_heads: ClassifierHeadsConfig = field(default_factory=ClassifierHeadsConfig)
    """Sentiment and entity-tag heads on the pooled adapter output (`ModelConfig`)."""
    max_new_tokens: int = _DEFAULT.max_new_tokens
    """Generation length limit at inference."""
    repetition_guard: int = _DEFAULT.repetition_guard
    """n-gram size never repeated at inference (`no_repeat_ngram_size`); 0 = off."""
    copy_reading: bool = _DEFAULT.copy_reading
    """`whisper` route: answers copy Whisper's reading as their transcript (`ModelConfig`)."""
    prompt_version: int = PROMPT_VERSION
    """Version of the prompts and answer formats the model was trained on; loading a model of
    another version is refused (it would answer formats this code does not parse)."""
    stage: dict[str, Any] | None = None
    """The training stage that wrote the model ({"index", "name", "kind"}); None outside stages."""
    exported_from: str | None = None
    """The model folder a merged export was made from (`speechllm export --merge`)."""
    merged_lora: bool | None = None
    """A merged export: whether LoRA was folded into its `llm/` weights."""

    def __post_init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - _TRANSFORMERS_KEYS)
        if unknown:
            raise ConfigError(
                f"speechllm model config: unknown key(s) {unknown}; known: "
                f"{sorted(MODEL_FIELDS + RECORD_FIELDS)}"
            )
        model_type = kwargs.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ConfigError(f"model_type {model_type!r} is not {MODEL_TYPE!r}")
        if self.prompt_version != PROMPT_VERSION:
            # The prompts and answer formats a model was trained on are part of it.
            raise ModelSourceError(
                f"this model was trained on prompt version {self.prompt_version} and this "
                f"speechllm uses version {PROMPT_VERSION} (model/prompts.py); retrain it with "
                "`speechllm train`, or use the speechllm release it was made with"
            )
        for key, kind in (("stage", dict), ("exported_from", str), ("merged_lora", bool)):
            value = getattr(self, key)
            if value is not None and not isinstance(value, kind):
                raise ConfigError(f"{key}: expected {kind.__name__} or null, got {value!r}")
        # One checker for every model config: the typed builder and ModelConfig's own checks.
        model = self.model_config()
        model.validate()
        for key in MODEL_FIELDS:
            setattr(self, key, getattr(model, key))
        super().__post_init__(**kwargs)

    @classmethod
    def from_model_config(cls, config: ModelConfig, **record: Any) -> SpeechLLMConfig:
        """The config of a model built from a run's `ModelConfig`; `record`: RECORD_FIELDS."""
        return cls(**{k: getattr(config, k) for k in MODEL_FIELDS}, **record)

    def model_config(self) -> ModelConfig:
        """The `ModelConfig` (run-config section) this model was built from."""
        return build(ModelConfig, {k: _plain(getattr(self, k)) for k in MODEL_FIELDS}, "model")

    def replace(self, **changes: Any) -> SpeechLLMConfig:
        """A new, validated config with `changes` (model or record fields)."""
        current = {k: getattr(self, k) for k in MODEL_FIELDS + RECORD_FIELDS}
        return type(self)(**{**current, **changes})

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in MODEL_FIELDS:
            out[key] = _plain(out[key])
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """What config.json holds: every model field, not only those that differ from today's
        defaults (a saved model must keep its meaning when a default changes), the record fields
        that are set, and transformers' identification keys."""
        full = self.to_dict()
        keep = ("model_type", "architectures", "transformers_version", *MODEL_FIELDS)
        out = {k: full[k] for k in keep if full.get(k) is not None}
        out.update({k: full[k] for k in RECORD_FIELDS if full.get(k) is not None})
        return out


def _plain(value: Any) -> Any:
    """A typed section as the mapping config.json holds (deep copies: no shared lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


# `AutoConfig.from_pretrained(folder)` reads a saved SpeechLLM's config.json.
AutoConfig.register(MODEL_TYPE, SpeechLLMConfig, exist_ok=True)
