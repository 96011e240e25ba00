"""Training paths beside the plain loop, on tiny models: `train.init_from`, the `max_minutes`
stop, evaluation during a resumed run, gradient accumulation, batched decoding with LoRA."""

from __future__ import annotations

import copy
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from speechllm.config import LoraSettings, RunConfig
from speechllm.inference.decode import decode
from speechllm.training.checkpoints import CHECKPOINTS, latest_checkpoint
from speechllm.training.train import train
from test_kill_resume import assert_bitwise_equal
from test_model import make_model, waves
from test_train import read_log, tiny_run


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def variant(cfg: RunConfig, output_dir: Path, **train_fields: Any) -> RunConfig:
    """A copy of `cfg` writing to `output_dir`, with some `train` fields changed."""
    out = copy.deepcopy(cfg)
    out.train.output_dir = str(output_dir)
    for name, value in train_fields.items():
        setattr(out.train, name, value)
    return out


def moved(got: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> list[str]:
    """The trained tensors of `got` that differ from `start` (the CTC vocabulary is no weight)."""
    assert got.keys() == start.keys()
    return [k for k in start if k != "ctc.vocab" and not torch.equal(got[k], start[k])]


def test_init_from_starts_from_the_source_runs_weights(tiny_dirs, tmp_path):
    cfg = tiny_run(tiny_dirs, tmp_path, steps=3, lora=True)
    cfg.data.eval = []  # the final evaluation does not touch the weights
    source = weights(train(cfg))
    assert any(k.startswith("adapter.") for k in source)
    assert any("lora_" in k for k in source)
    # Another seed: without init_from this run starts from other weights (checked below).
    fresh = weights(train(variant(cfg, tmp_path / "fresh", max_steps=0, seed=1)))
    assert moved(fresh, source) == [k for k in source if k != "ctc.vocab"]
    # Zero steps: the saved model is what the run started from. init_from names a run directory
    # (its model/ is read) or a model directory.
    for i, where in enumerate([tmp_path / "run", tmp_path / "run" / "model"]):
        run = variant(cfg, tmp_path / f"init{i}", max_steps=0, seed=1, init_from=str(where))
        assert_bitwise_equal(weights(train(run)), source)


def test_max_minutes_stops_after_the_first_step_and_saves(tiny_dirs, tmp_path):
    cfg = tiny_run(tiny_dirs, tmp_path, steps=30, max_minutes=0.0001)  # 6 ms: one step
    cfg.data.eval = []
    out = io.StringIO()
    model_dir = train(cfg, console=Console(file=out, width=200))
    assert "stopping at step 1: max_minutes=0.0001 reached" in out.getvalue()
    assert json.loads((model_dir / "train_summary.json").read_text())["steps"] == 1
    run = tmp_path / "run"
    ckpt = latest_checkpoint(run)
    assert [p.name for p in (run / CHECKPOINTS).iterdir()] == ["step-0000001"] == [ckpt.name]
    assert_bitwise_equal(weights(model_dir), load_file(str(ckpt / "trainable.safetensors")))
    # The stop's checkpoint is a resume point like any other: the run goes on to max_steps and
    # ends where an uninterrupted run does (step 1's learning rate is the warm-up's, whatever
    # max_steps is).
    go_on = variant(cfg, run, max_steps=3, max_minutes=None)
    got = weights(train(go_on, resume=True, console=Console(file=out, width=200)))
    assert "(step 1)" in out.getvalue()
    assert json.loads((model_dir / "train_summary.json").read_text())["steps"] == 3
    assert_bitwise_equal(got, weights(train(variant(go_on, tmp_path / "whole"))))


def test_evaluation_during_a_resumed_run_keeps_the_weights_exact(tiny_dirs, tmp_path):
    cfg = tiny_run(tiny_dirs, tmp_path, steps=12, lora=True, keep_checkpoints=10)
    cfg.train.eval_every = 3
    cfg.model.lora.dropout = 0.1  # training draws random numbers: the RNG state must resume too
    cfg.data.max_eval_utterances = 2
    want = weights(train(cfg))
    evals = [r["step"] for r in read_log(tmp_path / "run") if r.get("eval")]
    assert {3, 6, 9, 12} <= set(evals)
    # Evaluating does not change training: a run without it ends with the same weights.
    assert_bitwise_equal(weights(train(variant(cfg, tmp_path / "no-eval", eval_every=0))), want)
    # A run killed after step 5 (between the evaluations at 3 and 6), resumed.
    part = tmp_path / "part"
    ckpt = tmp_path / "run" / CHECKPOINTS / "step-0000005"
    shutil.copytree(ckpt, part / CHECKPOINTS / ckpt.name)
    assert_bitwise_equal(weights(train(variant(cfg, part), resume=True)), want)
    log = read_log(part)
    assert min(r["step"] for r in log) > 5
    assert {6, 9, 12} <= {r["step"] for r in log if r.get("eval")}


def test_gradient_accumulation_trains_one_update_per_step(tiny_dirs, tmp_path):
    # Each step averages the gradients of grad_accum micro-batches of batch_size examples, each
    # micro-batch drawn with its own task mix: not the same update as one batch of
    # grad_accum x batch_size (those examples differ), so only its own properties are checked.
    cfg = tiny_run(tiny_dirs, tmp_path, steps=4, grad_accum=2)
    cfg.train.batch_size, cfg.train.log_every, cfg.train.save_every = 2, 1, 2
    cfg.data.eval = []
    trained = weights(train(cfg))
    log = [r for r in read_log(tmp_path / "run") if "loss" in r]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(math.isfinite(r[k]) for r in log for k in ("loss", "lm_loss", "ctc_loss")), log
    start = weights(train(variant(cfg, tmp_path / "start", max_steps=0)))
    assert moved(trained, start) == [k for k in start if k != "ctc.vocab"]
    # One optimiser update per step, not one per micro-batch.
    optim = torch.load(latest_checkpoint(tmp_path / "run") / "optim.pt", weights_only=True)
    assert {int(s["step"]) for s in optim["optimizer"]["state"].values()} == {4}
    # Resuming from step 2 replays the same micro-batches and accumulation boundaries.
    part = tmp_path / "part"
    ckpt = tmp_path / "run" / CHECKPOINTS / "step-0000002"
    shutil.copytree(ckpt, part / CHECKPOINTS / ckpt.name)
    assert_bitwise_equal(weights(train(variant(cfg, part), resume=True)), trained)


def test_batched_decoding_equals_one_by_one_with_lora(tiny_dirs):
    m = make_model(
        tiny_dirs, lora=LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0), max_new_tokens=12
    )
    with torch.no_grad():  # LoRA's B starts at zero: give LoRA a say in the answers
        for name, p in m.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p) * 0.5)
    frames, lengths = m.encoder(waves(0.5, 1.7, 1.1, 0.9, 1.3))
    clips = [f[: int(n)] for f, n in zip(frames, lengths, strict=True)]
    tasks = ["asr", "ner", "sa", "asr", "ner"]
    batched = decode(m, clips, tasks, batch_size=len(clips))
    assert batched == decode(m, clips, tasks, batch_size=1)
    assert any(batched)  # random weights still emit tokens
    with m.llm.disable_adapter():
        assert decode(m, clips, tasks, batch_size=1) != batched  # LoRA changed the answers


def test_training_evaluation_and_cli_evaluate_give_the_same_figures(tiny_dirs, tmp_path):
    """One scorer: the held-out figures training logs are those `speechllm evaluate` prints for
    the same manifest and weights."""
    from typer.testing import CliRunner

    from speechllm.cli import app
    from speechllm.data.manifest import read_manifest, write_manifest

    config = tiny_run(tiny_dirs, tmp_path, steps=2)
    held_out = tmp_path / "held-out.jsonl"
    write_manifest(held_out, read_manifest(config.data.eval[0], require_audio=True)[:4])
    config.data.eval = [str(held_out)]
    train(config)
    run = Path(config.train.output_dir)
    logged = [r for r in read_log(run) if r.get("eval")][-1]
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(run),
            "--manifest",
            str(held_out),
            "--out",
            str(tmp_path / "ev"),
            "--tasks",
            "asr,ner,sa",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    keys = [k for k in ("wer", "ner_f1", "ner_label_f1", "sa_macro_f1", "ctc_wer") if k in printed]
    assert {"wer", "ctc_wer"} <= set(keys)
    for key in keys:
        assert logged[key] == pytest.approx(printed[key], abs=1e-3), key
