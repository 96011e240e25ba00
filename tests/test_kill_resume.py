"""Checkpoint safety: a run killed at random moments and resumed ends bitwise where an
uninterrupted one does; half-written checkpoints are never loaded; a damaged one is a clear error.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from speechllm.cli import app
from speechllm.config import RunConfig
from speechllm.errors import CheckpointError
from speechllm.training.checkpoints import CHECKPOINTS, latest_checkpoint
from speechllm.training.train import train
from test_train import tiny_run

# The CLI entry point installed beside the interpreter running the tests (the venv's).
SPEECHLLM = Path(sys.executable).with_name("speechllm")
# The thread count of the in-process reference run: another count may change float reductions.
ENV = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
KILLS = 3


def assert_bitwise_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        a, b = got[name].contiguous().reshape(-1), want[name].contiguous().reshape(-1)
        assert (a.dtype, got[name].shape) == (b.dtype, want[name].shape), name
        # Compare the bytes, not the values: -0.0 vs 0.0 or a NaN payload would differ too.
        assert torch.equal(a.view(torch.uint8), b.view(torch.uint8)), name


def newest_step(run: Path) -> int:
    """Step of the newest complete checkpoint (0: none), read while the trainer may be writing."""
    try:
        ckpt = latest_checkpoint(run)
    except OSError:  # a folder renamed or deleted under the scan: ask again next poll
        return -1
    return int(ckpt.name.split("-")[1]) if ckpt else 0


def write_config(cfg: RunConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def cli(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(SPEECHLLM), "train", str(config), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )


def run_config(tiny_dirs: tuple[Path, Path], root: Path, steps: int) -> RunConfig:
    cfg = tiny_run(tiny_dirs, root, steps=steps)
    cfg.train.save_every = 1
    cfg.train.log_every = 1
    cfg.data.eval = []  # the final evaluation does not touch the weights: skip its decoding time
    return cfg


# e2e: every start of the CLI imports torch, transformers and accelerate again (~10 s of CPU
# each, four starts), which is more than the fast suite can afford.
@pytest.mark.e2e
def test_killed_and_resumed_cli_run_equals_an_uninterrupted_one(tiny_dirs, tmp_path):
    assert SPEECHLLM.is_file(), (
        f"{SPEECHLLM} is missing: `make venv` installs it (pip install -e .)"
    )
    steps = 60
    cfg = run_config(tiny_dirs, tmp_path, steps)
    want_run = tmp_path / "want"
    cfg.train.output_dir = str(want_run)
    # The uninterrupted run (in process: one CLI start less) also fills the shared feature
    # cache, so the killed runs spend their time in steps and checkpoint writes, where the kills
    # should land.
    train(cfg)
    # Seconds per step (and save) here: the kills land within a few steps of a new checkpoint, so
    # the run cannot finish before they all landed however fast this machine is.
    log_rows = (want_run / "metrics.jsonl").read_text().splitlines()
    step_s = 60 * json.loads(log_rows[-1])["minutes"] / steps
    got_run = tmp_path / "got"
    cfg.train.output_dir = str(got_run)
    got_cfg = write_config(cfg, tmp_path / "got.yaml")
    log = tmp_path / "train.log"

    rng = random.Random(20240605)
    kills: list[int] = []  # newest complete step seen right before each kill
    resume: tuple[str, ...] = ()
    for _attempt in range(KILLS + 5):
        before = max(0, newest_step(got_run))
        proc = cli(got_cfg, *resume, log=log)
        resume = ("--resume",)
        if len(kills) < KILLS:
            deadline = time.monotonic() + 300
            # Progress first: wait for a checkpoint newer than the one this attempt resumed from.
            while proc.poll() is None and newest_step(got_run) <= before:
                assert time.monotonic() < deadline, "no new checkpoint within 300 s"
                time.sleep(0.002)
            # Then a random moment: mid-step, mid-save, between the rename and the pruning...
            time.sleep(rng.uniform(0.0, 3 * step_s))
            if proc.poll() is None:
                proc.kill()
                assert proc.wait(timeout=60) == -9
                kills.append(newest_step(got_run))
                continue
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
        break
    else:
        pytest.fail(f"the run did not finish after {kills} kills")

    assert len(kills) >= 3, f"the run finished before 3 kills landed (kills at steps {kills})"
    assert all(0 < k <= steps for k in kills) and kills == sorted(set(kills)), kills
    assert "resumed from" in log.read_text()
    assert_bitwise_equal(
        load_file(str(got_run / "model/model.safetensors")),
        load_file(str(want_run / "model/model.safetensors")),
    )


@pytest.fixture
def reference_and_run(tiny_dirs, tmp_path) -> tuple[RunConfig, dict[str, torch.Tensor], Path]:
    """(config, final weights of its uninterrupted run, a finished copy of it with every
    checkpoint kept and the final model removed: a run "killed" after its last save)."""
    cfg = tiny_run(tiny_dirs, tmp_path, steps=8)
    cfg.train.save_every = 2
    cfg.train.keep_checkpoints = 10
    cfg.data.eval = []
    train(cfg)
    run = Path(cfg.train.output_dir)
    want = load_file(str(run / "model/model.safetensors"))
    shutil.rmtree(run / "model")
    return cfg, want, run


def test_half_written_checkpoints_are_never_loaded(reference_and_run):
    cfg, want, run = reference_and_run
    root = run / CHECKPOINTS
    shutil.rmtree(root / "step-0000008")
    shutil.rmtree(root / "step-0000006")
    four = root / "step-0000004"
    # A save killed after its last file but before the rename: complete contents, .tmp name.
    shutil.copytree(four, root / "step-0000008.tmp")
    (root / "step-0000008.tmp" / "state.json").write_text('{"step": 8, "elapsed_s": 0}')
    # A save killed mid-write: weights cut short, no completion marker.
    shutil.copytree(four, root / "step-0000006.tmp")
    (root / "step-0000006.tmp" / "state.json").unlink()
    weights = root / "step-0000006.tmp" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    # A checkpoint folder whose deletion was killed half way: its marker is gone first or not;
    # here the marker is gone, so the folder is incomplete and must be passed over.
    shutil.copytree(four, root / "step-0000007")
    (root / "step-0000007" / "state.json").unlink()

    assert latest_checkpoint(run) == four
    train(cfg, resume=True)
    assert_bitwise_equal(load_file(str(run / "model/model.safetensors")), want)


# torch warns about the "pickle protocol" of the garbage optim.pt before refusing it.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    ("victim", "damage"),
    [
        ("trainable.safetensors", "truncate"),
        ("optim.pt", "garbage"),
        ("rng.pt", "empty"),
        ("state.json", "garbage"),
    ],
)
def test_a_damaged_newest_checkpoint_is_a_clear_error(reference_and_run, tmp_path, victim, damage):
    cfg, want, run = reference_and_run
    newest = run / CHECKPOINTS / "step-0000008"
    path = newest / victim
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x80junk{", "empty": b""}[damage]
    )

    with pytest.raises(CheckpointError) as info:
        train(cfg, resume=True)
    message = str(info.value)
    assert str(newest) in message and "step-0000006" in message, message
    # torch's own message for a bad pickle advises weights_only=False: never pass that on.
    assert "weights_only" not in message
    assert not (run / "model").exists()

    # The CLI says the same in one line, without a traceback.
    config = write_config(cfg, tmp_path / "cfg.yaml")
    result = CliRunner().invoke(app, ["train", str(config), "--resume"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "cannot resume" in result.output

    # Doing what the message says (delete it) resumes from the previous complete checkpoint
    # and loses nothing: the final weights are those of the uninterrupted run.
    shutil.rmtree(newest)
    train(cfg, resume=True)
    assert_bitwise_equal(load_file(str(run / "model/model.safetensors")), want)
