"""One micro-batch's forward and backward as length-sorted chunks whose gradients add up to the
whole batch's (`train.chunk_tokens`).

Why: a batch is padded to its longest example, and the LLM computes every padded position. In
the shipped recipe's text stage (batches of 16 drawn across tasks: `sa` examples average 52
tokens, `all` examples 93, a long SLUE sentence over 200) over 40% of the positions computed
were padding. Sorted by length and cut into chunks of similar length, the same examples need a
third fewer positions (a budget of 512), and only one chunk's activations are held at a time
(`benchmarks/chunked_steps.py`: peak memory 8.4 -> 2.9 GiB).

The LM loss is a mean over the batch's scored answer tokens, so a chunk's LM loss weighted by
its share of those tokens sums, over the chunks, to the batch's loss, and its gradient to the
batch's gradient (up to float rounding). The CTC loss is a mean over the examples that have a
transcript: a chunk's is weighted by its share of those. The classifier loss averages its heads
over differently labelled rows, so `train.chunk_tokens` is refused with it (`TrainConfig`).
CTC-only steps never run the LLM and are not chunked. Only the order in which random numbers are
drawn (text noise, dropout) differs from the unchunked step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from accelerate import Accelerator

from speechllm.model.speechllm import Batch, SpeechLLM
from speechllm.training.batches import speech_text
from speechllm.training.features import FeatureCache
from speechllm.training.sampler import Example


def example_positions(
    model: SpeechLLM, example: Example, speech_text: str | None, frames: int | None
) -> int:
    """LLM positions `example` takes in a batch row: prompt, speech and answer. The speech is
    `speech_text`'s tokens (text stages, the `whisper` route's readings) or the adapter's output
    length for `frames` encoder frames (for the `ctc` route an upper bound: the CTC head's
    collapsed output is shorter)."""
    pre, post = model.layout.prompt_ids[example.task]
    if speech_text is not None:
        speech = len(model.transcript_ids(speech_text)) if speech_text else 0
    else:
        speech = int(model.adapter.output_lengths(torch.tensor([frames or 0]))[0])
    return len(pre) + speech + len(post) + len(model.answer_ids(example.answer))


def plan_chunks(lengths: list[int], budget: int | None) -> list[list[int]]:
    """Indices of the examples, sorted by length and cut into chunks whose padded size (rows x
    longest row) stays within `budget`; a single example over it is a chunk of its own. None, or
    a batch within the budget: one chunk, the batch in its own order."""
    if budget is None or len(lengths) * max(lengths, default=0) <= budget:
        return [list(range(len(lengths)))]
    chunks: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        # Sorted ascending, so the newcomer is the chunk's longest row.
        if current and (len(current) + 1) * lengths[i] > budget:
            chunks.append(current)
            current = []
        current.append(i)
    chunks.append(current)
    return chunks


def backward_in_chunks(
    accelerator: Accelerator,
    ddp_model: torch.nn.Module,
    chunks: list[list[Example]],
    make_batch: Callable[[list[Example]], Batch],
    scored: Callable[[Example], int],
    **forward_kwargs: Any,
) -> dict[str, float]:
    """Forward and backward of each chunk (`plan_chunks`' groups of one micro-batch), weighted so
    the summed gradient is the micro-batch's; returns the micro-batch's loss values (each
    component weighted as it was in the backward). `scored(example)` counts its scored answer
    tokens (`PromptLayout.scored_tokens`)."""
    if len(chunks) == 1:
        # The whole batch at once: its own loss, untouched (bit-identical to an unchunked run).
        with accelerator.autocast():
            losses = ddp_model(make_batch(chunks[0]), **forward_kwargs)
        accelerator.backward(losses["loss"])
        return {k: float(v.detach()) for k, v in losses.items()}
    tokens = [sum(scored(e) for e in chunk) for chunk in chunks]
    # The CTC loss skips examples without a transcript (`SpeechLLM.ctc_loss`).
    transcribed = [sum(bool(e.utt.text) for e in chunk) for chunk in chunks]
    out: dict[str, float] = {}
    for i, chunk in enumerate(chunks):
        w_lm = tokens[i] / sum(tokens)
        w_ctc = transcribed[i] / max(1, sum(transcribed))
        # Gradients are synchronised across processes once, after the last chunk.
        sync = nullcontext() if i == len(chunks) - 1 else accelerator.no_sync(ddp_model)
        with sync:
            with accelerator.autocast():
                losses = ddp_model(make_batch(chunk), **forward_kwargs)
            if not set(losses) <= {"loss", "lm_loss", "ctc_loss"} or "lm_loss" not in losses:
                raise ValueError(
                    f"chunked steps weight the LM and CTC losses only; got {sorted(losses)}"
                )
            lm = losses["lm_loss"]
            loss = w_lm * lm + w_ctc * (losses["loss"] - lm)
            accelerator.backward(loss)
        out["lm_loss"] = out.get("lm_loss", 0.0) + w_lm * float(lm.detach())
        if "ctc_loss" in losses:
            out["ctc_loss"] = out.get("ctc_loss", 0.0) + w_ctc * float(losses["ctc_loss"].detach())
        out["loss"] = out.get("loss", 0.0) + float(loss.detach())
    return out


def chunk_examples(
    model: SpeechLLM,
    examples: list[Example],
    budget: int | None,
    cache: FeatureCache | None,
    readings: dict[str, str] | None,
) -> list[list[Example]]:
    """`examples` cut by `plan_chunks` (None: one chunk, as drawn), their speech as `make_batch`
    will give it: cached frames where there is a cache, else the readings or the texts."""
    if budget is None:
        return [examples]
    lengths = []
    for e in examples:
        if cache is not None:
            lengths.append(example_positions(model, e, None, cache.num_frames(e.utt.audio or "")))
        else:
            lengths.append(example_positions(model, e, speech_text(e, readings), None))
    return [[examples[i] for i in chunk] for chunk in plan_chunks(lengths, budget)]
