"""`speechllm train`, `speechllm experiment` and `speechllm annotate` (labels to train on)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from speechllm.cli.common import app, err, fail, progress_bar
from speechllm.errors import SpeechLLMError


@app.command()
def train(
    config: Path,
    resume: Annotated[
        bool, typer.Option(help="Continue from the newest complete checkpoint.")
    ] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (YAML value).")
    ] = None,
) -> None:
    """Train a model as CONFIG.yaml says (run under `accelerate launch` for several processes)."""
    from speechllm.config import RunConfig
    from speechllm.training.train import train as run_training

    try:
        cfg = RunConfig.load(config, set_)
        path = run_training(cfg, resume=resume)
    except SpeechLLMError as exc:
        fail(exc)
    err.print(f"model saved to {path}")


@app.command()
def annotate(
    manifest: Annotated[Path, typer.Option(help="Manifest whose transcripts to label (JSONL).")],
    out: Annotated[
        Path,
        typer.Option(
            help="Labelled manifest to write; OUT.summary.json and OUT.cache.jsonl beside it."
        ),
    ],
    llm: Annotated[str, typer.Option(help="Packaged LLM name, local HF folder or hub id.")],
    tasks: Annotated[str, typer.Option(help="Comma-separated: ner,sa (or all).")] = "ner,sa",
    batch_size: Annotated[int, typer.Option(help="Texts decoded together.")] = 8,
    limit: Annotated[int | None, typer.Option(help="Label only the first N utterances.")] = None,
    prompt_style: Annotated[
        str, typer.Option(help="auto (chat if the tokenizer has a template), chat or plain.")
    ] = "auto",
    constrained: Annotated[
        bool,
        typer.Option(
            "--constrained/--free",
            help="Decode under the answer grammar, or freely (then validate and retry).",
        ),
    ] = True,
    calibrate: Annotated[
        str,
        typer.Option(
            help="Tasks whose labels are calibrated under the grammar (each label's score "
            "corrected by its score for content-free texts): sa, ner, ner,sa or none. "
            "Measured in docs/annotation.md.",
        ),
    ] = "none",
) -> None:
    """Label transcripts with an LLM: SLUE entity tags and 3-way sentiment; resumable.

    Writes OUT (the rows with `entities` / `sentiment` replaced; a failed label is null and listed
    in OUT.summary.json) and prints the summary.
    """
    import time

    from speechllm.annotate.annotator import Annotator
    from speechllm.annotate.cache import AnnotationCache, cache_path
    from speechllm.annotate.prompts import ANNOTATION_TASKS
    from speechllm.annotate.run import annotate_utterances, summary_path, write_summary
    from speechllm.data.manifest import read_manifest, write_manifest
    from speechllm.model.prompts import parse_tasks

    try:
        task_list = parse_tasks(tasks, ANNOTATION_TASKS)
        if batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
        if prompt_style not in ("auto", "chat", "plain"):
            raise ValueError(f"--prompt-style must be auto, chat or plain, got {prompt_style!r}")
        calibrated = (
            []
            if calibrate.strip() == "none"
            else parse_tasks(calibrate, ANNOTATION_TASKS, "--calibrate")
        )
        start = time.perf_counter()
        utts = read_manifest(manifest)[:limit]
        annotator = Annotator.load(
            llm,
            style=prompt_style,  # type: ignore[arg-type]
            constrained=constrained,
            calibrate=calibrated,
        )
        cache = AnnotationCache(cache_path(out))
        with progress_bar() as bar:
            job = bar.add_task("annotate", total=len(utts) * len(task_list))
            labelled, summary = annotate_utterances(
                utts,
                annotator,
                task_list,
                batch_size=batch_size,
                cache=cache,
                progress=lambda n: bar.advance(job, n),
            )
        summary.update(
            manifest=str(manifest),
            out=str(out),
            constrained=constrained,
            calibrated=calibrated if constrained else [],
            # Model loading included: what a user waits for.
            total_wall_seconds=round(time.perf_counter() - start, 3),
        )
        write_manifest(out, labelled)
        write_summary(summary_path(out), summary)
    except (SpeechLLMError, ValueError, OSError) as exc:
        fail(exc)
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=2))
    err.print(
        f"wrote {len(labelled)} utterances to {out}; {len(summary['failures'])} failed labels "
        f"listed in {summary_path(out)}"
    )


@app.command()
def experiment(
    config: Annotated[
        Path, typer.Argument(help="Experiment YAML (e.g. configs/paper_ablation.yaml).")
    ],
    scored_only: Annotated[
        bool, typer.Option(help="Train nothing: tabulate the rows already scored.")
    ] = False,
) -> None:
    """Train and score every row of an ablation on the same data and time budget; writes
    results.md, results.json and results.png (resumable: scored rows are kept)."""
    from speechllm.training.experiment import ExperimentConfig, run_experiment, score_row, train_row

    try:
        exp, rows = ExperimentConfig.load(config)
        run_experiment(exp, rows, train_row, score_row, log=err.print, scored_only=scored_only)
    except SpeechLLMError as exc:
        fail(exc)
    Console().print((Path(exp.output_dir) / "results.md").read_text())
