"""`speechllm export`: a trained model as a self-contained folder.

Two forms:

- plain (default): a copy of the model folder as trained (model.safetensors with the adapter, CTC
  head, classifier heads and LoRA weights, config.json, train_summary.json), without a
  run's checkpoints, logs and feature cache. The base models stay named by the config.
- merged (`--merge`): the LoRA update folded into the LLM's weights (peft `merge_and_unload`,
  W <- W + (alpha/r) B A) and the result written as a plain HF model folder `llm/` (weights,
  config, tokenizer) that any transformers code loads without peft. model.safetensors keeps the
  adapter, CTC head and classifier heads; config.json names `llm` (relative, so the
  folder can be moved; `saving.read_model_config` resolves it) and has LoRA disabled.
  `SpeechLLM.load` on it gives the original's outputs up to float rounding: the merged weight
  computes W x + s B (A x) as (W + s B A) x.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from speechllm.errors import ConfigError, ModelSourceError
from speechllm.hub.shipped import CONFIG_FILE, LEGACY_CONFIG_FILE, WEIGHTS_FILE
from speechllm.model.saving import read_model_config, write_model_dir
from speechllm.model.speechllm import SpeechLLM

MERGED_LLM_DIR = "llm"
"""Sub-folder of a merged export that holds the LLM with LoRA merged in."""


def export_model(source: str | Path, out: str | Path, merge: bool = False) -> Path:
    """Export the model folder `source` (one `SpeechLLM.save` wrote) to the new folder `out`.

    Raises ModelSourceError for a source that is not a model folder, ConfigError for an `out`
    that already holds files (an export never overwrites).
    """
    source, out = Path(source), Path(out)
    read_model_config(source)  # a clear error for a folder that is not a model
    if not (source / WEIGHTS_FILE).is_file():
        raise ModelSourceError(f"{source}: no {WEIGHTS_FILE} (the trained weights) to export")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: already exists and is not an empty folder; choose a new one")
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise ConfigError(f"{out}: the export cannot go inside the model folder {source}")
    if not merge:
        shutil.copytree(source, out, dirs_exist_ok=True)
        return out
    return _export_merged(source, out)


def _export_merged(source: Path, out: Path) -> Path:
    model = SpeechLLM.load(source)
    config = model.config
    # Everything trained except LoRA (which the merged LLM now carries) goes to model.safetensors.
    state = {k: v for k, v in model.trainable_state_dict().items() if not k.startswith("llm.")}
    llm = model.llm
    if config.lora.enabled:
        # safe_merge: check the merged weights for NaNs before replacing the originals.
        llm = llm.merge_and_unload(safe_merge=True)
    llm_dir = out / MERGED_LLM_DIR
    llm.save_pretrained(llm_dir)
    model.tokenizer.save_pretrained(llm_dir)
    merged = config.replace(
        llm=MERGED_LLM_DIR,
        lora=dataclasses.replace(config.lora, enabled=False),
        exported_from=str(source.resolve()),
        merged_lora=config.lora.enabled,
    )
    write_model_dir(out, state, merged)
    # Provenance files (train_summary.json, README.md) travel along; weights and config are new.
    for path in source.iterdir():
        if path.is_file() and path.name not in (WEIGHTS_FILE, CONFIG_FILE, LEGACY_CONFIG_FILE):
            shutil.copy2(path, out / path.name)
    return out
