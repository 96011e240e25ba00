"""`speechllm train CONFIG.yaml`: one readable training loop over declared components.

Runs under HF accelerate, so `accelerate launch --num_processes N -m speechllm.cli train ...` gives
DDP unchanged. The frozen encoder's outputs are cached on disk first; each step then draws a
task-mixed batch (a pure function of seed and step, so `--resume` replays exactly), runs the LLM
under autocast, and updates only the adapter (and LoRA, heads). What the steps read is built in
`batches.py`; resumable checkpoints are `checkpoints.py`'s.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from speechllm.config import RunConfig
from speechllm.errors import ConfigError
from speechllm.hub.shipped import resolve_model
from speechllm.model.ctc import ctc_vocabulary
from speechllm.model.saving import write_model_dir
from speechllm.model.speechllm import SpeechLLM
from speechllm.training.batches import (
    build_cache,
    load_utterances,
    make_batch,
    on_readings,
    usable_readings,
    whisper_readings,
)
from speechllm.training.checkpoints import (
    checkpoint_error,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from speechllm.training.chunks import backward_in_chunks, chunk_examples
from speechllm.training.features import FeatureCache
from speechllm.training.monitor import evaluate_held_out, rank_checksums
from speechllm.training.sampler import TaskMixSampler, examples_for


def lr_lambda(config: RunConfig):
    """Linear warm-up, then cosine decay to 10% of the peak at max_steps."""
    warm, total = max(1, config.train.warmup_steps), max(1, config.train.max_steps)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _finished(summary: Path, run: RunConfig) -> bool:
    """Whether a stage's saved run is complete under `run`'s limits: it wrote its summary, and
    it reached `max_steps` or stopped for time under a `max_minutes` no lower than `run`'s. A
    stage goes on from its last checkpoint once its `max_minutes` or `max_steps` is raised
    (summaries written before the limits were recorded count as complete)."""
    if not summary.is_file():
        return False
    record = json.loads(summary.read_text())
    tc = run.train
    if record.get("steps", 0) >= tc.max_steps or "max_minutes" not in record:
        return True
    before = record["max_minutes"]
    if before is not None and record["steps"] < record["max_steps"]:  # it stopped for time
        return tc.max_minutes is not None and tc.max_minutes <= before
    return False  # max_steps was raised


def train(config: RunConfig, resume: bool = False, console: Console | None = None) -> Path:
    """Train per `config`: its stages in order, or one `joint` run when it declares none.

    Returns the final model directory (`<output_dir>/model`). Each stage is a run of its own in
    `<output_dir>/stages/<NN>-<name>` initialised from the stage before; with `resume`, stages
    already finished are skipped and the one in progress continues from its last checkpoint.
    """
    console = console or Console(stderr=True)
    config.validate()
    if not config.stages:
        return _run(config, "joint", None, resume, console)
    final = None
    for i, stage in enumerate(config.stages):
        run = config.for_stage(i)  # initialised from the stage before
        done = Path(run.train.output_dir) / "model" / "train_summary.json"
        if resume and _finished(done, run):
            console.print(f"[bold]stage {i} ({stage.name})[/]: finished earlier, skipped")
        else:
            console.print(f"[bold]stage {i} ({stage.name}, {stage.kind})[/]")
            _run(
                run,
                stage.kind,
                {"index": i, "name": stage.name, "kind": stage.kind},
                resume,
                console,
            )
        final = Path(run.train.output_dir) / "model"
    out = Path(config.train.output_dir) / "model"
    from accelerate import PartialState

    # Under `accelerate launch`, one process copies; the others wait for it.
    state = PartialState()
    if final is not None and state.is_main_process and Path(config.train.output_dir).is_dir():
        tmp = out.with_name("model.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(final, tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        (Path(config.train.output_dir) / "config.json").write_text(
            json.dumps(config.to_dict(), indent=2) + "\n"
        )
    state.wait_for_everyone()
    return out


def _run(
    config: RunConfig,
    kind: str,
    stage: dict[str, Any] | None,
    resume: bool,
    console: Console,
) -> Path:
    """One training run of `kind` (acoustic, text or joint); see `train`."""
    tc, dc = config.train, config.data
    cls_weight = tc.classifier_regularizer.weight
    whisper = config.model.speech_input == "whisper"
    accelerator = Accelerator(
        # Without a GPU, processes started by `accelerate launch --multi_gpu` (torchrun) then run
        # DDP over gloo on the CPU instead of falling back to independent single processes.
        cpu=not torch.cuda.is_available(),
        mixed_precision="bf16" if tc.precision == "bf16" else "no",
        gradient_accumulation_steps=tc.grad_accum,
        # The CTC blank is unused when ctc_weight = 0; DDP must tolerate that.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    main = accelerator.is_main_process
    out = Path(tc.output_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    torch.manual_seed(tc.seed)
    random.seed(tc.seed)
    np.random.seed(tc.seed)

    model = SpeechLLM.from_config(config.model)
    if tc.init_from:
        # What both models have: a stage's new heads or LoRA start fresh.
        model.load_trained(resolve_model(tc.init_from), strict=False)
    train_utts = load_utterances(dc.train, dc.max_seconds, require_audio=kind != "text")
    eval_utts = load_utterances(dc.eval, dc.max_seconds)[: dc.max_eval_utterances]
    eval_frames: list[torch.Tensor] = []  # encoded at the first evaluation (`evaluate_held_out`)
    if config.model.ctc_vocab != "all" and not whisper:
        # Every rank reads the same manifests, so every rank builds the same vocabulary.
        transcripts = (model.transcript_ids(u.text) for u in train_utts if u.text)
        known = model.ctc.vocab.tolist()
        vocab = ctc_vocabulary(config.model.ctc_vocab, model.tokenizer, transcripts, known)
        model.ctc.set_vocab(vocab or [])

    cache = FeatureCache(model.encoder, tc.feature_cache)
    audio = [u.audio for u in eval_utts] + ([u.audio for u in train_utts] if kind != "text" else [])
    build_cache(cache, audio, accelerator, console)
    # What the batches read: frames (acoustic, and joint on the adapter routes), or text: the
    # transcripts themselves (text), Whisper's readings of the audio (joint, whisper route).
    batch_cache = cache if kind != "text" and not whisper else None
    readings = (
        whisper_readings(model, cache, train_utts, out, console)
        if kind == "joint" and whisper
        else None
    )
    if readings is not None and tc.max_reading_wer is not None:
        train_utts, dropped = usable_readings(train_utts, readings, tc.max_reading_wer)
        if not train_utts:
            raise ConfigError(
                f"every one of the {len(dropped)} clips' Whisper readings is over "
                f"{tc.max_reading_wer:.0%} WER from its transcript: check the audio, or raise "
                "train.max_reading_wer (null keeps every clip)"
            )
        if dropped and main:
            console.print(
                f"{len(dropped)} clips left out: Whisper's reading is over "
                f"{tc.max_reading_wer:.0%} WER from the transcript (train.max_reading_wer), "
                f"e.g. {dropped[0].id}"
            )
    reading = tc.joint_answers == "reading" and readings is not None
    taught = on_readings(train_utts, readings or {}) if reading else train_utts
    examples = examples_for(taught, dc.tasks, tc.synthetic_sentiment_loss, tc.sentiment_loss)
    if main:
        counts = {t: len(v) for t, v in examples.items()}
        console.print(
            f"[bold]train[/] {len(train_utts)} utterances, examples per task {counts}; eval {len(eval_utts)}"
        )

    params = [p for p in model.parameters() if p.requires_grad]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    groups = [{"params": rest, "lr": tc.lr}]
    if lora:
        groups.append({"params": lora, "lr": tc.lora_lr if tc.lora_lr is not None else tc.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    start_step, elapsed0 = 0, 0.0
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        try:
            start_step, elapsed0 = load_checkpoint(ckpt, model, optimizer, scheduler)
        except Exception as exc:
            # A damaged file (disk fault, a copy cut short) or a checkpoint of another config:
            # say which folder and what to do instead of a library traceback (torch's own message
            # for a bad optim.pt even suggests weights_only=False, which runs code from the file).
            raise checkpoint_error(ckpt, exc) from exc
        if main:
            console.print(f"resumed from {ckpt} (step {start_step})")
    ddp_model, optimizer = accelerator.prepare(model, optimizer)
    sampler = TaskMixSampler(
        examples,
        dc.task_weights,
        tc.batch_size,
        tc.seed,
        accelerator.process_index,
        accelerator.num_processes,
    )
    # CTC-only warm-up steps draw from their own stream (their own batch size); both samplers
    # are pure functions of the step, so a resumed run replays the same batches.
    warmup_sampler = TaskMixSampler(
        examples,
        dc.task_weights,
        tc.ctc_warmup_batch_size or tc.batch_size,
        tc.seed + 1,
        accelerator.process_index,
        accelerator.num_processes,
    )
    log_path = out / "metrics.jsonl"

    def log(record: dict[str, Any]) -> None:
        if main:
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    t0 = time.monotonic() - elapsed0
    step = start_step
    running: dict[str, float] = {}
    # Micro-batches each loss was logged on: cls_loss (and ctc_loss) are absent from batches
    # without labels / steps without them, so each is averaged over the steps that had it.
    counts: dict[str, float] = {}
    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not main,
    )
    with progress:
        bar = progress.add_task("train", total=tc.max_steps, completed=step, info="")
        while step < tc.max_steps:
            ddp_model.train()
            lm = kind != "acoustic" and step >= tc.ctc_warmup_steps
            for micro in range(tc.grad_accum):
                source = sampler if lm else warmup_sampler
                drawn = source.batch(step * tc.grad_accum + micro)
                # CTC-only steps mask frames and, running no LLM, are not chunked.
                spec, budget = (None, tc.chunk_tokens) if lm else (tc.spec_augment, None)
                with accelerator.accumulate(ddp_model):
                    values = backward_in_chunks(
                        accelerator,
                        ddp_model,
                        chunk_examples(model, drawn, budget, batch_cache, readings),
                        partial(make_batch, cache=batch_cache, spec=spec, transcripts=readings),
                        lambda e: model.layout.scored_tokens(e.answer, e.unscored),
                        ctc_weight=tc.ctc_weight,
                        lm=lm,
                        cls_weight=cls_weight,
                        text_noise=tc.text_noise if kind == "text" else None,
                    )
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(params, tc.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad()
                for k, v in values.items():
                    running[k] = running.get(k, 0.0) + v / tc.grad_accum
                    counts[k] = counts.get(k, 0.0) + 1 / tc.grad_accum
            scheduler.step()
            step += 1
            minutes = (time.monotonic() - t0) / 60
            out_of_time = tc.max_minutes is not None and minutes >= tc.max_minutes
            if step % tc.log_every == 0 or step == tc.max_steps or out_of_time:
                record = {
                    "step": step,
                    "minutes": round(minutes, 3),
                    "lr": scheduler.get_last_lr()[0],
                }
                record.update({k: round(v / counts[k], 4) for k, v in running.items()})
                log(record)
                progress.update(bar, info=f"loss {record.get('loss', 0):.3f}")
                running, counts = {}, {}
            progress.update(bar, completed=step)
            # The last step is evaluated once, after the loop.
            last = step == tc.max_steps or out_of_time
            if (tc.eval_every and step % tc.eval_every == 0) and eval_utts and not last:
                # Before the LM loss has run the LLM has not learnt the answer formats: score
                # only the CTC head's transcripts then (and save the slow decoding).
                tasks = dc.tasks if step > tc.ctc_warmup_steps and kind != "acoustic" else []
                evaluate_held_out(
                    accelerator, model, eval_utts, tasks, step, minutes, log, console, eval_frames
                )
            if (step % tc.save_every == 0 or step == tc.max_steps or out_of_time) and main:
                save_checkpoint(
                    out,
                    model,
                    optimizer,
                    scheduler,
                    step,
                    time.monotonic() - t0,
                    tc.keep_checkpoints,
                )
            accelerator.wait_for_everyone()
            if out_of_time:
                if main:
                    console.print(f"stopping at step {step}: max_minutes={tc.max_minutes} reached")
                break
    minutes = (time.monotonic() - t0) / 60
    checksums = rank_checksums(accelerator, model)
    final_metrics = (
        evaluate_held_out(
            accelerator,
            model,
            eval_utts,
            dc.tasks if kind != "acoustic" else [],
            step,
            minutes,
            log,
            console,
            eval_frames,
        )
        if eval_utts
        else {}
    )
    if main:
        write_model_dir(
            out / "model", model.trainable_state_dict(), model.config.replace(stage=stage)
        )
        (out / "model" / "train_summary.json").write_text(
            json.dumps(
                {
                    "steps": step,
                    "minutes": round(minutes, 2),
                    # The limits it ran under: a resumed stage goes on if they were raised.
                    "max_steps": tc.max_steps,
                    "max_minutes": tc.max_minutes,
                    "train_utterances": len(train_utts),
                    "processes": accelerator.num_processes,
                    "stage": stage,
                    "rank_weight_checksums": checksums,
                    "eval": final_metrics,
                },
                indent=2,
            )
            + "\n"
        )
    accelerator.wait_for_everyone()
    return out / "model"
