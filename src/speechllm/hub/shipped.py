"""Speech models shipped inside the package, and how a `--model` argument names a model.

A shipped model is a folder under `speechllm/assets/pretrained/` holding only trained weights
(adapter / LoRA) and a config naming its base models, which `speechllm models fetch` provides
offline. `DEFAULT_MODEL` is what every command uses when no `--model` is given.

A model folder is a transformers folder: `config.json` (model_type `speechllm`) and
`model.safetensors`; folders written before that format hold `speechllm_config.json` instead and
still load (`speechllm.model.saving`).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from speechllm.errors import ModelSourceError

DEFAULT_MODEL = "speechllm-tiny.en"
"""The shipped default: Whisper tiny.en's encoder and decoder (frozen) read the speech,
SmolLM2-135M-Instruct with LoRA answers (its README gives the recipe and figures)."""

CONFIG_FILE = "config.json"
"""A model folder's transformers config (`SpeechLLMConfig`)."""
LEGACY_CONFIG_FILE = "speechllm_config.json"
"""The config file of model folders written before they were transformers folders."""
WEIGHTS_FILE = "model.safetensors"
"""A model folder's trained weights."""
MODEL_TYPE = "speechllm"
"""`model_type` in a model folder's config.json."""


def is_model_dir(path: str | Path) -> bool:
    """Whether `path` is a SpeechLLM model folder (either format). A run folder's own config.json
    (its RunConfig) has no `model_type` and is not one."""
    path = Path(path)
    if (path / LEGACY_CONFIG_FILE).is_file():
        return True
    try:
        meta = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("model_type") == MODEL_TYPE


def pretrained_dir() -> Path:
    """The folder of shipped models inside the installed package."""
    return Path(str(resources.files("speechllm") / "assets" / "pretrained"))


def shipped_models() -> list[str]:
    """Names of the shipped speech models."""
    root = pretrained_dir()
    return sorted(p.name for p in root.iterdir() if is_model_dir(p))


def resolve_model(name_or_path: str | Path | None = None) -> Path:
    """The model folder a `--model` argument means: None -> the shipped default; a shipped
    model's name -> its folder; a run directory -> its `model/` folder; a model folder -> itself.

    Raises ModelSourceError naming the shipped models when it is none of those."""
    if name_or_path is None or str(name_or_path) == "":
        name_or_path = DEFAULT_MODEL
    text = str(name_or_path)
    if text in shipped_models() and not Path(text).exists():
        return pretrained_dir() / text
    path = Path(text)
    if is_model_dir(path / "model"):
        return path / "model"
    if is_model_dir(path):
        return path
    raise ModelSourceError(
        f"{text}: not a shipped model ({', '.join(shipped_models()) or 'none'}) nor a model or "
        f"run folder (no speechllm {CONFIG_FILE} in it or in its model/ folder)"
    )
