"""The one decoding path: encode clips, answer (clip, task) rows in batches, regroup per clip.

`encode_clips` (frames trimmed to each clip's length) and `answer` (every (clip, task) row decoded
in length-sorted batches, the answers parsed into one `Prediction` per clip) are what `speechllm
infer`, `speechllm evaluate`, the server, `speechllm experiment`, the demo and training's held-out
evaluation run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from speechllm.config import DECODE_BATCH
from speechllm.model.answers import Prediction, parse_answers
from speechllm.model.batch import collate_frames
from speechllm.model.encoder import SpeechEncoder
from speechllm.model.speechllm import SpeechLLM

ENCODE_BATCH = 8
"""Clips per encoder call by default."""


def encode_clips(
    encoder: SpeechEncoder,
    audios: Sequence[np.ndarray],
    batch_size: int = ENCODE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Encoder frames (T_i, C) of each clip (16 kHz mono samples), `batch_size` clips per call,
    each trimmed to its own length; order preserved.

    Batched encoding gives each clip the frames it gets alone (the encoder masks padding), so the
    batch size changes only the speed. Each clip's frames are a copy: they do not keep the whole
    batch's tensor alive.
    """
    out: list[torch.Tensor] = []
    for start in range(0, len(audios), batch_size):
        chunk = audios[start : start + batch_size]
        with torch.no_grad():
            frames, lengths = encoder(list(chunk))
        out.extend(f[: int(n)].clone() for f, n in zip(frames, lengths, strict=True))
        if progress:
            progress(len(chunk))
    return out


def encode_files(
    model: SpeechLLM,
    paths: Sequence[str],
    batch_size: int = ENCODE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Encoder frames (T_i, C) of each audio file (`encode_clips`), read `batch_size` at a time.

    Raises AudioError (naming the file) for a file that cannot be used.
    """
    from speechllm.data.audio import load_audio

    out: list[torch.Tensor] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        audios = [model.encoder.check(load_audio(p), p) for p in chunk]
        out += encode_clips(model.encoder, audios, batch_size, progress)
    return out


def answer(
    model: SpeechLLM,
    clips: Sequence[torch.Tensor],
    tasks: Sequence[str] | Sequence[Sequence[str]],
    batch_size: int = DECODE_BATCH,
    progress: Callable[[int], None] | None = None,
    ids: Sequence[str] | None = None,
    drafts: bool = True,
) -> list[Prediction]:
    """One `Prediction` per clip (frames (T_i, C)): every (clip, task) row decoded in batches
    (`decode`), the answers regrouped per clip and parsed.

    `tasks` is the task list of every clip, or one list per clip (a clip with none gets an empty
    prediction). `ids` name the predictions (default: none). `progress` counts rows; `drafts`
    as in `decode`.
    """
    per_clip: Sequence[Sequence[str]] = (
        [tasks] * len(clips) if not tasks or isinstance(tasks[0], str) else tasks  # type: ignore[list-item]
    )
    if len(per_clip) != len(clips):
        raise ValueError(f"{len(clips)} clips but {len(per_clip)} task lists")
    rows = [(i, t) for i, ts in enumerate(per_clip) for t in ts]
    texts = decode(
        model, [clips[i] for i, _ in rows], [t for _, t in rows], batch_size, progress, drafts
    )
    raw: list[dict[str, str]] = [{} for _ in clips]
    for (i, task), text in zip(rows, texts, strict=True):
        raw[i][task] = text
    names = ids if ids is not None else [""] * len(clips)
    return [parse_answers(r, id=name) for r, name in zip(raw, names, strict=True)]


def decode(
    model: SpeechLLM,
    frames: list[torch.Tensor],
    tasks: list[str],
    batch_size: int = DECODE_BATCH,
    progress: Callable[[int], None] | None = None,
    drafts: bool = True,
) -> list[str]:
    """Raw answers for (frames_i (T_i, C), task_i) pairs, batched; order preserved.

    On the whisper route each answer copies Whisper's reading as its transcript where the model
    says so (`copy_reading`), and with `drafts` each row's decoding checks the transcript tokens
    it reads as drafts, several per LLM call (`model/draft_decoding.py`: greedy's answers, fewer
    calls); `drafts=False` decodes one token per call.

    Items are sorted by length (of the frames, or of Whisper's reading on the whisper route,
    where the answer's length follows the transcript's) so each batch pads little and stops
    early; batched greedy decoding gives the same answers as one-by-one (left padding, masked
    attention, positions from the mask).
    """
    readings = _whisper_readings(model, frames, batch_size) if model.reader is not None else None
    if readings is not None:
        order = sorted(range(len(frames)), key=lambda i: len(readings[id(frames[i])]))
    else:
        order = sorted(range(len(frames)), key=lambda i: frames[i].shape[0])
    answers: list[str] = [""] * len(frames)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if readings is not None:
            texts = [readings[id(frames[i])] for i in idx]
            outs = model.generate_from(
                *model.text_speech(texts), [tasks[i] for i in idx], None, texts, drafts
            )
        else:
            x, lengths = collate_frames([frames[i] for i in idx])
            outs = model.generate(x, lengths, [tasks[i] for i in idx])
        for i, out in zip(idx, outs, strict=True):
            answers[i] = out
        if progress:
            progress(len(idx))
    return answers


def _whisper_readings(
    model: SpeechLLM, frames: list[torch.Tensor], batch_size: int
) -> dict[int, str]:
    """Whisper's transcript of each distinct clip among `frames` (keyed by the tensor's id): a
    clip asked for several tasks is read once, not once per task."""
    assert model.reader is not None
    unique = list({id(f): f for f in frames}.values())
    out: dict[int, str] = {}
    for start in range(0, len(unique), batch_size):
        chunk = unique[start : start + batch_size]
        x, lengths = collate_frames(chunk)
        out.update(zip((id(f) for f in chunk), model.reader.read(x, lengths), strict=True))
    return out
