"""CMU flite voices for `data synth --voice flite:...`: evaluation only (data/voices.py)."""

import shutil

import numpy as np
import pytest

from speechllm.data.voices import FLITE_VOICES, FliteVoice, make_voice
from speechllm.errors import ConfigError, ModelSourceError
from tiny import absent


def test_unknown_and_reserved_flite_voices_are_refused():
    with pytest.raises(ModelSourceError, match="unknown voice"):
        make_voice("mbrola:us1")
    with pytest.raises(ConfigError, match="reserved for evaluation"):
        make_voice("flite:slt")  # a training set never speaks with flite
    if shutil.which("flite"):
        with pytest.raises(ModelSourceError, match="kal16"):
            make_voice("flite:nobody", evaluation=True)


@pytest.mark.parametrize("voice", FLITE_VOICES)
def test_flite_voices_speak_16_khz(voice):
    if shutil.which("flite") is None:
        absent("flite is not installed (make venv installs it with apt-get as root)")
    speaker = make_voice(f"flite:{voice}", evaluation=True)
    assert isinstance(speaker, FliteVoice)
    audio = speaker.synthesize("the council met in brussels", length_scale=1.1)
    assert audio.dtype == np.float32 and 0.8 < len(audio) / 16000 < 5.0
    assert 0.5 < np.abs(audio).max() <= 1.0
    with pytest.raises(ValueError, match="nothing to speak"):
        speaker.synthesize("  ")
