"""Text-stage training steps with and without length-sorted chunks (`train.chunk_tokens`).

The recipe's text stage (`configs/cpu-whisper-route.yaml`, stage `text`: SmolLM2-135M with LoRA
on every projection, batches of 16 drawn across the four tasks from the SLUE and VADER text
manifests that `speechllm data text-corpus` writes) is timed on the same steps once per budget,
each budget in its own process so its peak resident memory is its own. Figures per budget:
seconds per step, LLM positions computed per step (rows x padded length, summed over chunks),
the share of them that are real tokens, the loss of each step (the same batches, so the losses
agree across budgets up to float rounding and the text noise's draw), and the peak RSS.

    .venv/bin/python benchmarks/chunked_steps.py [--quick] [--steps 6] [--budgets none,1024,512]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from bench_common import ROOT, default_out, log, machine, print_table, set_threads, write_json

CONFIG = ROOT / "configs" / "cpu-whisper-route.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 steps per budget")
    p.add_argument("--steps", type=int, default=6, help="timed steps per budget")
    p.add_argument("--first-step", type=int, default=0, help="the recipe's step to start at")
    p.add_argument("--budgets", default="none,1024,512", help="chunk_tokens values; none = off")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--out", type=Path, default=default_out("chunked_steps"))
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process: one budget
    return p.parse_args(argv)


def run_budget(args: argparse.Namespace, budget: int | None) -> dict[str, Any]:
    """Time `args.steps` text-stage steps at `budget` in this process."""
    from accelerate import Accelerator

    from speechllm.config import RunConfig
    from speechllm.model.speechllm import SpeechLLM
    from speechllm.training.batches import load_utterances, make_batch
    from speechllm.training.chunks import backward_in_chunks, chunk_examples, example_positions
    from speechllm.training.sampler import TaskMixSampler, examples_for

    set_threads(args.threads)
    config = RunConfig.load(args.config)
    stage = config.for_stage(0) if config.stages else config
    tc, dc = stage.train, stage.data
    torch.manual_seed(tc.seed)
    model = SpeechLLM.from_config(stage.model).train()
    utts = load_utterances(dc.train, dc.max_seconds, require_audio=False)
    examples = examples_for(utts, dc.tasks, tc.synthetic_sentiment_loss, tc.sentiment_loss)
    sampler = TaskMixSampler(examples, dc.task_weights, tc.batch_size, tc.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tc.lr)
    accelerator = Accelerator(cpu=True)
    seconds, positions, real, losses = [], [], [], []
    for step in range(args.first_step, args.first_step + args.steps):
        drawn = sampler.batch(step)
        t0 = time.perf_counter()
        chunks = chunk_examples(model, drawn, budget, None, None)
        values = backward_in_chunks(
            accelerator,
            model,
            chunks,
            lambda part: make_batch(part, None),
            lambda e: model.layout.scored_tokens(e.answer, e.unscored),
            lm=True,
            text_noise=tc.text_noise,
        )
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        seconds.append(time.perf_counter() - t0)
        lengths = [[example_positions(model, e, e.utt.text, None) for e in c] for c in chunks]
        positions.append(sum(len(c) * max(c) for c in lengths))
        real.append(sum(sum(c) for c in lengths))
        losses.append(round(values["loss"], 4))
    return {
        "chunk_tokens": budget,
        # The first step warms allocator and caches: left out of the mean when there are others.
        "seconds_per_step": statistics.mean(seconds[1:] or seconds),
        "seconds": [round(s, 3) for s in seconds],
        "positions_per_step": statistics.mean(positions),
        "real_token_share": sum(real) / sum(positions),
        "losses": losses,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.steps = 2
    if args.one is not None:
        budget = None if args.one == "none" else int(args.one)
        print(json.dumps(run_budget(args, budget)))
        return
    results = []
    for value in args.budgets.split(","):
        log.print(f"chunk_tokens {value}: {args.steps} steps")
        cmd = [sys.executable, __file__, "--one", value, "--steps", str(args.steps)]
        cmd += ["--first-step", str(args.first_step), "--threads", str(args.threads)]
        cmd += ["--config", str(args.config)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = results[0]["seconds_per_step"]
    for r in results:
        print_table(
            f"chunk_tokens {r['chunk_tokens']}",
            [
                ("seconds per step", r["seconds_per_step"]),
                ("speed-up over the first budget", base / r["seconds_per_step"]),
                ("LLM positions per step", r["positions_per_step"]),
                ("real-token share", r["real_token_share"]),
                ("peak RSS GiB", r["peak_rss_gib"]),
                ("losses", " ".join(str(x) for x in r["losses"])),
            ],
        )
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write_json(args.out, {"settings": settings, "machine": machine(), "results": results})


if __name__ == "__main__":
    main()
