"""Resumable training checkpoints: `<output_dir>/checkpoints/step-NNNNNNN/`.

Each holds the trained tensors (as a model folder does), optimizer and scheduler state and every
RNG's state, so a resumed run replays exactly. Written atomically (temp folder, then rename;
state.json last marks it complete), loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from speechllm.errors import CheckpointError
from speechllm.model.saving import load_trained_state
from speechllm.model.speechllm import SpeechLLM

CHECKPOINTS = "checkpoints"
"""Sub-folder of a run directory holding its checkpoints."""
TRAINED_FILE = "trainable.safetensors"
"""A checkpoint's trained tensors."""


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint (temp folders of a killed save are ignored)."""
    root = output_dir / CHECKPOINTS
    if not root.is_dir():
        return None
    done = sorted(
        p
        for p in root.glob("step-*")
        if p.is_dir() and (p / "state.json").is_file() and not p.name.endswith(".tmp")
    )
    return done[-1] if done else None


def save_checkpoint(
    output_dir: Path, model: SpeechLLM, optimizer, scheduler, step: int, elapsed: float, keep: int
) -> Path:
    """Write `<output_dir>/checkpoints/step-NNNNNNN` atomically (a temp folder, then a rename):
    trained tensors, optimizer and scheduler state, RNG states, step and elapsed time; keep the
    newest `keep` checkpoints."""
    root = output_dir / CHECKPOINTS
    final = root / f"step-{step:07d}"
    tmp = root / f"step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(model.trainable_state_dict(), str(tmp / TRAINED_FILE))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt"
    )
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    # Plain tensors and ints only, so the file loads with torch.load(weights_only=True).
    rng = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    torch.save(rng, tmp / "rng.pt")
    # state.json last: its presence marks the checkpoint complete.
    (tmp / "state.json").write_text(json.dumps({"step": step, "elapsed_s": elapsed}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(p for p in root.glob("step-*") if not p.name.endswith(".tmp"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: SpeechLLM, optimizer, scheduler) -> tuple[int, float]:
    """Restore a checkpoint into `model`, `optimizer` and `scheduler` and the RNGs; returns
    (step, elapsed seconds). Raises on a damaged file or another configuration's checkpoint
    (see `checkpoint_error` for what the user is told)."""
    # Strict: a checkpoint of another configuration is refused, not half-loaded.
    load_trained_state(model, load_file(str(path / TRAINED_FILE)), strict=True, where=path)
    optim = torch.load(path / "optim.pt", weights_only=True)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    name, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(rng["python"])
    meta = json.loads((path / "state.json").read_text())
    return int(meta["step"]), float(meta["elapsed_s"])


def checkpoint_error(ckpt: Path, exc: Exception) -> CheckpointError:
    """What to tell the user when `ckpt` cannot be resumed from: the folder, the reason and the
    way out (the previous complete checkpoint, or a fresh start)."""
    older = [
        p.name
        for p in sorted(ckpt.parent.glob("step-*"))
        if p < ckpt and p.is_dir() and (p / "state.json").is_file() and not p.name.endswith(".tmp")
    ]
    reason = (str(exc).strip().splitlines() or [""])[0][:160]
    if "weights_only" in reason or not reason:
        reason = type(exc).__name__
    then = (
        f"resume from the previous complete checkpoint, {older[-1]}"
        if older
        else "start again (there is no older checkpoint)"
    )
    return CheckpointError(
        f"{ckpt}: cannot resume from this checkpoint ({reason}); it is damaged or was written "
        f"by another configuration. Delete that folder to {then}, or train without --resume."
    )
