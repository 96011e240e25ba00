from __future__ import annotations

import os
from pathlib import Path

import pytest

from speechllm.data.importers import files as importer_files
from speechllm.errors import ConfigError
from tiny import save_tiny_models


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
