"""Training on tiny models: loss falls, checkpoints are atomic, resume is exact."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from speechllm.config import (
    AdapterConfig,
    ClassifierHeadsConfig,
    ClassifierRegularizerConfig,
    DataConfig,
    LoraSettings,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from speechllm.data.manifest import Utterance, write_manifest
from speechllm.training.checkpoints import latest_checkpoint
from speechllm.training.train import train

WORDS = ["brussels", "monday", "commission", "european", "the", "met", "in", "on"]


def make_corpus(root, n=12, seed=0):
    """Tone clips whose pitch pattern encodes the words: learnable from the audio alone."""
    rng = np.random.default_rng(seed)
    utts = []
    (root / "wav").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        words = list(rng.choice(WORDS, size=3))
        t = np.arange(int(0.25 * 16000)) / 16000
        audio = np.concatenate(
            [0.3 * np.sin(2 * np.pi * (200 + 90 * WORDS.index(w)) * t) for w in words]
        )
        path = root / "wav" / f"u{i}.wav"
        sf.write(path, audio.astype(np.float32), 16000)
        text = " ".join(words)
        ents = [("PLACE", "brussels")] if "brussels" in words else []
        utts.append(
            Utterance(
                f"u{i}",
                str(path),
                len(audio) / 16000,
                text,
                ents,
                ["Negative", "Neutral", "Positive"][i % 3],
                "train",
            )
        )
    write_manifest(root / "m.jsonl", utts)
    return root / "m.jsonl"


def tiny_run(tiny_dirs, tmp_path, steps=30, lora=False, **train_kw) -> RunConfig:
    w, lm = tiny_dirs
    manifest = make_corpus(tmp_path / "data")
    return RunConfig(
        model=ModelConfig(
            encoder=str(w),
            llm=str(lm),
            adapter=AdapterConfig(hidden=64),
            max_new_tokens=8,
            lora=LoraSettings(enabled=lora, r=8, alpha=16, dropout=0.0),
        ),
        data=DataConfig(train=[str(manifest)], eval=[str(manifest)], max_eval_utterances=4),
        train=TrainConfig(
            output_dir=str(tmp_path / "run"),
            batch_size=4,
            lr=3e-3,
            warmup_steps=2,
            max_steps=steps,
            eval_every=0,
            save_every=5,
            log_every=5,
            precision="fp32",
            feature_cache=str(tmp_path / "features"),
            **train_kw,
        ),
    )


def read_log(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_loss_falls_and_saves_model(tiny_dirs, tmp_path):
    # A random tiny LLM barely reacts to its inputs; LoRA lets it learn the answers.
    cfg = tiny_run(tiny_dirs, tmp_path, steps=40, lora=True)
    cfg.train.lr = 1e-2
    model_dir = train(cfg)
    log = [r for r in read_log(tmp_path / "run") if "loss" in r]
    assert log[-1]["lm_loss"] < 0.7 * log[0]["lm_loss"], log
    assert (model_dir / "model.safetensors").is_file()
    final = [r for r in read_log(tmp_path / "run") if r.get("eval")][-1]
    assert {"wer", "ner_f1", "sa_macro_f1", "slue_score"} <= final.keys()


def test_feature_cache_is_reused(tiny_dirs, tmp_path):
    cfg = tiny_run(tiny_dirs, tmp_path, steps=2)
    train(cfg)
    files = sorted((tmp_path / "features").rglob("*.safetensors"))
    assert len(files) == 12
    stamp = [f.stat().st_mtime_ns for f in files]
    cfg.train.output_dir = str(tmp_path / "run2")
    train(cfg)
    assert [
        f.stat().st_mtime_ns for f in sorted((tmp_path / "features").rglob("*.safetensors"))
    ] == stamp


def test_resume_gives_identical_weights(tiny_dirs, tmp_path):
    full = tiny_run(tiny_dirs, tmp_path / "a", steps=12)
    train(full)
    want = load_file(str(tmp_path / "a/run/model/model.safetensors"))

    part = tiny_run(tiny_dirs, tmp_path / "b", steps=12)
    train(part)
    # Make it a run killed after step 10: keep only that checkpoint, plus a half-written one.
    ckpts = tmp_path / "b/run/checkpoints"
    for p in ckpts.iterdir():
        if p.name != "step-0000010":
            shutil.rmtree(p)
    shutil.rmtree(tmp_path / "b/run/model")
    (ckpts / "step-0000011.tmp").mkdir()  # a killed save: must be ignored
    assert latest_checkpoint(tmp_path / "b/run").name == "step-0000010"
    train(part, resume=True)
    got = load_file(str(tmp_path / "b/run/model/model.safetensors"))
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=0, rtol=0)


def test_missing_training_data_is_a_clear_error(tiny_dirs, tmp_path):
    cfg = tiny_run(tiny_dirs, tmp_path)
    cfg.data.tasks = ["sa"]
    cfg.data.train = [str(tmp_path / "nope.jsonl")]
    with pytest.raises(Exception, match=r"nope\.jsonl"):
        train(cfg)


def test_ctc_vocabulary_is_the_training_tokens_and_is_saved(tiny_dirs, tmp_path):
    cfg = tiny_run(tiny_dirs, tmp_path, steps=6, ctc_warmup_steps=3)
    cfg.train.log_every = 1
    model_dir = train(cfg)
    from speechllm.model.speechllm import SpeechLLM

    model = SpeechLLM.load(model_dir)
    texts = [json.loads(line)["text"] for line in (tmp_path / "data/m.jsonl").open()]
    want = sorted({t for text in texts for t in model.transcript_ids(text)})
    assert model.ctc.vocab.tolist() == want
    log = [r for r in read_log(tmp_path / "run") if "loss" in r]
    assert ["lm_loss" in r for r in log] == [False] * 3 + [True] * 3  # steps 1-3: CTC only


def test_lora_gets_its_own_learning_rate(tiny_dirs, tmp_path, monkeypatch):
    import speechllm.training.train as train_module

    seen = {}
    real = torch.optim.AdamW

    def spy(groups, **kw):
        seen["lrs"] = sorted(g["lr"] for g in groups)
        return real(groups, **kw)

    monkeypatch.setattr(train_module.torch.optim, "AdamW", spy)
    cfg = tiny_run(tiny_dirs, tmp_path, steps=1, lora=True, lora_lr=1e-4)
    train(cfg)
    assert seen["lrs"] == [1e-4, 3e-3]


def test_ctc_speech_input_needs_the_ctc_loss(tiny_dirs, tmp_path):
    from speechllm.errors import ConfigError

    cfg = tiny_run(tiny_dirs, tmp_path, steps=1, ctc_weight=0.0)
    with pytest.raises(ConfigError, match="ctc_weight"):
        train(cfg)
    cfg.model.speech_input = "adapter"
    train(cfg)  # the paper's plain adapter input trains without CTC


def test_classifier_regularizer_trains_the_heads(tiny_dirs, tmp_path):
    cfg = tiny_run(
        tiny_dirs,
        tmp_path,
        steps=30,
        classifier_regularizer=ClassifierRegularizerConfig(weight=1.0),
    )
    cfg.model.classifier_heads = ClassifierHeadsConfig(enabled=True, hidden=32, dropout=0.0)
    cfg.train.lr = 1e-2
    cfg.train.log_every = 10
    model_dir = train(cfg)
    log = [r for r in read_log(tmp_path / "run") if "loss" in r]
    assert all("cls_loss" in r for r in log)
    # The tiny random encoder's clips differ little once pooled, so the heads mostly learn the
    # label priors here (~0.8 -> ~0.6 over seeds 0-4): enough to show they train.
    assert log[-1]["cls_loss"] < 0.85 * log[0]["cls_loss"], log
    final = [r for r in read_log(tmp_path / "run") if r.get("eval")][-1]
    assert {"cls_sa_macro_f1", "cls_tag_f1", "sa_macro_f1"} <= final.keys()
    saved = load_file(str(model_dir / "model.safetensors"))
    assert any(k.startswith("classifier.") for k in saved)
    from speechllm.model.speechllm import SpeechLLM

    assert SpeechLLM.load(model_dir).classifier is not None  # strict load: heads saved


def test_classifier_regularizer_needs_heads(tiny_dirs, tmp_path):
    from speechllm.errors import ConfigError

    cfg = tiny_run(
        tiny_dirs, tmp_path, steps=1, classifier_regularizer=ClassifierRegularizerConfig(weight=0.5)
    )
    with pytest.raises(ConfigError, match="classifier_heads"):
        train(cfg)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    cfg.train.classifier_regularizer.weight = -1.0
    cfg.model.classifier_heads.enabled = True
    with pytest.raises(ConfigError, match="weight"):
        train(cfg)
