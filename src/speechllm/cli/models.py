"""`speechllm models list|fetch`, `speechllm info` and `speechllm export`: the models themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from speechllm.cli.common import ModelOption, app, err, fail, model_dir, models_app
from speechllm.errors import SpeechLLMError


@models_app.command("list")
def models_list() -> None:
    """List the shipped speech models (for --model) and the packaged base models they use."""
    from speechllm.hub.registry import list_sources
    from speechllm.hub.shipped import DEFAULT_MODEL, pretrained_dir, shipped_models
    from speechllm.hub.sources import is_fetched
    from speechllm.model.saving import read_model_config

    speech = Table(
        "default", "speech input", "encoder", "llm", title="speech models (--model NAME)"
    )
    speech.columns.insert(0, Column("name", no_wrap=True))
    for name in shipped_models():
        saved = read_model_config(pretrained_dir() / name)
        speech.add_row(
            name,
            "yes" if name == DEFAULT_MODEL else "",
            saved.speech_input,
            saved.encoder,
            saved.llm,
        )
    Console().print(speech)
    table = Table("kind", "fetched", "packages", "description", title="packaged base models")
    # Names are what users type: never wrap them.
    table.columns.insert(0, Column("name", no_wrap=True))
    for s in list_sources():
        table.add_row(
            s.name,
            s.kind,
            "yes" if is_fetched(s.name) else "no",
            " ".join(s.packages),
            s.description,
        )
    Console().print(table)


@models_app.command("fetch")
def models_fetch(
    name: str,
    force: Annotated[bool, typer.Option(help="Rebuild the cache entry even if present.")] = False,
) -> None:
    """Convert a packaged model into a plain HF directory in the cache; print its path."""
    from speechllm.hub.sources import fetch

    try:
        print(fetch(name, force=force))
    except SpeechLLMError as exc:
        fail(exc)


@app.command()
def info(config: Path) -> None:
    """Trainable and frozen parameters per part for a config YAML or a saved model/run dir."""
    from speechllm.config import RunConfig
    from speechllm.model.saving import read_model_config
    from speechllm.model.speechllm import SpeechLLM

    try:
        if config.is_dir():
            model_config = read_model_config(model_dir(config))
        else:
            model_config = RunConfig.load(config).model
        model = SpeechLLM.from_config(model_config)
    except SpeechLLMError as exc:
        fail(exc)
    table = Table("part", "trainable", "frozen")
    total_t = total_f = 0
    for part, t, f in model.parameter_report():
        table.add_row(part, f"{t:,}", f"{f:,}")
        total_t, total_f = total_t + t, total_f + f
    table.add_row("[bold]total", f"[bold]{total_t:,}", f"[bold]{total_f:,}")
    Console().print(table)


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="New folder to write the exported model to.")],
    model: ModelOption = None,
    merge: Annotated[
        bool,
        typer.Option(
            help="Merge the LoRA weights into the LLM and write it as a plain HF model in OUT/llm."
        ),
    ] = False,
) -> None:
    """Export a trained model: a portable copy, or (--merge) LoRA folded into a plain HF LLM.

    Either way `SpeechLLM.load(OUT)` (and `--model OUT` in the other commands) gives the
    original's outputs.
    """
    from speechllm.model.export import export_model

    try:
        path = export_model(model_dir(model), out, merge=merge)
    except (SpeechLLMError, OSError) as exc:  # OSError: an --out folder that cannot be written
        fail(exc)
    err.print(f"exported {'merged ' if merge else ''}model to {path}")
