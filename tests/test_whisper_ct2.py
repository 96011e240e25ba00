"""The whisper route's Whisper parts in CTranslate2 (model/whisper_ct2.py, inference/runtime.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from clips import noise
from speechllm.config import LoraSettings
from speechllm.data.audio import SAMPLE_RATE
from speechllm.errors import ConfigError
from speechllm.inference.decode import answer, encode_clips
from speechllm.inference.runtime import load_for_inference, merge_lora
from speechllm.model.whisper_ct2 import (
    LOOP_COMPRESSION_RATIO,
    CT2SpeechEncoder,
    CT2WhisperReader,
    collapse_loop,
    compression_ratio,
    converted_whisper,
    use_ctranslate2,
    window_frames,
)
from speechllm.model.whisper_reader import WhisperReader
from tiny import require, save_tiny_whisper_asr, tiny_asr_model

require("ctranslate2", "pyproject's dependencies")


def whisper_route(asr_dir, llm_dir):
    return tiny_asr_model(
        asr_dir,
        llm_dir,
        max_new_tokens=6,
        speech_input="whisper",
        lora=LoraSettings(enabled=True, r=4, alpha=8),
    )


@pytest.fixture(scope="module")
def asr_dir(tmp_path_factory):
    return save_tiny_whisper_asr(
        tmp_path_factory.mktemp("ct2") / "tiny-whisper-asr", whisper_tokens=True
    )


AUDIOS = [noise(1.0, 0), noise(2.5, 1), noise(12.0, 2)]


def test_windows_hold_the_clip_and_six_seconds_in_five_second_steps():
    def seconds(clip_s: float) -> float:
        return window_frames(int(clip_s * SAMPLE_RATE)) / 50

    assert [seconds(s) for s in (0.5, 3.9, 4.1, 9.0, 13.9, 19.0, 24.1, 29.9)] == [
        10,
        10,
        15,
        15,
        20,
        25,
        30,
        30,
    ]


def test_ctranslate2_in_whole_windows_reads_as_transformers(asr_dir, tiny_dirs, tmp_path):
    model = whisper_route(asr_dir, tiny_dirs[1])
    frames, lengths = model.encoder(AUDIOS)
    texts = model.reader.read(frames, lengths)
    answers = answer(model, encode_clips(model.encoder, AUDIOS), ["all"])

    assert use_ctranslate2(model, short_windows=False, cache_dir=tmp_path)
    assert isinstance(model.encoder, CT2SpeechEncoder)
    assert isinstance(model.reader, CT2WhisperReader)
    ct2_frames, ct2_lengths = model.encoder(AUDIOS)
    assert torch.equal(ct2_lengths, lengths)
    assert torch.allclose(ct2_frames, frames, atol=1e-3)
    assert model.reader.read(ct2_frames, ct2_lengths) == texts
    assert answer(model, encode_clips(model.encoder, AUDIOS), ["all"]) == answers
    assert not use_ctranslate2(model, cache_dir=tmp_path)  # already there: nothing to do


def test_short_windows_read_each_clip_as_alone(asr_dir, tiny_dirs, tmp_path):
    model = whisper_route(asr_dir, tiny_dirs[1])
    use_ctranslate2(model, cache_dir=tmp_path)
    frames, lengths = model.encoder(AUDIOS)
    assert lengths.tolist() == [500, 500, 1000]
    assert frames.shape[1] == 1000 and frames[0, 500:].abs().sum() == 0
    together = model.reader.read(frames, lengths)
    alone = []
    for audio in AUDIOS:
        f, n = model.encoder([audio])
        assert torch.allclose(f[0, : int(n[0])], frames[len(alone), : int(n[0])], atol=1e-4)
        alone += model.reader.read(f, n)
    assert together == alone


def test_the_conversion_is_made_once_and_reused(asr_dir, tmp_path):
    first = converted_whisper(str(asr_dir), tmp_path)
    stamp = (first / "model.bin").stat().st_mtime_ns
    assert converted_whisper(str(asr_dir), tmp_path) == first
    assert (first / "model.bin").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "ct2").iterdir()] == [first.name]  # no temporary left


def test_load_for_inference_checks_the_runtime_and_keeps_torch_when_asked(
    asr_dir, tiny_dirs, tmp_path, monkeypatch
):
    monkeypatch.setenv("SPEECHLLM_CACHE", str(tmp_path / "cache"))  # the CTranslate2 copy
    folder = tmp_path / "model"
    model = whisper_route(asr_dir, tiny_dirs[1])
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: a merge would then change nothing
            p.data.normal_(0, 0.2)
    model.save_pretrained(folder)
    with pytest.raises(ConfigError, match="unknown runtime 'onnx'"):
        load_for_inference(folder, "onnx")
    torch_model = load_for_inference(folder, "torch")
    assert type(torch_model.reader) is WhisperReader
    assert not torch_model.training
    fast = load_for_inference(folder)  # ctranslate2, LoRA merged into the LLM's weights
    assert isinstance(fast.reader, CT2WhisperReader)
    lora = [m for m in fast.llm.modules() if hasattr(m, "merged")]
    assert lora and all(m.merged for m in lora)
    assert not merge_lora(SimpleNamespace(llm=torch.nn.Linear(2, 2)))  # no LoRA: nothing to do
    texts = ["the european union", "no", "a much longer reading of some words"]
    tasks = ["all", "asr", "ner"]
    assert fast.generate_from(*fast.text_speech(texts), tasks) == torch_model.generate_from(
        *torch_model.text_speech(texts), tasks
    )


@pytest.mark.e2e
def test_the_shipped_model_reads_real_speech_as_well_in_ctranslate2(shared):
    """The 4 real LibriSpeech clips: CTranslate2 in short windows within 2 WER points of
    transformers in 30 s windows, and the same answers where the readings agree."""
    from speechllm.data.audio import load_audio
    from speechllm.data.importers.librispeech import import_librispeech
    from speechllm.evaluation.slue import wer

    utts = import_librispeech(shared / "data" / "librispeech-sample")
    audios = [load_audio(u.audio) for u in utts]
    refs = [u.text for u in utts]
    readings = {}
    for runtime in ("torch", "ctranslate2"):
        model = load_for_inference(None, runtime)
        frames, lengths = model.encoder(audios)
        readings[runtime] = model.reader.read(frames, lengths)
    assert isinstance(model.reader, CT2WhisperReader)
    assert abs(wer(refs, readings["ctranslate2"]) - wer(refs, readings["torch"])) <= 2.0


def test_a_looped_tail_is_cut_to_one_copy_and_speech_is_left_alone():
    sentence = [11, 12, 13, 14, 15, 16]
    assert collapse_loop([1, 2, *sentence * 5, 11, 12]) == [1, 2, *sentence]
    assert collapse_loop(sentence * 3) == sentence
    twice = [1, *sentence * 2]  # said twice is speech, not a loop
    assert collapse_loop(twice) == twice
    wows = [7, 7, 7, 7, 7]  # "wow wow wow wow wow": shorter than a loop's block
    assert collapse_loop(wows) == wows
    looped = "dog should not be allowed to get cancer. " * 27
    assert compression_ratio(looped) > LOOP_COMPRESSION_RATIO
    assert compression_ratio("prepping for the final shot of the film. wow whoa whoa whoa") < 2
