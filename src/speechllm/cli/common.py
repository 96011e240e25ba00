"""What every command shares: the typer apps, the error exit, `--model` and `--tasks` handling
and the write-the-report-and-print step of `evaluate` and `score`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from speechllm.errors import SpeechLLMError

if TYPE_CHECKING:
    from speechllm.data.manifest import Utterance
    from speechllm.model.answers import Prediction
    from speechllm.model.speechllm import SpeechLLM

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The `speechllm` command line (typer). Each command is a thin layer over a library "
    "function.",
)
models_app = typer.Typer(
    no_args_is_help=True, help="Pretrained models: packaged names and the local cache."
)
data_app = typer.Typer(no_args_is_help=True, help="Manifests: import corpora, synthesize speech.")
import_app = typer.Typer(no_args_is_help=True, help="Turn a corpus into a manifest.")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
data_app.add_typer(import_app, name="import")
bench_app = typer.Typer(
    no_args_is_help=True,
    help="Offline benchmark: SLUE NER and VADER sentiment spoken by piper, LibriSpeech clips.",
)
app.add_typer(bench_app, name="bench")

err = Console(stderr=True)

ModelOption = Annotated[
    str | None,
    typer.Option(
        help="A shipped model's name (`speechllm models list`; default: the shipped default), "
        "a run directory or a model folder."
    ),
]
"""The `--model` option of every command that uses a trained model."""


class Runtime(StrEnum):
    """The choices of `--runtime` (`inference.runtime.RUNTIMES`)."""

    ctranslate2 = "ctranslate2"
    torch = "torch"


RuntimeOption = Annotated[
    Runtime,
    typer.Option(
        help="Where a whisper-route model's Whisper encoder and reader run: ctranslate2 (short "
        "windows, about 2x faster) or torch (transformers, 30 s windows, as in training)."
    ),
]
"""The `--runtime` option of the commands that decode (`inference.runtime`)."""


@app.callback()
def main(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show the libraries' own warnings, logs and loading bars."
        ),
    ] = False,
) -> None:
    """speechllm: speech in, transcript + named entities + sentiment out."""
    global VERBOSE
    VERBOSE = verbose
    if not verbose:
        quiet_libraries()


VERBOSE = False
"""Whether this command runs with `--verbose` (a worker process it starts is quieted likewise)."""


def quiet_libraries() -> None:
    """Keep normal output to our own lines and progress bars: transformers' weight-loading bars
    and notes, and third-party deprecation warnings, say nothing a user can act on."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(?!speechllm)")
    for name in ("accelerate", "peft", "httpx", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)


def fail(exc: Exception) -> NoReturn:
    """Print `exc` as the command's error and exit with status 2."""
    # escape: messages hold text such as "pip install 'speechllm[labels]'" that rich would
    # otherwise take for markup and drop.
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    raise typer.Exit(2)


def model_dir(model: str | Path | None) -> Path:
    """The model folder `--model` names (`shipped.resolve_model`); a bad name ends the command."""
    from speechllm.hub.shipped import resolve_model

    try:
        return resolve_model(model)
    except SpeechLLMError as exc:
        fail(exc)


def load_model(model: str | Path | None, runtime: str) -> SpeechLLM:
    """`inference.runtime.load_for_inference`; a model that cannot be loaded ends the command."""
    from speechllm.inference.runtime import load_for_inference

    try:
        return load_for_inference(model_dir(model), Runtime(runtime).value)
    except SpeechLLMError as exc:
        fail(exc)


def task_list(text: str, option: str = "--tasks") -> list[str]:
    """`asr,ner,sa` or `all` -> task list in TASKS order (`prompts.parse_tasks`); unknown names
    end the command.

    `all` is the one-generation answer that carries transcript, entities and sentiment
    together; `asr,ner,sa` asks the three separately (three generations)."""
    from speechllm.model.prompts import parse_tasks

    try:
        return parse_tasks(text, option=option)
    except ValueError as exc:
        fail(exc)


def progress_bar() -> Any:
    """A transient progress display on stderr: a task's name, its bar and done / total."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
    return Progress(*columns, console=err, transient=True)


def report_and_print(
    out: Path | None,
    references: Sequence[Utterance],
    predictions: Iterable[Prediction],
    metrics: dict[str, Any],
    sources: dict[str, str],
) -> None:
    """Write the report files to `out` (when given), print metrics.json to stdout and the files
    written to stderr; an --out folder that cannot be written ends the command."""
    from speechllm.evaluation.report import write_report

    files = {}
    if out is not None:
        try:
            files = write_report(out, references, predictions, metrics, sources=sources)
        except (SpeechLLMError, OSError) as exc:  # OSError: a folder that cannot be written
            fail(exc)
    print(json.dumps(metrics, indent=2))
    if out is not None:
        err.print(f"wrote {', '.join(p.name for p in files.values())} to {out}")
