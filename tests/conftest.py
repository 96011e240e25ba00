from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiny import save_tiny_models

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """../shared beside the repo (or $SPEECHLLM_SHARED); None where truly absent."""
    env = os.environ.get("SPEECHLLM_SHARED")
    path = Path(env) if env else REPO.parent / "shared"
    return path if path.is_dir() else None


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
