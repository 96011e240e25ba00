"""Speech models shipped inside the package, and how a `--model` argument names a model.

A shipped model is a folder under `speechllm/assets/pretrained/` holding only trained weights
(adapter / LoRA) and a config naming its base models, which `speechllm models fetch` provides
offline. `DEFAULT_MODEL` is what every command uses when no `--model` is given.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from speechllm.errors import ModelSourceError

DEFAULT_MODEL = "speechllm-tiny.en"
"""The shipped default: Whisper tiny.en's encoder and decoder (frozen) read the speech,
SmolLM2-135M-Instruct with LoRA answers (its README gives the recipe and figures)."""

CONFIG_FILE = "speechllm_config.json"


def pretrained_dir() -> Path:
    """The folder of shipped models inside the installed package."""
    return Path(str(resources.files("speechllm") / "assets" / "pretrained"))


def shipped_models() -> list[str]:
    """Names of the shipped speech models."""
    root = pretrained_dir()
    return sorted(p.name for p in root.iterdir() if (p / CONFIG_FILE).is_file())


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
    if (path / "model" / CONFIG_FILE).is_file():
        return path / "model"
    if (path / CONFIG_FILE).is_file():
        return path
    raise ModelSourceError(
        f"{text}: not a shipped model ({', '.join(shipped_models()) or 'none'}) nor a model or "
        f"run folder (no {CONFIG_FILE} in it or in its model/ folder)"
    )
