"""Training throughput: the encoder feature cache, and how much of the CPU's matmul speed we use.

(a) Training steps of the shipped model (LoRA + adapter + CTC head, `speechllm train`'s step:
    forward with the CTC loss, backward, gradient clipping, AdamW) on piper clips, each batch
    timed twice, interleaved so both see the same load: with the encoder feature cache warm (what
    `speechllm train` does after its first pass: frames read from memory) and with the encoder
    run on the batch's audio inside the step (what training would cost without the cache;
    `train.py` has no switch to disable it, so the benchmark runs the encoder itself). Figures:
    samples/s and seconds per epoch (every clip x task example once).
(b) The LLM's forward + backward on one training batch: FLOPs counted by
    `torch.utils.flop_counter.FlopCounterMode` (and the usual 6 x params x tokens estimate beside
    it), divided by the measured time, as a fraction of this CPU's fp32 matmul speed (a large
    `torch.matmul` timed with the same thread count).

    .venv/bin/python benchmarks/train_throughput.py [--quick] [--clips 32] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
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
from torch.utils.flop_counter import FlopCounterMode

from speechllm.config import TrainConfig
from speechllm.data.audio import load_audio
from speechllm.model.speechllm import Batch, SpeechLLM
from speechllm.training.batches import make_batch
from speechllm.training.features import FeatureCache
from speechllm.training.sampler import Example, TaskMixSampler, examples_for

TASKS = ["asr", "ner"]  # the SLUE clips have transcripts and entities, no sentiment


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="8 clips, 2 steps per mode (~1 min)")
    p.add_argument("--clips", type=int, default=None, help="clips in the epoch (default 32)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per mode (default 8)")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--matmul-n", type=int, default=2048, help="size of the square matmul probe")
    p.add_argument("--llm-reps", type=int, default=None, help="timed LLM fwd+bwd runs (5)")
    p.add_argument("--model", type=Path, default=None, help="model dir (default: the shipped one)")
    p.add_argument("--out", type=Path, default=default_out("train_throughput"))
    args = p.parse_args(argv)
    args.clips = args.clips or (8 if args.quick else 32)
    args.steps = args.steps or (2 if args.quick else 8)
    args.llm_reps = args.llm_reps or (2 if args.quick else 5)
    return args


# ---------------------------------------------------------------------------- (a) steps


def encoded_batch(model: SpeechLLM, examples: list[Example]) -> Batch:
    """A training batch whose frames come from running the encoder now (no cache)."""
    frames, lengths = model.encoder([load_audio(str(e.utt.audio)) for e in examples])
    batch = make_batch(examples, _NoCache())  # labels exactly as train.py builds them
    batch.frames, batch.frame_lengths = frames, lengths
    return batch


class _NoCache:
    """Stands in for FeatureCache in `make_batch`: one zero frame per clip (replaced after)."""

    def get(self, audio_path: str) -> torch.Tensor:
        return torch.zeros(1, 1)


def train_step(
    model: SpeechLLM, optimizer: torch.optim.Optimizer, params: list[torch.Tensor], batch: Batch
) -> float:
    """One optimiser step as `speechllm train` takes it (fp32, CTC weight, clipping)."""
    tc = TrainConfig()
    losses = model(batch, ctc_weight=tc.ctc_weight, lm=True)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return float(losses["loss"].detach())


def measure_steps(
    model: SpeechLLM, cache: FeatureCache, sampler: TaskMixSampler, steps: int
) -> dict[str, Any]:
    """Time `steps` batches warm (cached frames) and cold (encoder in the step), interleaved."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    model.train()
    # One untimed step of each kind: first calls allocate and pick kernels.
    train_step(model, optimizer, params, make_batch(sampler.batch(0), cache))
    train_step(model, optimizer, params, encoded_batch(model, sampler.batch(0)))
    warm: list[float] = []
    cold: list[float] = []
    encoder: list[float] = []
    for step in range(1, steps + 1):
        examples = sampler.batch(step)
        with Timer() as t:
            train_step(model, optimizer, params, make_batch(examples, cache))
        warm.append(t.s)
        with Timer() as t:
            with Timer() as e:
                batch = encoded_batch(model, examples)
            train_step(model, optimizer, params, batch)
        cold.append(t.s)
        encoder.append(e.s)
        log.print(f"step {step}/{steps}: warm {warm[-1]:.2f} s, cold {cold[-1]:.2f} s")
    return {"warm_step_s": warm, "cold_step_s": cold, "cold_encoder_s": encoder}


# ---------------------------------------------------------------------------- (b) FLOP/s


def matmul_flops_per_s(n: int, reps: int = 5) -> dict[str, float]:
    """fp32 GFLOP/s of an n x n x n torch.matmul at the current thread count (best of `reps`)."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.matmul(a, b)  # warm-up: thread pool, caches
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - start)
    flops = 2 * n**3
    return {
        "best_flops_per_s": flops / min(times),
        "median_flops_per_s": flops / statistics.median(times),
    }


def llm_fwd_bwd(model: SpeechLLM, batch: Batch, reps: int) -> dict[str, Any]:
    """Count and time the LLM part of a training step on `batch`.

    The same computation as `SpeechLLM.forward` after the speech is spliced in: decoder body,
    LM head at the answer positions, cross-entropy, backward (into LoRA and into the speech
    inputs, as training sends gradients back to the adapter).
    """
    model.train()
    with torch.no_grad():
        speech, lengths = model.llm_speech(
            *model.speech_embeddings(batch.frames, batch.frame_lengths)
        )
        inputs, mask, labels = model._assemble(
            speech, lengths, batch.tasks, batch.answers, left_pad=False
        )
    inputs = inputs.detach().requires_grad_(True)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    causal = model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm

    def run() -> None:
        hidden = causal.get_decoder()(
            inputs_embeds=inputs, attention_mask=mask, position_ids=positions
        ).last_hidden_state
        targets = labels[:, 1:]
        picked = hidden[:, :-1][targets != -100]
        logits = causal.get_output_embeddings()(picked).float()
        loss = torch.nn.functional.cross_entropy(logits, targets[targets != -100])
        loss.backward()
        model.zero_grad(set_to_none=True)
        inputs.grad = None

    run()  # warm-up
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    counted = counter.get_total_flops()
    times = []
    for _ in range(reps):
        with Timer() as t:
            run()
        times.append(t.s)
    tokens = int(mask.sum())
    base = [p for n, p in model.llm.named_parameters() if "lora_" not in n]
    embedding = model.llm.get_input_embeddings().weight.numel()
    non_embedding = sum(p.numel() for p in base) - embedding
    # Embedding-free params: the LM head (tied to the embeddings) runs only at answer positions.
    # The estimate counts real tokens; the counter sees what runs: every padded position, and a
    # backward without weight gradients for the frozen base (about 4 x N per position, not 6).
    estimate = 6 * non_embedding * tokens
    median = statistics.median(times)
    return {
        "tokens": tokens,
        "padded_positions": int(mask.numel()),
        "answer_tokens": int((labels != -100).sum()),
        "llm_non_embedding_params": non_embedding,
        "flops_counted": counted,
        "flops_6nd_estimate": estimate,
        "fwd_bwd_s": times,
        "fwd_bwd_median_s": median,
        "flops_per_s_counted": counted / median,
        "flops_per_s_6nd": estimate / median,
    }


def step_flops(model: SpeechLLM, cache: FeatureCache, examples: list[Example]) -> int:
    """FLOPs of one whole warm training step (adapter, CTC, LLM, backward), counted."""
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        losses = model(make_batch(examples, cache), ctc_weight=TrainConfig().ctc_weight)
        losses["loss"].backward()
    for p in params:
        p.grad = None
    return counter.get_total_flops()


# ---------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    set_threads(args.threads)
    torch.manual_seed(0)
    clips = bench_clips(args.clips)
    with Timer() as load:
        model = SpeechLLM.load(args.model or shipped_model_dir())
    examples = examples_for(clips, TASKS)
    n_examples = sum(len(v) for v in examples.values())
    sampler = TaskMixSampler(examples, dict.fromkeys(TASKS, 1.0), args.batch_size, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        # A fresh cache folder: its build is the one-off encoder pass the cache pays once.
        cache = FeatureCache(model.encoder, tmp)
        with Timer() as build:
            cache.build([str(u.audio) for u in clips])
        steps = measure_steps(model, cache, sampler, args.steps)
        llm = llm_fwd_bwd(model, make_batch(sampler.batch(0), cache), args.llm_reps)
        whole_step = step_flops(model, cache, sampler.batch(0))
    matmul = matmul_flops_per_s(args.matmul_n)
    warm_s = statistics.median(steps["warm_step_s"])
    cold_s = statistics.median(steps["cold_step_s"])
    peak = matmul["best_flops_per_s"]
    audio_s = sum(float(u.duration or 0) for u in clips)
    return {
        "benchmark": "train_throughput",
        "machine": machine(),
        "settings": {
            "model": str(args.model or shipped_model_dir()),
            "clips": len(clips),
            "audio_seconds": round(audio_s, 1),
            "tasks": TASKS,
            "examples_per_epoch": n_examples,
            "batch_size": args.batch_size,
            "timed_steps_per_mode": args.steps,
            "threads": args.threads,
            "matmul_n": args.matmul_n,
        },
        "model_load_s": load.s,
        "cache_build_s": build.s,
        "warm_step_median_s": warm_s,
        "cold_step_median_s": cold_s,
        "cold_encoder_median_s": statistics.median(steps["cold_encoder_s"]),
        "samples_per_s_cached": args.batch_size / warm_s,
        "samples_per_s_uncached": args.batch_size / cold_s,
        "speedup_cached": cold_s / warm_s,
        "epoch_s_cached": n_examples / (args.batch_size / warm_s),
        "epoch_s_uncached": n_examples / (args.batch_size / cold_s),
        "steps": steps,
        "llm": llm,
        "whole_step_flops_counted": whole_step,
        "whole_step_flops_per_s": whole_step / warm_s,
        "matmul": matmul,
        "llm_fraction_of_matmul": llm["flops_per_s_counted"] / peak,
        "llm_fraction_of_matmul_6nd": llm["flops_per_s_6nd"] / peak,
        "whole_step_fraction_of_matmul": whole_step / warm_s / peak,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    f = run(args)
    s = f["settings"]
    giga = 1e9
    print_table(
        f"training throughput: {s['clips']} clips, batch {s['batch_size']}, {s['threads']} threads",
        [
            ("samples/s, encoder cache warm", f["samples_per_s_cached"]),
            ("samples/s, encoder run every step", f["samples_per_s_uncached"]),
            ("speed-up from the cache", f["speedup_cached"]),
            (f"s per epoch ({s['examples_per_epoch']} examples), cached", f["epoch_s_cached"]),
            ("s per epoch, encoder every step", f["epoch_s_uncached"]),
            ("encoder share of an uncached step (s)", f["cold_encoder_median_s"]),
            ("one-off cache build (s)", f["cache_build_s"]),
            ("LLM fwd+bwd GFLOP/s (counted)", f["llm"]["flops_per_s_counted"] / giga),
            ("LLM fwd+bwd GFLOP/s (6 x N x tokens)", f["llm"]["flops_per_s_6nd"] / giga),
            ("fp32 matmul GFLOP/s (peak probe)", f["matmul"]["best_flops_per_s"] / giga),
            ("LLM fraction of matmul peak (counted)", f["llm_fraction_of_matmul"]),
            ("LLM fraction of matmul peak (6ND)", f["llm_fraction_of_matmul_6nd"]),
            ("whole step fraction of matmul peak", f["whole_step_fraction_of_matmul"]),
        ],
    )
    write_json(args.out, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
