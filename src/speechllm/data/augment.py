"""Acoustic augmentation of synthesized clips (`speechllm data synth --augment`), with audiomentations.

Clean TTS speech is far from what a recogniser meets: rooms, noise, telephone lines, other
speaking rates and pitches. Each new clip takes a chain of perturbations drawn from (seed, id)
alone, so a set is reproducible and a resumed run draws what the interrupted one would have:

| step | probability | what |
| --- | --- | --- |
| tempo | 0.3 | `TimeStretch`, rate 0.85-1.15 (length changes, pitch kept) |
| pitch | 0.3 | `PitchShift`, -2 to +2 semitones |
| reverb | 0.3 | `ApplyImpulseResponse` with one of 16 room impulse responses (RT60 0.2-0.8 s) |
| noise | 0.4 | `AddGaussianSNR`, 5-30 dB SNR |
| phone | 0.15 | `BandPassFilter` 300-3400 Hz, half of the time an 8 kHz resampling round trip too |

Reverberation: audiomentations' `RoomSimulator` runs pyroomacoustics' image-source model for
every clip, 0.28-0.48 s per 6 s clip here (one thread); instead the 16 impulse responses are
computed once by pyroomacoustics (shoebox rooms, seeded, about 1 s each) into a folder
(`<out>/rirs/` for `data synth`) and convolved in about 0.01 s. Measured per 6 s clip, one
thread: tempo and pitch about 0.03 s each (signalsmith stretch), noise and band-pass under
0.005 s: with the probabilities above about 0.02 s of augmentation per clip, under 0.01 s per
second of audio (docs/recipe.md has the figures of a whole run).

The chain is written as text (`tempo=1.07,reverb=0.45s,noise=17.5dB`, or `none`) into the spoken
folder's voices.tsv. Audio stays float32 mono 16 kHz in [-1, 1]: a perturbed clip is
peak-normalised to the synthesizer's headroom. audiomentations draws from the global `random`
and `numpy.random` states: they are seeded from (seed, id) around each clip and restored after.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from speechllm.data.audio import SAMPLE_RATE, save_wav
from speechllm.errors import ModelSourceError

INSTALL_HINT = "pip install audiomentations pyroomacoustics (or pip install 'speechllm[tts]')"

PROBABILITY = {"tempo": 0.3, "pitch": 0.3, "reverb": 0.3, "noise": 0.4, "phone": 0.15}
"""Each step's chance of being applied to a clip."""
TEMPO_RANGE = (0.85, 1.15)
PITCH_RANGE = (-2.0, 2.0)
SNR_RANGE = (5.0, 30.0)
RT60_RANGE = (0.2, 0.8)
PHONE_BAND = (300.0, 3400.0)
RIRS = 16
"""Impulse responses in the bank."""
PEAK = 0.9  # as tts.PEAK: the headroom of every synthesized clip


def draw(seed: int, utt_id: str, rirs: int = RIRS) -> list[tuple[str, Any]]:
    """The chain of one clip: [(step, parameter)] in the order applied, from (seed, id) alone."""
    rng = random.Random(f"speechllm-augment:{seed}:{utt_id}")
    # Every step draws both numbers, so one step's probability never shifts another's values.
    values = {
        "tempo": round(rng.uniform(*TEMPO_RANGE), 3),
        "pitch": round(rng.uniform(*PITCH_RANGE), 2),
        "reverb": rng.randrange(rirs),
        "noise": round(rng.uniform(*SNR_RANGE), 1),
        "phone": rng.random() < 0.5,
    }
    applied = {step: rng.random() < p for step, p in PROBABILITY.items()}
    return [(step, values[step]) for step in PROBABILITY if applied[step]]


def bank_rt60(rirs: int = RIRS) -> list[float]:
    """The target RT60 (seconds) of each impulse response of the bank (evenly spread)."""
    lo, hi = RT60_RANGE
    return [round(lo + (hi - lo) * k / max(1, rirs - 1), 3) for k in range(rirs)]


def describe(chain: list[tuple[str, Any]], rirs: int = RIRS) -> str:
    """The chain as one line for voices.tsv; `none` when nothing applies."""
    rt60 = bank_rt60(rirs)
    units = {
        "tempo": lambda v: f"tempo={v}",
        "pitch": lambda v: f"pitch={v:+}st",
        "reverb": lambda v: f"reverb={rt60[v]}s",
        "noise": lambda v: f"noise={v}dB",
        "phone": lambda v: "phone8k" if v else "phone",
    }
    return ",".join(units[s](v) for s, v in chain) or "none"


@contextlib.contextmanager
def _seeded(key: str) -> Iterator[None]:
    """Seed the global RNGs audiomentations draws from; restore them afterwards."""
    state, np_state = random.getstate(), np.random.get_state()
    n = random.Random(key).getrandbits(32)
    random.seed(n)
    np.random.seed(n)
    try:
        yield
    finally:
        random.setstate(state)
        np.random.set_state(np_state)


class Augmenter:
    """Applies each clip's chain; the impulse responses live in `rir_dir` (made on first use).

    Raises ModelSourceError (with the pip command) where audiomentations or pyroomacoustics is
    missing."""

    def __init__(self, rir_dir: str | Path, rirs: int = RIRS) -> None:
        try:
            import audiomentations
        except ImportError as exc:
            raise ModelSourceError(f"--augment needs audiomentations: {INSTALL_HINT}") from exc
        self._am = audiomentations
        self.rir_dir = Path(rir_dir)
        self.rirs = rirs
        self._reverb: dict[int, Any] = {}

    def plan(self, seed: int, utt_id: str) -> str:
        """What `apply` does to this clip, as voices.tsv records it."""
        return describe(draw(seed, utt_id, self.rirs), self.rirs)

    def apply(self, audio: np.ndarray, seed: int, utt_id: str) -> tuple[np.ndarray, str]:
        """Perturb one clip (float32 mono 16 kHz) -> (audio, its chain as text)."""
        chain = draw(seed, utt_id, self.rirs)
        if not chain:
            return audio, "none"
        am = self._am
        x = np.asarray(audio, dtype=np.float32)
        with _seeded(f"speechllm-augment-noise:{seed}:{utt_id}"):
            for step, v in chain:
                if step == "tempo":
                    t = am.TimeStretch(min_rate=v, max_rate=v, leave_length_unchanged=False, p=1)
                elif step == "pitch":
                    t = am.PitchShift(min_semitones=v, max_semitones=v, p=1)
                elif step == "reverb":
                    t = self._impulse(v)
                elif step == "noise":
                    t = am.AddGaussianSNR(min_snr_db=v, max_snr_db=v, p=1)
                else:
                    x = _telephone(am, x, v)
                    continue
                x = t(x, SAMPLE_RATE)
        peak = float(np.abs(x).max()) if len(x) else 0.0
        if peak > 0:
            x = x * (PEAK / peak)
        return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False), describe(chain, self.rirs)

    def _impulse(self, k: int) -> Any:
        """ApplyImpulseResponse on impulse response `k` of the bank (one transform each, so each
        file is read once)."""
        if k not in self._reverb:
            path = self.rir_dir / f"rir-{k:02d}.wav"
            if not path.is_file():
                save_wav(path, room_impulse_response(k, bank_rt60(self.rirs)[k]), SAMPLE_RATE)
            self._reverb[k] = self._am.ApplyImpulseResponse(ir_path=str(path), p=1)
        return self._reverb[k]


def room_impulse_response(k: int, rt60: float) -> np.ndarray:
    """Impulse response `k` of the bank: a shoebox room of this RT60 (pyroomacoustics), with
    room size, source and microphone drawn from `k`; peak 0.9, 16 kHz float32."""
    try:
        import pyroomacoustics as pra
    except ImportError as exc:
        raise ModelSourceError(
            f"--augment's reverberation needs pyroomacoustics: {INSTALL_HINT}"
        ) from exc
    rng = random.Random(f"speechllm-rir:{k}")
    room = [rng.uniform(3.0, 8.0), rng.uniform(3.0, 6.0), rng.uniform(2.4, 3.2)]
    absorption, order = pra.inverse_sabine(rt60, room)
    shoebox = pra.ShoeBox(
        room, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(order, 12)
    )
    source = [rng.uniform(0.5, d - 0.5) for d in room[:2]] + [rng.uniform(1.2, 1.8)]
    mic = [rng.uniform(0.5, d - 0.5) for d in room[:2]] + [rng.uniform(0.8, 1.6)]
    shoebox.add_source(source)
    shoebox.add_microphone(mic)
    shoebox.compute_rir()
    rir = np.asarray(shoebox.rir[0][0], dtype=np.float32)
    return rir * (PEAK / float(np.abs(rir).max()))


def _telephone(am: Any, x: np.ndarray, narrowband: bool) -> np.ndarray:
    """300-3400 Hz band-pass (a 4th-order Butterworth), then optionally 16 -> 8 -> 16 kHz."""
    lo, hi = PHONE_BAND
    centre, width = (lo + hi) / 2, hi - lo
    band = am.BandPassFilter(
        min_center_freq=centre,
        max_center_freq=centre,
        min_bandwidth_fraction=width / centre,
        max_bandwidth_fraction=width / centre,
        min_rolloff=24,
        max_rolloff=24,
        zero_phase=True,
        p=1,
    )
    x = band(x, SAMPLE_RATE)
    if narrowband:
        x = soxr.resample(soxr.resample(x, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)
    return x.astype(np.float32, copy=False)
