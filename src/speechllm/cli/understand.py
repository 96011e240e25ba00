"""`speechllm infer`, `evaluate`, `score` and `compare`: answers, their scores, and whether one
system's scores are really above another's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from speechllm.cli.common import (
    ModelOption,
    Runtime,
    RuntimeOption,
    app,
    err,
    fail,
    load_model,
    model_dir,
    progress_bar,
    report_and_print,
    task_list,
)
from speechllm.config import DECODE_BATCH
from speechllm.errors import SpeechLLMError

if TYPE_CHECKING:
    from speechllm.data.manifest import Utterance
    from speechllm.model.answers import Prediction


@app.command()
def infer(
    audio: list[Path],
    model: ModelOption = None,
    runtime: RuntimeOption = Runtime.ctranslate2,
    task: Annotated[
        str,
        typer.Option(
            help="asr, ner, sa, or all (transcript, entities and sentiment in one generation); "
            "several separated by commas."
        ),
    ] = "all",
    batch_size: Annotated[
        int, typer.Option(help="(clip, task) rows decoded together.")
    ] = DECODE_BATCH,
    max_minutes: Annotated[
        float,
        typer.Option(help="Longest file accepted, in minutes (a longer one is an error)."),
    ] = 60.0,
) -> None:
    """Transcribe / tag / judge audio files; prints one JSON object per file (a JSON list).

    A file longer than 30 s (Whisper's window) is split at its pauses by a voice-activity
    detector (`speechllm.inference.longform.split_speech`); each piece is understood like a short clip and
    the file's result joins them (`join_results`): one transcript, entities with the times of
    their piece, the overall sentiment (majority by duration) and the `pieces` themselves.
    """
    from dataclasses import replace
    from functools import partial

    import numpy as np

    from speechllm.data.audio import SAMPLE_RATE, WHISPER_WINDOW_SECONDS, load_audio
    from speechllm.errors import AudioError
    from speechllm.inference.decode import answer, encode_clips
    from speechllm.inference.longform import join_results, split_speech

    tasks = task_list(task)
    if max_minutes <= 0:
        fail(ValueError(f"--max-minutes must be positive, got {max_minutes}"))
    m = load_model(model, runtime)
    results: dict[int, dict] = {}
    frames = []
    owner: list[int] = []  # the file of each entry of `frames`
    pieces: dict[int, list] = {}  # file -> its pieces' times, for files split into pieces
    # Shown only once some file is split (transient: nothing is left on stderr).
    bar = progress_bar()
    encoded = None
    try:
        for i, path in enumerate(audio):
            try:
                # The length limit is checked before resampling (a tiny file claiming a 1 Hz
                # rate would otherwise be resampled to gigabytes first).
                wav = load_audio(path, max_seconds=max_minutes * 60)
                if len(wav) <= WHISPER_WINDOW_SECONDS * SAMPLE_RATE:
                    # Within Whisper's window: read whole, as always.
                    frames += encode_clips(m.encoder, [wav])
                    owner.append(i)
                    continue
                segments = split_speech(wav, max_seconds=WHISPER_WINDOW_SECONDS)
                if encoded is None:
                    bar.start()
                    encoded = bar.add_task("encode pieces", total=0)
                bar.update(encoded, total=(bar.tasks[encoded].total or 0) + len(segments))
                piece_frames = encode_clips(
                    m.encoder, [s.audio for s in segments], progress=partial(bar.advance, encoded)
                )
                frames += piece_frames
                owner += [i] * len(piece_frames)
                # Times only: the pieces' audio (views of the whole file) is not kept.
                pieces[i] = [replace(s, audio=np.zeros(0, np.float32)) for s in segments]
            except AudioError as exc:
                # The encoder's own errors do not know the file: name it, as load_audio's do.
                results[i] = {"audio": str(path), "error": f"{path}: {exc.reason}"}
            except SpeechLLMError as exc:
                results[i] = {"audio": str(path), "error": str(exc)}
        decoded = (
            bar.add_task("decode", total=len(frames) * len(tasks)) if encoded is not None else None
        )
        predictions = answer(
            m,
            frames,
            tasks,
            batch_size,
            (lambda n: bar.advance(decoded, n)) if decoded is not None else None,
        )
    finally:
        bar.stop()
    understood: dict[int, list[Prediction]] = {}
    for i, p in zip(owner, predictions, strict=True):
        understood.setdefault(i, []).append(p)
    for i in range(len(audio)):
        if i in pieces:
            joined = join_results(pieces[i], understood.get(i, []), tasks)
            results[i] = {"audio": str(audio[i]), **joined}
        elif i in understood:
            results[i] = {"audio": str(audio[i]), **understood[i][0].to_dict()}
    print(json.dumps([results[i] for i in range(len(audio))], indent=2))
    if any("error" in r for r in results.values()):
        raise typer.Exit(1)


def _cascade(
    model: str | None, utts: list[Utterance], tasks: list[str], batch_size: int
) -> tuple[list[Prediction], dict[str, Any], dict[str, str]]:
    """`evaluate --cascade`: (predictions, the cascade's names and timings, report sources)."""
    from speechllm.evaluation.cascade import load_cascade, run_cascade

    transcriber, annotator, names = load_cascade(model_dir(model))
    with progress_bar() as bar:
        asr = bar.add_task("transcribe", total=len(utts))
        lab = bar.add_task("label", total=None)
        result = run_cascade(
            utts,
            tasks,
            transcriber,
            annotator,
            batch_size=batch_size,
            asr_progress=lambda n: bar.advance(asr, n),
            label_progress=lambda n: bar.advance(lab, n),
        )
    info = {
        **names,
        "asr_seconds": round(result.asr_seconds, 3),
        "label_seconds": round(result.label_seconds, 3),
    }
    system = {"system": f"cascade: {names['asr']} decoder, then {names['llm']} labels the text"}
    return result.predictions, info, system


@app.command()
def evaluate(
    manifest: Annotated[Path, typer.Option(help="Manifest with audio and labels (JSONL).")],
    out: Annotated[Path, typer.Option(help="Folder for metrics, predictions, plots, report.")],
    model: ModelOption = None,
    runtime: RuntimeOption = Runtime.ctranslate2,
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks: asr,ner,sa or all.")] = "all",
    batch_size: Annotated[
        int, typer.Option(help="Clips encoded, and (clip, task) rows decoded, together.")
    ] = DECODE_BATCH,
    cascade: Annotated[
        bool,
        typer.Option(
            help="Cascade baseline: the run's Whisper transcribes with its own decoder, the run's "
            "base LLM (no LoRA, no adapter) labels the transcript."
        ),
    ] = False,
) -> None:
    """Decode a manifest with a trained model and score it as SLUE does; prints metrics.json.

    Writes metrics.json, predictions.jsonl, the SLUE submission tsv, NER .wrd files and report.md
    with plots to --out (the files of `score --out`). With --cascade the same files score the
    cascade baseline (`speechllm.evaluation.cascade`). metrics.json records `wall_seconds` (models loaded,
    decoded, scored).
    """
    import time

    from speechllm.data.manifest import read_manifest
    from speechllm.evaluation.metrics import compute_metrics
    from speechllm.inference.evaluate import evaluate as evaluate_model

    tasks_ = task_list(tasks)
    if batch_size < 1:
        fail(ValueError(f"--batch-size must be at least 1, got {batch_size}"))
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        utts = read_manifest(manifest, require_audio=True)
        if cascade:
            predictions, info, system = _cascade(model, utts, tasks_, batch_size)
            metrics = compute_metrics(utts, predictions, tasks_)
            metrics["cascade"] = info
        else:
            system = {}
            m = load_model(model, runtime)
            with progress_bar() as bar:
                enc = bar.add_task("encode", total=len(utts))
                dec = bar.add_task("decode", total=None)
                metrics, predictions = evaluate_model(
                    m,
                    utts,
                    tasks_,
                    batch_size=batch_size,
                    encode_progress=lambda n: bar.advance(enc, n),
                    decode_progress=lambda n: bar.advance(dec, n),
                )
        metrics["wall_seconds"] = round(time.perf_counter() - start, 3)
        # CPU time of this process (all its threads): the cost on a machine shared with others.
        metrics["cpu_seconds"] = round(time.process_time() - cpu_start, 3)
    except (SpeechLLMError, OSError) as exc:
        fail(exc)
    sources = {"model": str(model), "manifest": str(manifest), **system}
    report_and_print(out, utts, predictions, metrics, sources)


@app.command()
def score(
    reference: Annotated[Path, typer.Option(help="Reference manifest (JSONL).")],
    predictions: Annotated[
        Path, typer.Option(help="Predictions in manifest format (JSONL), one per reference id.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Also write the files of `evaluate` to this folder.")
    ] = None,
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks: asr,ner,sa or all.")] = "all",
) -> None:
    """Score predictions made elsewhere (matched by id) as SLUE does; prints metrics.json."""
    from speechllm.data.manifest import read_manifest
    from speechllm.evaluation import report
    from speechllm.evaluation.metrics import compute_metrics

    tasks_ = task_list(tasks)
    try:
        # Scoring reads text and labels only: a text-only reference may leave out `audio` and
        # `duration` (or hold nulls), as predictions may (`report.read_predictions`).
        refs = read_manifest(
            reference, defaults={"audio": None, "duration": None}, what="reference manifest"
        )
        preds = report.read_predictions(predictions)
        metrics = compute_metrics(refs, preds, tasks_)
    except (SpeechLLMError, OSError) as exc:
        fail(exc)
    sources = {"reference": str(reference), "predictions": str(predictions)}
    report_and_print(out, refs, preds, metrics, sources)


def _predictions_file(path: Path) -> Path:
    """A predictions file, or an `evaluate --out` folder holding one."""
    return path / "predictions.jsonl" if path.is_dir() else path


@app.command()
def compare(
    reference: Annotated[Path, typer.Option(help="Reference manifest (JSONL).")],
    a: Annotated[
        Path, typer.Argument(help="System A: predictions JSONL or an evaluate --out folder.")
    ],
    b: Annotated[Path, typer.Argument(help="System B, the same way.")],
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
) -> None:
    """Paired bootstrap of A against B on the same references: each figure, A - B, its 95%
    interval and the share of resamples where A is better; prints JSON (a table on stderr)."""
    from rich.table import Table

    from speechllm.data.manifest import read_manifest
    from speechllm.evaluation import report
    from speechllm.evaluation.compare import paired_bootstrap

    try:
        refs = read_manifest(
            reference, defaults={"audio": None, "duration": None}, what="reference manifest"
        )
        systems = [report.read_predictions(_predictions_file(p)) for p in (a, b)]
        result = paired_bootstrap(refs, *systems, resamples=resamples, seed=seed)
    except (SpeechLLMError, OSError) as exc:
        fail(exc)
    table = Table("metric", "A", "B", "A - B", "95% interval", "A better in")
    for metric, r in result.items():
        table.add_row(
            metric,
            f"{r['a']:.1f}",
            f"{r['b']:.1f}",
            f"{r['diff']:+.1f}",
            f"[{r['low']:+.1f}, {r['high']:+.1f}]",
            f"{r['a_better']:.0%}",
        )
    err.print(table)
    print(json.dumps({"a": str(a), "b": str(b), "resamples": resamples, **result}, indent=2))
