"""Augmentation of synthesized clips (data/augment.py): a chain drawn from (seed, id) alone,
applied reproducibly, float32 16 kHz in [-1, 1], the global RNGs left as they were."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from speechllm.data.augment import (
    PROBABILITY,
    SNR_RANGE,
    TEMPO_RANGE,
    Augmenter,
    _telephone,
    describe,
    draw,
)


def tone(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.4 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_the_chain_is_drawn_from_seed_and_id_with_each_steps_probability():
    chains = [draw(0, f"u{i}") for i in range(3000)]
    assert chains == [draw(0, f"u{i}") for i in range(3000)]
    assert draw(1, "u0") != draw(0, "u0") or draw(1, "u1") != draw(0, "u1")
    seen = Counter(step for c in chains for step, _ in c)
    for step, p in PROBABILITY.items():
        assert abs(seen[step] / 3000 - p) < 0.04, step
    for c in chains:
        values = dict(c)
        assert TEMPO_RANGE[0] <= values.get("tempo", 1.0) <= TEMPO_RANGE[1]
        assert SNR_RANGE[0] <= values.get("noise", 10.0) <= SNR_RANGE[1]
    assert describe([]) == "none"
    assert describe([("tempo", 1.05), ("noise", 12.5), ("phone", True)]) == (
        "tempo=1.05,noise=12.5dB,phone8k"
    )


def test_apply_is_reproducible_bounded_and_leaves_the_global_rngs_alone(tmp_path):
    aug = Augmenter(tmp_path / "rirs")
    audio = tone()
    # Find clips whose chains cover every step.
    ids = [f"u{i}" for i in range(40)]
    covered = {step for i in ids for step, _ in draw(0, i)}
    assert covered == set(PROBABILITY)
    state, np_state = random.getstate(), np.random.get_state()[1].copy()
    for i in ids:
        out, chain = aug.apply(audio, 0, i)
        assert chain == aug.plan(0, i)
        assert out.dtype == np.float32 and np.abs(out).max() <= 1.0
        if chain == "none":
            assert out is audio
        else:
            again, _ = aug.apply(audio, 0, i)
            np.testing.assert_array_equal(out, again)
        if "tempo" in chain:
            rate = dict(draw(0, i))["tempo"]
            assert abs(len(out) / len(audio) - 1 / rate) < 0.02
    assert random.getstate() == state and np.array_equal(np.random.get_state()[1], np_state)
    assert 1 <= len(list((tmp_path / "rirs").glob("rir-*.wav"))) <= 16  # made once, on demand


@pytest.mark.parametrize("narrowband", [False, True])
def test_the_telephone_band_removes_low_and_high_frequencies(narrowband):
    import audiomentations

    t = np.arange(16000) / 16000
    low, mid, high = (np.sin(2 * np.pi * f * t).astype(np.float32) for f in (100, 1000, 6000))
    power = {
        name: float(np.mean(_telephone(audiomentations, x, narrowband)[2000:-2000] ** 2))
        for name, x in (("low", low), ("mid", mid), ("high", high))
    }
    assert power["mid"] > 0.4 and power["low"] < 0.05 and power["high"] < 0.01
