"""Training voices of `data synth` (data/voices.py): espeak-ng and festival speak 16 kHz with each
utterance's prosody, the training preset is varied and holds no voice reserved for evaluation,
and the command records every clip's voice and augmentation in voices.tsv, resumably."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from speechllm.cli import app
from speechllm.data.voices import (
    TRAINING_PRESET,
    EspeakVoice,
    FestivalVoice,
    assign_voices,
    espeak_all,
    expand,
    is_reserved,
    make_voice,
    preset_voices,
)
from speechllm.errors import ConfigError, ModelSourceError
from tiny import absent


def need(program: str) -> None:
    """Skip where `program` is missing, but fail under CI (`make venv` installs it)."""
    if shutil.which(program) is None:
        absent(f"{program} is not installed (make venv installs it with apt-get as root)")


def test_the_training_preset_is_varied_and_holds_no_reserved_voice():
    mix = preset_voices()
    assert len(mix) >= 20 and abs(sum(mix.values()) - 1) < 1e-9
    assert not [v for v in mix if is_reserved(v)]
    assert {v.split(":")[0] for v in mix} == {"piper", "espeak", "festival"}
    assert len(espeak_all()) == 96 and set(espeak_all()) <= set(mix)
    for name in ("flite:kal16", "flite:awb", "festival:kal", "festival:cmu_us_slt_arctic_hts"):
        assert is_reserved(name)
    assert not is_reserved("festival:ked") and not is_reserved("espeak:en-us+m1")


def test_reserved_voices_need_the_evaluation_flag():
    for name in ("flite:rms", "festival:kal_diphone", "festival:slt"):
        with pytest.raises(ConfigError, match="reserved for evaluation"):
            make_voice(name)
    with pytest.raises(ModelSourceError, match="unknown voice"):
        make_voice("mbrola:us1")


def test_voice_assignment_is_deterministic_and_weighted():
    ids = [f"u{i}" for i in range(2000)]
    names = assign_voices(TRAINING_PRESET, ids, seed=0)
    assert names == assign_voices(TRAINING_PRESET, ids, seed=0)
    # A voice depends on (seed, id) alone, not on the order or number of utterances.
    assert assign_voices(TRAINING_PRESET, ids[::-1][:50], seed=0) == names[::-1][:50]
    assert assign_voices(TRAINING_PRESET, ids, seed=1) != names
    family = Counter(n.split(":")[0] for n in names)
    assert 0.35 < family["piper"] / 2000 < 0.45 and 0.11 < family["festival"] / 2000 < 0.19
    assert len(set(names)) > 60
    # A list is taken in turn; espeak:all expands.
    assert assign_voices("piper,espeak:en-us", ids[:4], 0) == ["piper", "espeak:en-us"] * 2
    assert expand("espeak:all,piper") == [*espeak_all(), "piper"]


def test_espeak_voices_speak_16_khz_with_the_prosody():
    need("espeak-ng")
    voice = make_voice("espeak:en-gb-scotland+f3")
    assert isinstance(voice, EspeakVoice) and voice.name == "espeak:en-gb-scotland+f3"
    text = "the council met in brussels on tuesday"
    slow = voice.synthesize(text, length_scale=1.2, noise_scale=0.4, noise_w=0.5)
    fast = voice.synthesize(text, length_scale=0.85, noise_scale=0.8, noise_w=1.0)
    assert slow.dtype == np.float32 and 0.5 < np.abs(slow).max() <= 1.0
    assert 1.0 < len(fast) / 16000 < len(slow) / 16000 < 6.0
    with pytest.raises(ModelSourceError, match="accent"):
        EspeakVoice("fr-fr")
    with pytest.raises(ModelSourceError, match="variant"):
        EspeakVoice("en-us+nobody")
    with pytest.raises(ValueError, match="nothing to speak"):
        voice.synthesize(" ")


def test_festival_voice_speaks_16_khz_with_the_prosody():
    need("text2wave")
    voice = make_voice("festival:ked")
    assert isinstance(voice, FestivalVoice)
    text = "the council met in brussels"
    slow = voice.synthesize(text, length_scale=1.2, noise_scale=0.4, noise_w=0.5)
    fast = voice.synthesize(text, length_scale=0.85, noise_scale=0.8, noise_w=1.0)
    assert slow.dtype == np.float32 and 0.5 < np.abs(slow).max() <= 1.0
    assert 0.8 < len(fast) / 16000 < len(slow) / 16000 < 5.0
    with pytest.raises(ModelSourceError, match="not installed"):
        FestivalVoice("nobody")


def _text_manifest(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            row = {"id": f"u{i}", "audio": None, "duration": None, "text": f"item {i} is here"}
            f.write(json.dumps(row) + "\n")
    return path


def test_synth_records_voices_and_augmentation_and_resumes(tmp_path):
    need("espeak-ng")
    manifest = _text_manifest(tmp_path / "text.jsonl", 6)
    out = tmp_path / "out"
    args = ["data", "synth", str(manifest), "--out", str(out), "--augment"]
    args += ["--voice", "espeak:en-us+m1,espeak:en-029+f2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in (out / "voices.tsv").read_text().splitlines()]
    assert rows[0] == ["id", "voice", "augment"] and len(rows) == 7
    assert [r[1] for r in rows[1:]] == ["espeak:en-us+m1", "espeak:en-029+f2"] * 3
    assert all(r[2] for r in rows[1:])
    wavs = sorted((out / "wav").glob("*.wav"))
    stamps = [w.stat().st_mtime_ns for w in wavs]
    assert len(wavs) == 6
    # Resumed with another voice: every WAV is kept, and so is the record of its voice.
    rerun = [a if a != "espeak:en-us+m1,espeak:en-029+f2" else "espeak:en-gb" for a in args]
    assert CliRunner().invoke(app, rerun).exit_code == 0
    assert [w.stat().st_mtime_ns for w in wavs] == stamps
    assert [line.split("\t") for line in (out / "voices.tsv").read_text().splitlines()] == rows


def test_synth_refuses_a_reserved_voice_for_training(tmp_path):
    manifest = _text_manifest(tmp_path / "text.jsonl", 2)
    args = ["data", "synth", str(manifest), "--out", str(tmp_path / "o"), "--voice", "flite:slt"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "reserved for evaluation" in result.output
    assert not (tmp_path / "o" / "wav").exists() or not any((tmp_path / "o" / "wav").iterdir())


def test_the_10_hour_recipe_speaks_the_preset_and_widens_the_ctc_vocabulary():
    from speechllm.config import RunConfig

    path = Path(__file__).resolve().parents[1] / "configs" / "cpu-ctc-route-10h.yaml"
    config = RunConfig.load(path)
    assert config.model.ctc_vocab == "train+words:20000"
    assert [s.kind for s in config.stages] == ["acoustic"]
    assert config.data.train[0].endswith("work/acoustic10h/manifest.jsonl")
    header = path.read_text()
    assert f"--voice {TRAINING_PRESET} --augment" in header and "text-corpus" in header
