"""The local cache and file digests: where this project keeps what it builds (`cache_root`:
fetched models, encoder features) and the sha256 that checks a file (`file_sha256`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_CACHE = Path("~/.cache/speechllm")
"""The cache root where neither the caller nor `$SPEECHLLM_CACHE` names one."""


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The cache directory: `cache_dir`, else $SPEECHLLM_CACHE, else ~/.cache/speechllm."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SPEECHLLM_CACHE")
    return Path(env).expanduser() if env else DEFAULT_CACHE.expanduser()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of a file's bytes, read in 1 MiB blocks (model files are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
