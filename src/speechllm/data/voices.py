"""Voices by name for `speechllm data synth --voice`, and which of them training may use.

A training set spoken by one voice teaches an acoustic model that voice (the CTC route read one
piper voice well and real speech at about 50% WER: docs/recipe.md). This module names more
voices, all from Debian packages that need no download at run time:

- `piper`: the packaged en-US joe voice (`tts.PiperVoice`; `tts.SeededPiperVoice` in `data synth`);
- `espeak:<accent>[+<variant>]`: espeak-ng's English accents (en-us, en-gb-scotland, en-029...)
  with its voice variants (m1..m7, f1..f5...); formant synthesis, very fast;
- `festival:<voice>`: festival's voices through its `text2wave` program (Debian main holds one
  English voice training may use, festvox-kdlpc16k's `ked`);
- `flite:<voice>`: CMU flite, reserved for evaluation.

**Reserved voices.** flite's voices and festival's slt and kal voices are kept for evaluation on
voices no training heard (../shared/README.md): `make_voice` refuses them unless `evaluation`
is set, and the training preset holds none of them (tests/test_voices.py checks both).

**Preset.** `training-voices` is the mix the 10-hour acoustic recipe speaks: piper (40% of the
utterances), espeak's 8 accents x 12 variants (45%, 96 voices) and festival's ked (15%); each
utterance's voice is a weighted draw from (seed, id), so it never depends on the order or the
number of utterances. A plain comma list of voices is taken in turn instead. `espeak:all` is
the 96 espeak voices. Every voice takes each utterance's seeded prosody draw (`tts.prosody`):
piper as it is; espeak maps `length_scale` to words per minute, `noise_scale` to pitch and
`noise_w` to the gap between words; festival maps them to duration stretch and the mean and
spread of its F0 target.
"""

from __future__ import annotations

import functools
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechllm.data.audio import SAMPLE_RATE
from speechllm.data.tts import PEAK, PiperVoice, SeededPiperVoice
from speechllm.errors import ConfigError, ModelSourceError

FLITE_VOICES = ("kal16", "awb", "rms", "slt")
"""CMU flite's English voices (Debian package `flite`): a diphone voice (kal16) and three
clustergen voices. Reserved for evaluation (../shared/README.md): a voice family no training
recipe of this project uses, for WER on voices the model never heard."""

ESPEAK_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
"""espeak-ng 1.51's English accents (`espeak-ng --voices=en`, mbrola voices left out: they need
the non-free mbrola program)."""

ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6))
"""espeak-ng's plain male and female variants (`espeak-ng --voices=variant`, files `!v/m1`...)."""

TRAINING_PRESET = "training-voices"
"""The name of the preset voice mix (`--voice training-voices`)."""

_PRESET_SHARES = {"piper": 0.40, "espeak": 0.45, "festival": 0.15}
PRESET_FESTIVAL = ("festival:ked",)

ESPEAK_APT = "apt-get install espeak-ng"
FESTIVAL_APT = "apt-get install festival festvox-kdlpc16k"


def is_reserved(name: str) -> bool:
    """Whether a voice name is reserved for evaluation: any flite voice, festival's kal and slt."""
    kind, _, voice = name.partition(":")
    if kind == "flite":
        return True
    return kind == "festival" and bool(re.search(r"kal|slt", voice.lower()))


def preset_voices() -> dict[str, float]:
    """The `training-voices` mix: voice name -> probability of speaking an utterance."""
    espeak = espeak_all()
    mix = {"piper": _PRESET_SHARES["piper"]}
    mix.update({v: _PRESET_SHARES["espeak"] / len(espeak) for v in espeak})
    mix.update({v: _PRESET_SHARES["festival"] / len(PRESET_FESTIVAL) for v in PRESET_FESTIVAL})
    return mix


def espeak_all() -> list[str]:
    """`espeak:all`: every accent with every variant."""
    return [f"espeak:{a}+{v}" for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]


def expand(spec: str) -> list[str]:
    """A `--voice` value -> voice names (`espeak:all` and `flite:all` expanded); the preset is
    `preset_voices`."""
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if item == "espeak:all":
            names.extend(espeak_all())
        elif item == "flite:all":
            names.extend(f"flite:{v}" for v in FLITE_VOICES)
        elif item == TRAINING_PRESET:
            names.extend(preset_voices())
        elif item:
            names.append(item)
    if not names:
        raise ConfigError(f"no voice named in {spec!r}")
    return names


def assign_voices(spec: str, ids: list[str], seed: int) -> list[str]:
    """The voice of each utterance: a weighted draw from (seed, id) for the preset alone, the
    voices in turn for a list."""
    if spec.strip() == TRAINING_PRESET:
        mix = preset_voices()
        names, weights = list(mix), list(mix.values())
        return [
            random.Random(f"speechllm-voice:{seed}:{i}").choices(names, weights)[0] for i in ids
        ]
    names = expand(spec)
    return [names[k % len(names)] for k in range(len(ids))]


def check_voices(names: list[str], evaluation: bool) -> None:
    """ConfigError for a reserved voice in a training set (`evaluation` False)."""
    reserved = sorted({n for n in names if is_reserved(n)})
    if reserved and not evaluation:
        raise ConfigError(
            f"voice(s) {', '.join(reserved)} are reserved for evaluation on voices no training "
            "heard (../shared/README.md); pass --evaluation to speak an evaluation set"
        )


def make_voice(name: str, *, evaluation: bool = False, seed: int | None = None):
    """A speaker by name (module docstring); reserved voices only with `evaluation`. With `seed`
    piper's noise is seeded per clip (`SeededPiperVoice`: the same clip whatever was spoken
    before, about 0.25 s more per clip); the other voices draw no noise of their own."""
    check_voices([name], evaluation)
    if name == "piper":
        return PiperVoice() if seed is None else SeededPiperVoice(seed)
    kind, _, voice = name.partition(":")
    if kind == "flite":
        return FliteVoice(voice or "slt")
    if kind == "espeak":
        return EspeakVoice(voice or "en-us")
    if kind == "festival":
        return FestivalVoice(voice or "ked")
    raise ModelSourceError(
        f"unknown voice {name!r}: use piper, espeak:<accent>[+<variant>] (accents "
        f"{', '.join(ESPEAK_ACCENTS)}), espeak:all, festival:<voice>, {TRAINING_PRESET}, or "
        f"for evaluation flite:<{'|'.join(FLITE_VOICES)}>"
    )


def _program(name: str, apt: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ModelSourceError(f"this voice needs the {name} program: {apt}")
    return path


def _to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono, peak-normalised to the piper voice's headroom, 16 kHz float32 in [-1, 1]."""
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak == 0:
        raise ValueError("nothing to speak: the program wrote silence")
    audio = audio * (PEAK / peak)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


def _run_to_wav(args: list[str], wav: Path) -> np.ndarray:
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    audio, rate = sf.read(wav, dtype="float32")
    return _to_16k(audio, rate)


class FliteVoice:
    """A CMU flite voice (the `flite` program) at 16 kHz, for evaluation only.

    flite has no prosody controls of piper's kind: `length_scale` maps to its
    `duration_stretch`, the noise settings are ignored."""

    def __init__(self, voice: str = "slt") -> None:
        self.program = _program("flite", "apt-get install flite")
        if voice not in FLITE_VOICES:
            raise ModelSourceError(f"unknown flite voice {voice!r}; choose one of {FLITE_VOICES}")
        self.voice = voice
        self.name = f"flite:{voice}"

    def synthesize(
        self,
        text: str,
        *,
        length_scale: float = 1.0,
        noise_scale: float = 0.0,
        noise_w: float = 0.0,
    ) -> np.ndarray:
        """Speak `text`; float32 mono in [-1, 1] at 16 kHz."""
        if not text.strip():
            raise ValueError("nothing to speak: the text is empty")
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "out.wav"
            stretch = f"duration_stretch={length_scale:.3f}"
            args = [self.program, "-voice", self.voice, "--setf", stretch, "-t", text, "-o"]
            return _run_to_wav([*args, str(wav)], wav)


@functools.cache
def _espeak_known() -> tuple[frozenset[str], frozenset[str]]:
    """(English accents, variant names) of the installed espeak-ng."""
    program = _program("espeak-ng", ESPEAK_APT)
    listing = subprocess.run(
        [program, "--voices=en"], check=True, capture_output=True, text=True
    ).stdout
    accents = {line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 3}
    accents = {a for a in accents if a.startswith("en")}
    version = subprocess.run([program, "--version"], capture_output=True, text=True).stdout
    data = re.search(r"Data at:\s*(\S+)", version)
    variants: set[str] = set()
    if data:
        variants = {p.name for p in (Path(data.group(1)) / "voices" / "!v").glob("*")}
    return frozenset(accents), frozenset(variants)


class EspeakVoice:
    """An espeak-ng English voice, `<accent>[+<variant>]` (e.g. `en-gb-scotland+f3`), at 16 kHz.

    Prosody: 175 / `length_scale` words per minute (espeak's default rate at 1.0), pitch
    50 + 100 * (`noise_scale` - 0.6) (0-99, piper's range 0.4-0.8 -> 30-70), and `noise_w` sets
    the pause between words (0-3 x 10 ms)."""

    def __init__(self, voice: str = "en-us") -> None:
        self.program = _program("espeak-ng", ESPEAK_APT)
        accent, _, variant = voice.partition("+")
        accents, variants = _espeak_known()
        if accent not in accents:
            raise ModelSourceError(
                f"unknown espeak-ng English accent {accent!r}; installed: {sorted(accents)}"
            )
        if variant and variant not in variants:
            raise ModelSourceError(
                f"unknown espeak-ng variant {variant!r}; e.g. {', '.join(ESPEAK_VARIANTS)}"
            )
        self.voice = voice
        self.name = f"espeak:{voice}"

    def synthesize(
        self,
        text: str,
        *,
        length_scale: float = 1.0,
        noise_scale: float = 0.6,
        noise_w: float = 0.8,
    ) -> np.ndarray:
        """Speak `text`; float32 mono in [-1, 1] at 16 kHz."""
        if not text.strip():
            raise ValueError("nothing to speak: the text is empty")
        wpm = round(175 / length_scale)
        pitch = min(99, max(0, round(50 + 100 * (noise_scale - 0.6))))
        gap = min(3, max(0, round(6 * (noise_w - 0.5))))
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "out.wav"
            args = [self.program, "-v", self.voice, "-s", str(wpm), "-p", str(pitch)]
            return _run_to_wav([*args, "-g", str(gap), "-w", str(wav), "--", text], wav)


class FestivalVoice:
    """A festival voice through `text2wave`, at 16 kHz: `ked` (festvox-kdlpc16k) or any
    installed voice's name (`ked_diphone`, short names match its prefix).

    Prosody: `length_scale` is festival's Duration_Stretch; `noise_scale` moves the F0 target's
    mean (0.4-0.8 -> 85-125 Hz) and `noise_w` its spread (0.5-1.0 -> 10-20 Hz)."""

    def __init__(self, voice: str = "ked") -> None:
        self.program = _program("text2wave", FESTIVAL_APT)
        installed = sorted(p.name for p in Path("/usr/share/festival/voices").glob("*/*"))
        match = [v for v in installed if v == voice or v.startswith(voice + "_")]
        if not match:
            raise ModelSourceError(
                f"festival voice {voice!r} is not installed (installed: {installed}); "
                f"{FESTIVAL_APT}"
            )
        self.voice = match[0]
        self.name = f"festival:{voice}"

    def synthesize(
        self,
        text: str,
        *,
        length_scale: float = 1.0,
        noise_scale: float = 0.6,
        noise_w: float = 0.8,
    ) -> np.ndarray:
        """Speak `text`; float32 mono in [-1, 1] at 16 kHz."""
        if not text.strip():
            raise ValueError("nothing to speak: the text is empty")
        mean = 105 + 100 * (noise_scale - 0.6)
        spread = 10 + 20 * (noise_w - 0.5)
        with tempfile.TemporaryDirectory() as tmp:
            wav, txt = Path(tmp) / "out.wav", Path(tmp) / "in.txt"
            txt.write_text(text + "\n", encoding="utf-8")
            evals = [
                f"(voice_{self.voice})",
                f"(Parameter.set 'Duration_Stretch {length_scale:.3f})",
                f"(set! int_lr_params '((target_f0_mean {mean:.1f}) (target_f0_std {spread:.1f})"
                " (model_f0_mean 170) (model_f0_std 34)))",
            ]
            args = [self.program, "-o", str(wav)]
            for e in evals:
                args += ["-eval", e]
            return _run_to_wav([*args, str(txt)], wav)
