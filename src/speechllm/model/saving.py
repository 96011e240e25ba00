"""Saved SpeechLLM folders: writing, reading and converting them.

A model folder is a transformers folder: `config.json` (a `SpeechLLMConfig`, which names the base
models rather than storing them) and `model.safetensors` holding only what trained: adapter, CTC
head and its vocabulary, classifier heads, LoRA. `SpeechLLM.save_pretrained` / `from_pretrained`
are built on these functions; provenance files beside them (README.md, train_summary.json, ...)
are left alone.

Folders written before this format hold `speechllm_config.json` ({"model": {...},
"prompt_version": N, ...}) instead of config.json. They still load, checked the same way, and
`convert_legacy_folder` (`python -m speechllm.model.saving FOLDER`) rewrites one in the new format
with its tensors unchanged.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from speechllm.errors import ConfigError, ModelSourceError
from speechllm.hub.shipped import (
    CONFIG_FILE,
    LEGACY_CONFIG_FILE,
    MODEL_TYPE,
    WEIGHTS_FILE,
    is_model_dir,
)
from speechllm.model.configuration import SpeechLLMConfig

if TYPE_CHECKING:
    from speechllm.model.speechllm import SpeechLLM

ARCHITECTURE = "SpeechLLM"
"""The model class config.json names (`architectures`)."""


def write_model_dir(
    directory: str | Path, state: dict[str, torch.Tensor], config: SpeechLLMConfig
) -> Path:
    """Write a model folder: `state` (trained tensors only) as model.safetensors and `config`
    as config.json. A config of the older format in the folder is removed: one config each."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    # The metadata transformers' loaders expect of a PyTorch safetensors file.
    save_file(state, str(weights), metadata={"format": "pt"})
    # safetensors creates the file owner-only; a saved model is meant to be shared.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(weights, 0o666 & ~umask)
    config = config.replace()  # a copy: the caller's config is not marked
    config.architectures = [ARCHITECTURE]
    config.save_pretrained(directory)
    (directory / LEGACY_CONFIG_FILE).unlink(missing_ok=True)
    return directory


def read_model_config(directory: str | Path) -> SpeechLLMConfig:
    """The validated config a saved model folder records (either format).

    Raises ModelSourceError naming the folder for a folder that is not a model, a config with an
    unknown key, a wrong type or conflicting fields, and a model of another prompt version. A
    relative `encoder` / `llm` naming a folder inside the model folder (a merged export's `llm/`,
    `export.py`) is resolved against it, so the folder stays loadable wherever it is moved.
    """
    directory = Path(directory)
    if not is_model_dir(directory):
        raise ModelSourceError(
            f"{directory}: not a speechllm model directory (no {CONFIG_FILE} with model_type "
            f"{MODEL_TYPE!r}, nor an older {LEGACY_CONFIG_FILE})"
        )
    legacy = directory / LEGACY_CONFIG_FILE
    source = legacy if legacy.is_file() else directory / CONFIG_FILE
    try:
        if legacy.is_file():
            meta = json.loads(legacy.read_text())
            config = SpeechLLMConfig(**meta.pop("model", {}), **meta)
        else:
            config = SpeechLLMConfig.from_pretrained(directory)
    except (ConfigError, ModelSourceError, TypeError, ValueError) as exc:
        raise ModelSourceError(f"{source}: {exc}") from exc
    return resolve_inside(config, directory)


def resolve_inside(config: SpeechLLMConfig, directory: str | Path) -> SpeechLLMConfig:
    """`config` with a relative `encoder` / `llm` that names a folder inside the model folder
    `directory` made absolute (in place; returned for convenience)."""
    directory = Path(directory)
    for key in ("encoder", "llm"):
        inside = (directory / getattr(config, key)).resolve()
        # Only a folder strictly below the model directory ("llm"; not "." or "../x").
        if directory.resolve() in inside.parents and inside.is_dir():
            setattr(config, key, str(inside))
    return config


def trained_state(model: SpeechLLM) -> dict[str, torch.Tensor]:
    """Exactly the parameters that train (adapter, CTC head, LoRA, classifier heads), plus the
    CTC vocabulary: what a model folder and a checkpoint hold."""
    state = {
        n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
    }
    state["ctc.vocab"] = model.ctc.vocab.detach().cpu().contiguous()
    return state


def load_trained_state(
    model: SpeechLLM, state: dict[str, torch.Tensor], strict: bool = True, where: Any = ""
) -> None:
    """Copy `state` (`trained_state`'s keys) into `model`. `strict`: every trained parameter
    present and no unknown one, else ModelSourceError naming `where`; not strict (fine-tuning
    from another model), what matches is copied."""
    state = dict(state)
    if "ctc.vocab" in state:
        model.ctc.set_vocab(state.pop("ctc.vocab"))
    own = dict(model.named_parameters())
    unknown = sorted(set(state) - set(own))
    missing = sorted(n for n, p in own.items() if p.requires_grad and n not in state)
    if strict and (unknown or missing):
        raise ModelSourceError(
            f"{where}: weights do not match this model (unknown: {unknown[:5]}, "
            f"missing: {missing[:5]})"
        )
    with torch.no_grad():
        for name, value in state.items():
            if name in own:
                own[name].copy_(value)


def read_trained_state(directory: str | Path) -> dict[str, torch.Tensor]:
    """The trained tensors of a model folder."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelSourceError(f"{directory}: no {WEIGHTS_FILE} (the trained weights)")
    return load_file(str(path))


def convert_legacy_folder(directory: str | Path) -> Path:
    """Rewrite a model folder of the older format (speechllm_config.json) as a transformers
    folder: config.json, and model.safetensors with the same tensors (now with transformers'
    metadata). Other files stay. A folder already converted is left as it is."""
    directory = Path(directory)
    if not (directory / LEGACY_CONFIG_FILE).is_file():
        read_model_config(directory)  # a clear error for what is not a model folder at all
        return directory
    meta = json.loads((directory / LEGACY_CONFIG_FILE).read_text())
    config = SpeechLLMConfig(**meta.pop("model", {}), **meta)  # unresolved paths, as written
    return write_model_dir(directory, read_trained_state(directory), config)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m speechllm.model.saving FOLDER...  (convert older model folders)")
    for folder in sys.argv[1:]:
        print(convert_legacy_folder(folder))
