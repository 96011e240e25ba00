"""Annotation speed: transformers (what `speechllm annotate` runs) against llama.cpp on the GGUF.

The packaged LLMs ship as GGUF files. `speechllm annotate` dequantizes them to float32 and runs
them with transformers; llama.cpp (`llama-cpp-python`) runs the quantized file itself. Both
decode greedily, one line, the same few-shot prompts (`Annotator.prompt`) for the same texts
(SLUE-VoxPopuli dev sentences for NER, VADER-rated snippets for SA, from ../shared):

- transformers, free decoding, batch 1 (sequential, as llama.cpp here) and batch --batch-size
  (what `speechllm annotate --free` runs); the few-shot prefix's keys and values are computed
  once and reused, as the tool does;
- transformers, grammar-constrained, batch --batch-size (what `speechllm annotate` runs by
  default: the constraint costs extra forward passes for whole-label scoring);
- llama.cpp on the quantized GGUF, sequential (llama-cpp-python's high-level API decodes one
  sequence; it reuses the longest common token prefix with the previous prompt, so the few-shot
  prefix is evaluated once too).

Figures: seconds per text and generated tokens per second for each, the speed-up of llama.cpp
over each transformers mode, and how many free answers are the same text in both runtimes
(Q4 weights in llama.cpp vs the same weights dequantized to float32: small numeric differences
can change a greedy answer) and how many pass the annotator's validation.

    .venv/bin/python benchmarks/annotate_runtime.py [--quick] [--llm smollm2-135m-instruct]

Needs `pip install llama-cpp-python` (built from source here: several minutes); without it
only the transformers rows are measured.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench_common import Timer, default_out, log, machine, print_table, set_threads, write_json

from speechllm.annotate.annotator import Annotator
from speechllm.annotate.run import annotate_texts
from speechllm.annotate.validation import check
from speechllm.data.importers.slue import import_slue_voxpopuli
from speechllm.data.importers.vader import import_vader
from speechllm.demo import shared_dir
from speechllm.hub.sources import packaged_gguf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4 texts per task (~1 min)")
    p.add_argument("--texts", type=int, default=None, help="texts per task (default 16)")
    p.add_argument("--llm", default="smollm2-135m-instruct", help="a packaged GGUF LLM")
    p.add_argument("--threads", type=int, default=2, help="torch and llama.cpp threads")
    p.add_argument("--batch-size", type=int, default=8, help="transformers rows per batch")
    p.add_argument("--out", type=Path, default=default_out("annotate_runtime"))
    args = p.parse_args(argv)
    args.texts = args.texts or (4 if args.quick else 16)
    return args


def texts_for(task: str, n: int) -> list[str]:
    """The first `n` SLUE-VoxPopuli dev texts (ner) or VADER-rated Amazon snippets (sa)."""
    data = shared_dir() / "data"
    if task == "ner":
        rows = import_slue_voxpopuli(data / "slue-voxpopuli" / "slue-voxpopuli_dev.tsv")
    else:
        rows = import_vader(data / "vader-ratings" / "amazonReviewSnippets_GroundTruth.txt")
    return [u.text for u in rows[:n]]


def run_transformers(
    annotator: Annotator, task: str, texts: list[str], batch_size: int
) -> tuple[list[str], float]:
    """Free greedy answers, `batch_size` rows at a time, from the shared prefix's cache."""
    answers: list[str] = []
    with Timer() as t:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            parts = [annotator.prompt_parts(task, x) for x in chunk]
            answers += annotator.generate(
                [suffix for _, suffix in parts],
                [annotator.max_new_tokens(task, x) for x in chunk],
                prefix=parts[0][0],
            )
    return answers, t.s


def run_constrained(
    annotator: Annotator, task: str, texts: list[str], batch_size: int
) -> tuple[list[str], float]:
    """What `speechllm annotate` does by default (grammar, validation), no cache."""
    annotator.constrained = True
    try:
        with Timer() as t:
            results = annotate_texts(annotator, task, texts, batch_size=batch_size)
    finally:
        annotator.constrained = False
    return [r.answer for r in results], t.s


def run_llama_cpp(
    llm: Any, annotator: Annotator, task: str, texts: list[str]
) -> tuple[list[str], float]:
    """Greedy answers from llama.cpp, one text after another, stopping at the end of line."""
    answers = []
    with Timer() as t:
        for x in texts:
            # The prompt text holds the chat template's special tokens: parse them as such.
            ids = llm.tokenize(annotator.prompt(task, x).encode(), add_bos=False, special=True)
            out = llm.create_completion(
                ids,
                max_tokens=annotator.max_new_tokens(task, x),
                temperature=0.0,
                top_k=1,
                stop=["\n"],
            )
            answers.append(out["choices"][0]["text"].split("\n", 1)[0].strip())
    return answers, t.s


def measure(args: argparse.Namespace, annotator: Annotator, llm: Any) -> dict[str, Any]:
    """Every runtime on both tasks; prints the table, returns the figures."""
    tok = annotator.tokenizer

    figures: dict[str, Any] = {"llm": args.llm, "texts_per_task": args.texts, "tasks": {}}
    rows: list[tuple[str, Any]] = []
    for task in ("ner", "sa"):
        texts = texts_for(task, args.texts)
        # Warm-up (first-call allocations, the prefix cache) on one text, untimed.
        run_transformers(annotator, task, texts[:1], 1)
        runs: dict[str, tuple[list[str], float]] = {
            "transformers_free_batch1": run_transformers(annotator, task, texts, 1),
            f"transformers_free_batch{args.batch_size}": run_transformers(
                annotator, task, texts, args.batch_size
            ),
            f"transformers_constrained_batch{args.batch_size}": run_constrained(
                annotator, task, texts, args.batch_size
            ),
        }
        if llm is not None:
            run_llama_cpp(llm, annotator, task, texts[:1])
            runs["llama_cpp_free"] = run_llama_cpp(llm, annotator, task, texts)
        per_task: dict[str, Any] = {}
        for name, (answers, seconds) in runs.items():
            tokens = sum(len(tok(a, add_special_tokens=False).input_ids) + 1 for a in answers)
            valid = sum(check(task, a, x).ok for a, x in zip(answers, texts, strict=True))
            per_task[name] = {
                "seconds": round(seconds, 3),
                "seconds_per_text": round(seconds / len(texts), 4),
                "answer_tokens_per_s": round(tokens / seconds, 2),
                "valid_answers": valid,
            }
            rows.append((f"{task} {name}: s/text", seconds / len(texts)))
            rows.append((f"{task} {name}: valid answers", f"{valid}/{len(texts)}"))
        if llm is not None:
            llama = runs["llama_cpp_free"]
            for name, (_, seconds) in runs.items():
                if name == "llama_cpp_free":
                    continue
                speedup = seconds / llama[1]
                per_task[name]["llama_cpp_speedup"] = round(speedup, 2)
                rows.append((f"{task} llama.cpp speed-up over {name}", speedup))
            free1 = runs["transformers_free_batch1"][0]
            same = sum(a == b for a, b in zip(free1, llama[0], strict=True))
            per_task["same_free_answer_llama_cpp_vs_transformers"] = same
            rows.append(
                (f"{task} same free answer, llama.cpp vs transformers", f"{same}/{len(texts)}")
            )
        figures["tasks"][task] = per_task
    print_table(f"annotation runtime: {args.llm}, {args.threads} threads", rows)
    return figures


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    annotator = Annotator.load(args.llm, constrained=False)
    try:
        from llama_cpp import Llama
    except ImportError:
        Llama = None
        log.print("llama-cpp-python is not installed: transformers rows only")
    # A GGUF that the packages split is joined in a temporary folder (hundreds of MB), removed
    # after the run; llama.cpp maps the file, so everything runs inside the block.
    with tempfile.TemporaryDirectory(prefix="speechllm-gguf-") as scratch:
        llm = None
        if Llama is not None:
            gguf = packaged_gguf(args.llm, Path(scratch))
            llm = Llama(model_path=str(gguf), n_ctx=4096, n_threads=args.threads, verbose=False)
        figures = measure(args, annotator, llm)
    figures["machine"] = machine()
    write_json(args.out, figures)


if __name__ == "__main__":
    main()
