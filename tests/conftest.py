from __future__ import annotations

import os
from pathlib import Path

import pytest

from speechllm.data.importers import files as importer_files
from speechllm.errors import ConfigError
from speechllm.model.speechllm import SpeechLLM
from tiny import lively_tiny_model, save_tiny_asr_run, save_tiny_models


def shared_dir() -> Path | None:
    """../shared beside the repo (or $SPEECHLLM_SHARED); None where truly absent."""
    try:
        return importer_files.shared_dir()
    except ConfigError:
        return None


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("../shared is missing in CI")
        pytest.skip("../shared (read-only project data) is not present on this machine")
    return path


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_asr_run(tiny_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny SpeechLLM run that reads speech with a random Whisper-with-decoder (its folder
    is the run's parent's `tiny-whisper-asr`): the cascade's and the demo's tiny model."""
    return save_tiny_asr_run(tmp_path_factory.mktemp("tiny-asr"), tiny_dirs[1])


@pytest.fixture(scope="module")
def model(tiny_dirs: tuple[Path, Path]) -> SpeechLLM:
    """The tiny random SpeechLLM of the server, web, bad-input and long-form tests (answers are
    noise, but real ones that move with the audio); one per test module, which may override it."""
    return lively_tiny_model(tiny_dirs)
