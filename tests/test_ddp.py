"""Two CPU processes under `accelerate launch` (DDP over gloo) end with identical adapter weights."""

import copy
import json
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from speechllm.training.train import train
from test_train import tiny_run


@pytest.mark.parametrize(
    "chunked",
    [False, True],
    ids=["whole-batches", "chunks-and-accumulation"],
)
def test_two_process_ddp_keeps_ranks_identical(tiny_dirs, tmp_path, chunked):
    # Chunked: each micro-batch in length-sorted chunks (gradients synchronised once, after the
    # last chunk) and two micro-batches accumulated per step.
    extra = {"chunk_tokens": 40, "grad_accum": 2} if chunked else {}
    cfg = tiny_run(tiny_dirs, tmp_path, steps=4, **extra)
    cfg.train.eval_every = 0
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        # --multi_gpu selects the torchrun launcher; with no GPU accelerate runs DDP over gloo
        # on the CPU (--cpu would launch a single process).
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29533",
        "-m",
        "speechllm.cli",
        "train",
        str(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run/model/train_summary.json").read_text())
    assert summary["processes"] == 2
    first, second = summary["rank_weight_checksums"]
    assert first == second
    assert summary["steps"] == 4
    # And training did move the weights: a zero-step run of the same config (same seed, same
    # initialisation path) saves the weights both ranks started from.
    start = copy.deepcopy(cfg)
    start.train.max_steps = 0
    start.train.output_dir = str(tmp_path / "start")
    start.data.eval = []
    initial = load_file(str(train(start) / "model.safetensors"))
    trained = load_file(str(tmp_path / "run/model/model.safetensors"))
    assert trained.keys() == initial.keys()
    assert torch.equal(trained.pop("ctc.vocab"), initial.pop("ctc.vocab"))
    unmoved = [k for k in initial if torch.equal(trained[k], initial[k])]
    assert not unmoved, f"DDP training left these weights at their initial values: {unmoved}"
    fresh = json.loads((tmp_path / "start/model/train_summary.json").read_text())
    assert fresh["rank_weight_checksums"][0] != first
