"""The `whisper` speech input run by CTranslate2 at inference (the runtime faster-whisper uses).

The `whisper` route's encoder and reader are frozen Whisper; at inference nothing needs their
gradients, so they can run in CTranslate2's C++ runtime instead of transformers, float32 (the same
transcripts as transformers' greedy decoding; int8 was slower on this CPU's encoder and changed
transcripts). Each clip is read in a window of its length plus at least 6 s (`window_frames`)
instead of Whisper's 30 s: the encoder's cost follows the window, and the benchmark's clips last
6.5 s on average. Measured on 80 clips of training speech, one thread: encoder + reader 2.8x less
CPU time than transformers in 30 s windows, WER 5.31 against 5.54 (docs/recipe.md). Training
keeps the transformers modules (the feature cache and the readings cached for training).

`use_ctranslate2(model)` swaps a loaded model's encoder and reader for `CT2SpeechEncoder` and
`CT2WhisperReader`, which keep the interfaces (and the transformers modules, for their configs)
of `SpeechEncoder` and `WhisperReader`. The checkpoint is converted once, with CTranslate2's own
converter, into the speechllm cache (`<cache>/ct2/`), written atomically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from speechllm.data.audio import SAMPLE_RATE, WHISPER_WINDOW_SECONDS
from speechllm.data.normalize import normalize_transcript
from speechllm.errors import ModelSourceError
from speechllm.hub.cache import cache_root
from speechllm.model.encoder import SpeechEncoder
from speechllm.model.whisper_reader import WhisperReader

if TYPE_CHECKING:
    import ctranslate2
    from transformers import WhisperForConditionalGeneration

    from speechllm.model.speechllm import SpeechLLM

FRAMES_PER_SECOND = 50
"""Whisper's encoder frames per second of audio (1500 in the 30 s window)."""

COMPUTE_TYPE = "float32"
"""CTranslate2 weights' type: float32 reads exactly as transformers does; int8 measured slower on
this CPU's encoder and changed transcripts (module docstring)."""


def ctranslate2_available() -> bool:
    """Whether the CTranslate2 runtime is installed (a base dependency; absent in odd installs)."""
    return importlib.util.find_spec("ctranslate2") is not None


def converted_whisper(source: str, cache_dir: Path | str | None = None) -> Path:
    """A CTranslate2 copy of the transformers Whisper checkpoint `source` (local dir or hub id),
    converted on first use into `<cache>/ct2/<name>-<digest>` and reused after."""
    import ctranslate2

    path = Path(source)
    if path.is_dir():
        # Key on the weights' size and time too: a checkpoint rewritten in place is converted again.
        stamps = [
            f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
            for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
        ]
        key = f"{path.resolve()}|{'|'.join(stamps)}"
    else:
        key = source
    digest = hashlib.sha256(f"{key}|ct2-{ctranslate2.__version__}".encode()).hexdigest()[:16]
    out = cache_root(cache_dir) / "ct2" / f"{path.name or 'whisper'}-{digest}"
    if (out / "model.bin").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        ctranslate2.converters.TransformersConverter(source).convert(
            str(tmp), quantization=None, force=True
        )
        try:
            tmp.rename(out)
        except OSError:  # another process converted it meanwhile
            if not (out / "model.bin").is_file():
                raise
    except Exception as exc:
        raise ModelSourceError(
            f"cannot convert Whisper {source!r} for CTranslate2 ({exc}); --runtime torch runs "
            "without it"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _storage(x: torch.Tensor) -> ctranslate2.StorageView:
    import ctranslate2

    return ctranslate2.StorageView.from_array(
        np.ascontiguousarray(x.detach().float().cpu().numpy())
    )


WINDOW_PAD_S = 6.0
"""Seconds of silence after the speech in a shortened window (see `window_frames`)."""

WINDOW_STEP_S = 5.0
"""Windows come in steps of this many seconds, so a clip's window depends on its length alone."""

MIN_WINDOW_S = 10.0
"""The shortest window."""


def window_frames(n_samples: int) -> int:
    """Encoder frames (50 a second) of the window a clip of `n_samples` is read in.

    Whisper's encoder costs the same for a 3 s clip as for a 30 s one when every clip fills the
    30 s window, and the benchmark's clips last 6 s on average. A shorter window of the clip plus
    at least `WINDOW_PAD_S` of silence, rounded up to `WINDOW_STEP_S` (10 to 30 s), keeps the
    decoder from looping (on real-length frames it repeats the sentence; with 3-4 s of silence it
    still did on 5 of 162 clips, with 6 s on none) and halves the encoder's and reader's time.
    Chosen on 80 clips of the joint stage's training speech (not on the benchmark): Whisper tiny.en
    read them at WER 5.54 in 30 s windows and 5.31 in these (`docs/recipe.md`).
    """
    seconds = n_samples / SAMPLE_RATE + WINDOW_PAD_S
    steps = math.ceil(seconds / WINDOW_STEP_S) * WINDOW_STEP_S
    return int(min(WHISPER_WINDOW_SECONDS, max(MIN_WINDOW_S, steps)) * FRAMES_PER_SECOND)


class CT2SpeechEncoder(SpeechEncoder):
    """`SpeechEncoder(pad_to_window=True)` whose encoder runs in CTranslate2, each clip in the
    window `window_frames` gives it (all 30 s with `short_windows=False`: the same frames as
    transformers', within 5e-4)."""

    def __init__(
        self,
        encoder: SpeechEncoder,
        whisper: ctranslate2.models.Whisper,
        short_windows: bool = True,
    ) -> None:
        if not encoder.pad_to_window:
            raise ValueError("CTranslate2's Whisper encoder is for the whisper route's windows")
        super().__init__(encoder.encoder, encoder.feature_extractor, pad_to_window=True)
        self.ct2 = whisper
        self.short_windows = short_windows

    @torch.no_grad()
    def forward(self, audios: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms -> frames (B, T, C), zero beyond each clip's window, and the windows'
        lengths (B,) in frames; clips of one window length are encoded together."""
        mels = [self.mel(a) for a in audios]  # (n_mels, 3000) each: the whole window
        lengths = torch.tensor(
            [window_frames(len(a)) if self.short_windows else self.max_frames for a in audios]
        )
        frames = torch.zeros(len(audios), int(lengths.max()), self.dim)
        for n in lengths.unique().tolist():
            idx = (lengths == n).nonzero().flatten()
            x = torch.stack([mels[i][:, : 2 * n] for i in idx.tolist()])
            frames[idx, :n] = torch.from_numpy(np.array(self.ct2.encode(_storage(x))))
        return frames, lengths


LOOP_COMPRESSION_RATIO = 2.4
"""A transcript whose text gzips by more than this has looped (Whisper's own threshold)."""

MIN_LOOP_TOKENS = 4
"""The shortest block `collapse_loop` takes for a loop: shorter repeats ("wow wow wow") are
speech as often as not."""


def compression_ratio(text: str) -> float:
    """len(text) / len(gzip(text)) in bytes: about 1-2 for speech, far more for a loop."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def collapse_loop(ids: list[int], min_block: int = MIN_LOOP_TOKENS) -> list[int]:
    """`ids` with a looped tail (a block of at least `min_block` tokens repeated to the end, at
    least three times, the last copy maybe cut short) cut to one copy of the block; unchanged
    where there is none. In a short window Whisper's decoder sometimes repeats its sentence
    until the length limit ("dog should not be allowed to get cancer." x27 for a 2.3 s clip)."""
    n = len(ids)
    for block in range(min_block, n // 3 + 1):
        start = n - block  # walk back while the tail stays periodic with this block
        while start > 0 and ids[start - 1] == ids[start - 1 + block]:
            start -= 1
        if n - start >= 3 * block:
            return ids[: start + block]
    return ids


def decoder_prompt(whisper: WhisperForConditionalGeneration) -> list[int]:
    """The tokens transformers' greedy `generate` starts Whisper's decoder with, as `WhisperReader`
    calls it: start of transcript, then English and transcribe on a multilingual checkpoint, then
    no timestamps where the checkpoint has that token."""
    gen = whisper.generation_config
    prompt = [whisper.config.decoder_start_token_id]
    if getattr(gen, "is_multilingual", False):
        prompt += [gen.lang_to_id["<|en|>"], gen.task_to_id["transcribe"]]
    if getattr(gen, "no_timestamps_token_id", None) is not None:
        prompt.append(gen.no_timestamps_token_id)
    return prompt


class CT2WhisperReader(WhisperReader):
    """`WhisperReader` whose greedy decoding runs in CTranslate2 (same transcripts)."""

    def __init__(self, reader: WhisperReader, whisper: ctranslate2.models.Whisper) -> None:
        super().__init__(reader.whisper, reader.tokenizer)
        self.ct2 = whisper
        self.prompt = decoder_prompt(reader.whisper)
        # transformers suppresses the blank and end tokens at the first step only where the
        # checkpoint asks for it (`begin_suppress_tokens`); CTranslate2's switch for the same.
        self.suppress_blank = bool(reader.whisper.generation_config.begin_suppress_tokens)
        # transformers writes up to the decoder's positions less the prompt; CTranslate2's Whisper
        # writes up to half its `max_length` (measured: 31 tokens for 62, 62 for 124), Whisper's
        # own `sample_len` convention. Twice transformers' budget gives the same transcripts.
        self.max_length = 2 * (reader.whisper.config.max_target_positions - len(self.prompt))

    @torch.no_grad()
    def read(self, frames: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Greedy transcripts of encoder frames (B, T, C) in windows of `lengths` (B,) frames,
        normalised. Rows of one window length are decoded together, on their own frames only,
        so a clip's transcript does not depend on its batch."""
        texts = [""] * len(frames)
        for n in lengths.unique().tolist():
            idx = (lengths == n).nonzero().flatten().tolist()
            results = self.ct2.generate(
                _storage(frames[idx, :n]),
                [self.prompt] * len(idx),
                beam_size=1,
                suppress_blank=self.suppress_blank,
                max_length=self.max_length,
            )
            for i, r in zip(idx, results, strict=True):
                raw = self.tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True)
                if compression_ratio(raw) > LOOP_COMPRESSION_RATIO:
                    ids = collapse_loop(r.sequences_ids[0])
                    raw = self.tokenizer.decode(ids, skip_special_tokens=True)
                texts[i] = normalize_transcript(raw.strip())
        return texts


def use_ctranslate2(
    model: SpeechLLM,
    threads: int | None = None,
    short_windows: bool = True,
    cache_dir: Path | str | None = None,
) -> bool:
    """Run `model`'s Whisper encoder and reader in CTranslate2 (the `whisper` route only, for
    inference), in short windows (`window_frames`) unless `short_windows=False`. Returns whether
    it did: False for other routes, where CTranslate2 is not installed, or where the model already
    uses it. `threads` defaults to torch's thread count."""
    if model.reader is None or isinstance(model.reader, CT2WhisperReader):
        return False
    if not ctranslate2_available():
        return False
    import ctranslate2

    source = model.reader.whisper.config._name_or_path
    folder = converted_whisper(source, cache_dir)
    try:
        whisper = ctranslate2.models.Whisper(
            str(folder),
            device="cpu",
            compute_type=COMPUTE_TYPE,
            intra_threads=threads or torch.get_num_threads(),
        )
    except Exception as exc:  # CTranslate2 raises RuntimeError / ValueError of its own
        raise ModelSourceError(
            f"CTranslate2 cannot load the converted Whisper in {folder} ({exc}): delete that "
            "folder to convert it again, or choose --runtime torch"
        ) from exc
    model.encoder = CT2SpeechEncoder(model.encoder, whisper, short_windows)
    model.reader = CT2WhisperReader(model.reader, whisper)
    return True
