"""On-disk cache of frozen-encoder outputs, keyed by audio content and encoder.

The encoder never trains, so each clip is encoded once; later epochs (and later runs with the same
encoder) read the frames back. Entries are safetensors files (fp16 frames, T x C), written
atomically, so a killed run never leaves a half entry.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from speechllm.data.audio import load_audio
from speechllm.hub.cache import cache_root, file_sha256
from speechllm.inference.decode import encode_clips
from speechllm.model.encoder import SpeechEncoder


def encoder_key(encoder: SpeechEncoder) -> str:
    """Identity of an encoder's function: its config plus a digest of its weights."""
    h = hashlib.sha256(encoder.encoder.config.to_json_string().encode())
    if encoder.pad_to_window:  # other frames for the same weights (and old keys unchanged)
        h.update(b"pad_to_window")
    for p in encoder.encoder.parameters():
        # Sampled digest (first values of each tensor): different checkpoints differ here.
        h.update(p.detach().flatten()[:64].float().numpy().tobytes())
    return h.hexdigest()[:16]


class FeatureCache:
    """Encoder frames for audio files: memory dict in front of a folder of safetensors files."""

    def __init__(self, encoder: SpeechEncoder, root: str | Path | None = None) -> None:
        self.encoder = encoder
        self.dir = Path(root or cache_root() / "features") / encoder_key(encoder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, torch.Tensor] = {}

    def _path(self, audio_path: str) -> Path:
        digest = file_sha256(audio_path)
        return self.dir / digest[:2] / f"{digest}.safetensors"

    def get(self, audio_path: str) -> torch.Tensor:
        """Frames (T, C) fp32 for one file, computing and storing them if absent."""
        if audio_path in self._memory:
            return self._memory[audio_path].float()
        self.build([audio_path])
        return self._memory[audio_path].float()

    def num_frames(self, audio_path: str) -> int:
        """T of `get(audio_path)`, without the fp32 copy."""
        if audio_path not in self._memory:
            self.build([audio_path])
        return int(self._memory[audio_path].shape[0])

    def build(
        self,
        audio_paths: Iterable[str],
        batch_size: int = 8,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Ensure every file's frames are cached (in memory and on disk)."""
        todo: list[tuple[str, Path]] = []
        for a in audio_paths:
            if a in self._memory:
                if progress:
                    progress(1)
                continue
            path = self._path(a)
            if path.is_file():
                self._memory[a] = load_file(str(path))["frames"]
                if progress:
                    progress(1)
            else:
                todo.append((a, path))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            audios = [self.encoder.check(load_audio(a), a) for a, _ in chunk]
            frames = encode_clips(self.encoder, audios, len(audios))
            for (a, path), f in zip(chunk, frames, strict=True):
                value = f.to(torch.float16).contiguous()
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
                os.close(fd)
                save_file({"frames": value}, tmp)
                os.replace(tmp, path)
                self._memory[a] = value
            if progress:
                progress(len(chunk))
