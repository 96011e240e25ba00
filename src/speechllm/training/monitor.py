"""What a training run reports about itself: held-out figures during training, and the ranks'
weight checksums at its end (DDP must keep every rank's weights equal)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from accelerate import Accelerator
from rich.console import Console

from speechllm.data.manifest import Utterance
from speechllm.inference.decode import encode_files
from speechllm.inference.evaluate import evaluate
from speechllm.model.speechllm import SpeechLLM


def rank_checksums(accelerator: Accelerator, model: SpeechLLM) -> list[list[float]]:
    """(sum, sum of squares) of the trained weights on every rank: DDP must keep them equal."""
    state = model.trainable_state_dict()
    local = torch.tensor(
        [
            [
                sum(float(v.double().sum()) for v in state.values()),
                sum(float(v.double().pow(2).sum()) for v in state.values()),
            ]
        ],
        dtype=torch.float64,
    )
    return accelerator.gather(local).tolist()


def evaluate_held_out(
    accelerator: Accelerator,
    model: SpeechLLM,
    utts: list[Utterance],
    tasks: list[str],
    step: int,
    minutes: float,
    log: Callable[[dict[str, Any]], None],
    console: Console,
    frames: list[torch.Tensor],
) -> dict[str, Any]:
    """Held-out figures, logged: the function `speechllm evaluate` runs, on the clips' audio
    (not the fp16 feature cache), so the same manifest and weights give the same figures.
    `frames` holds the clips' encoder frames: encoded at the first evaluation and reused after
    (the encoder is frozen, so they never change)."""
    if not accelerator.is_main_process:
        return {}
    model.eval()
    if not frames:
        frames.extend(encode_files(model, [u.audio or "" for u in utts]))
    metrics, _ = evaluate(model, utts, tasks, frames=frames)
    record = {
        "eval": True,
        "step": step,
        "minutes": round(minutes, 3),
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in metrics.items()},
    }
    log(record)
    console.print(
        f"[bold green]eval[/] step {step}: "
        + ", ".join(f"{k} {v}" for k, v in record.items() if k not in ("eval", "step"))
    )
    model.train()
    return metrics
