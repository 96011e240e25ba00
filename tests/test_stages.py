"""Staged training (acoustic, text, joint), the `whisper` speech input and the one-generation
`all` answer, on tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

from clips import noise
from speechllm.config import LoraSettings, RunConfig, SpecAugmentConfig, TextNoiseConfig
from speechllm.data.manifest import Utterance, write_manifest
from speechllm.errors import ConfigError
from speechllm.model.answers import parse_answers
from speechllm.model.prompts import ALL_SEPARATOR, parse_all, target_text
from speechllm.model.speechllm import SpeechLLM
from speechllm.training import train as train_module
from speechllm.training.batches import make_batch
from speechllm.training.sampler import examples_for, spec_augment
from speechllm.training.train import train
from tiny import save_tiny_whisper_asr, tiny_asr_model

TEXTS = [
    "the european commission met in brussels on monday",
    "second the economic benefits will bring benefits to all citizens",
    "the council met in brussels",
]
LABELS = [
    ([("ORG", "european commission"), ("PLACE", "brussels"), ("WHEN", "monday")], "Neutral"),
    ([], "Positive"),
    ([("ORG", "council"), ("PLACE", "brussels")], "Negative"),
]


# ------------------------------------------------------------------ the `all` answer


def test_all_answer_round_trips_to_the_three_outputs():
    entities, sentiment = LABELS[0]
    answer = target_text("all", TEXTS[0], entities, sentiment)
    assert answer == (
        "Neutral | the [ORG european commission] met in [PLACE brussels] on [WHEN monday]"
    )
    parsed = parse_all(answer)
    assert parsed.ok and parsed.sentiment == "Neutral"
    assert parsed.ner.text == TEXTS[0]
    assert parsed.ner.entities == entities
    # `understand` makes the same prediction of it as of the three separate answers.
    joint = parse_answers({"all": answer}).to_dict()
    apart = parse_answers(
        {
            "asr": TEXTS[0],
            "ner": target_text("ner", TEXTS[0], entities, None),
            "sa": sentiment,
        }
    ).to_dict()
    for key in ("transcript", "entities", "sentiment"):
        assert joint[key] == apart[key]
    assert joint["parse_failures"] == []


def test_all_answer_without_separator_or_sentiment_is_flagged_not_raised():
    parsed = parse_all("the [ORG council] met")
    assert parsed.sentiment is None and not parsed.ok
    assert parsed.ner.entities == [("ORG", "council")]
    assert parse_answers({"all": "the [ORG council] met"}).parse_failures == ["sa"]
    broken = parse_answers({"all": f"Positive{ALL_SEPARATOR}the [ORG council met"}).to_dict()
    assert broken["sentiment"] == "Positive" and broken["parse_failures"] == ["ner"]


def test_all_target_needs_both_labels():
    with pytest.raises(ValueError, match="sentiment"):
        target_text("all", TEXTS[0], [], None)
    with pytest.raises(ValueError, match="entity"):
        target_text("all", TEXTS[0], None, "Neutral")
    utts = [
        Utterance("a", None, None, TEXTS[0], [], "Neutral"),
        Utterance("b", None, None, TEXTS[1], None, "Neutral"),
        Utterance("c", None, None, TEXTS[2], [], None),
    ]
    examples = examples_for(utts, ["all", "sa", "ner"])
    assert [e.utt.id for e in examples["all"]] == ["a"]
    assert [e.utt.id for e in examples["sa"]] == ["a", "b"]
    assert [e.utt.id for e in examples["ner"]] == ["a", "c"]


def test_synthetic_sentiment_can_be_left_untaught():
    made = Utterance("m", None, None, TEXTS[0], [], "Positive", synthetic=("sentiment",))
    gold = Utterance("g", None, None, TEXTS[1], [], "Negative")
    taught = examples_for([made, gold], ["all", "sa"])
    assert [e.utt.id for e in taught["sa"]] == ["m", "g"]
    assert all(e.unscored == "" for e in taught["all"])
    kept = examples_for([made, gold], ["all", "sa"], synthetic_sentiment=False)
    assert [e.utt.id for e in kept["sa"]] == ["g"]  # no sa example of a guessed sentiment
    # The row still teaches its transcript and entities; only the sentiment word is unscored.
    assert [(e.utt.id, e.unscored) for e in kept["all"]] == [("m", "Positive"), ("g", "")]
    assert kept["all"][0].answer == taught["all"][0].answer
    batch = make_batch(kept["all"], None)
    assert batch.unscored == ["Positive", ""]
    assert batch.sentiments == [None, "Negative"]  # nor a classifier target
    # `train.sentiment_loss: false`: no row teaches sentiment, gold or guessed.
    none = examples_for([made, gold], ["all", "sa"], sentiment=False)
    assert "sa" not in none
    assert [(e.utt.id, e.unscored) for e in none["all"]] == [("m", "Positive"), ("g", "Negative")]
    assert make_batch(none["all"], None).sentiments == [None, None]


# ------------------------------------------------------------------ config


def _run_config(tmp_path: Path, **extra) -> dict:
    return {
        "model": {"speech_input": "whisper"},
        "train": {"output_dir": str(tmp_path / "run"), "ctc_weight": 0.0},
        **extra,
    }


def test_stages_take_overrides_and_are_checked(tmp_path):
    raw = _run_config(
        tmp_path,
        stages=[
            {"name": "text", "kind": "text", "train": {"max_steps": 7, "lr": 0.01}},
            {"name": "joint", "kind": "joint", "data": {"tasks": ["all"]}},
        ],
    )
    config = RunConfig.from_dict(raw)
    first, second = config.for_stage(0), config.for_stage(1)
    assert (first.train.max_steps, first.train.lr) == (7, 0.01)
    assert second.train.max_steps == config.train.max_steps
    assert second.data.tasks == ["all"]
    assert first.train.output_dir.endswith("stages/00-text")
    assert second.train.output_dir.endswith("stages/01-joint")
    assert first.stages == []

    bad = [
        ([{"name": "a", "kind": "text", "train": {"max_stepz": 3}}], "max_stepz"),
        ([{"name": "a", "kind": "acoustic"}], "acoustic"),
        ([{"name": "a", "kind": "text"}, {"name": "a", "kind": "joint"}], "names must differ"),
        ([{"name": "a", "kind": "speech"}], "kind"),
        ([{"name": "a", "kind": "text", "data": {"tasks": ["asr", "nerr"]}}], "nerr"),
    ]
    for stages, message in bad:
        with pytest.raises(ConfigError, match=message):
            RunConfig.from_dict(_run_config(tmp_path, stages=stages))


def test_cross_field_checks_live_in_the_config():
    with pytest.raises(ConfigError, match="ctc_weight"):
        RunConfig.from_dict({"model": {"speech_input": "ctc"}, "train": {"ctc_weight": 0.0}})
    with pytest.raises(ConfigError, match="classifier_heads"):
        RunConfig.from_dict({"train": {"classifier_regularizer": {"weight": 0.5}}})
    with pytest.raises(ConfigError, match="teaches no sentiment"):
        RunConfig.from_dict({"data": {"tasks": ["sa"]}, "train": {"sentiment_loss": False}})


# ------------------------------------------------------------------ augmentation


def test_spec_augment_masks_spans_and_bands_inside_each_clip():
    torch.manual_seed(0)
    frames = torch.ones(2, 50, 16)
    lengths = torch.tensor([50, 20])
    config = SpecAugmentConfig(time_masks=2, time_width=0.2, feature_masks=1, feature_width=4)
    out = spec_augment(frames, lengths, config)
    assert out.shape == frames.shape and frames.eq(1).all()  # a copy: the cache is untouched
    assert (out == 0).any()
    # Time masks of the short clip stay within its 20 frames (band masks span all frames).
    whole_rows = (out[1] == 0).all(dim=-1)
    assert not whole_rows[20:].any()
    assert spec_augment(frames, lengths, SpecAugmentConfig()).eq(frames).all()


# ------------------------------------------------------------------ the whisper route


@pytest.fixture(scope="module")
def whisper_route(tiny_dirs, tmp_path_factory) -> SpeechLLM:
    return tiny_asr_model(
        save_tiny_whisper_asr(tmp_path_factory.mktemp("route") / "tiny-whisper-asr"),
        tiny_dirs[1],
        max_new_tokens=6,
        speech_input="whisper",
        lora=LoraSettings(enabled=True, r=4, alpha=8),
    )


def test_whisper_route_reads_whole_windows_and_batches_like_one_by_one(whisper_route):
    model = whisper_route
    audios = [noise(1.0, 0), noise(2.5, 1)]
    frames, lengths = model.encoder(audios)
    assert frames.shape[1] == 1500 and lengths.tolist() == [1500, 1500]
    together = model.reader.read(frames, lengths)
    alone = [model.reader.read(frames[i : i + 1], lengths[i : i + 1])[0] for i in range(2)]
    assert together == alone
    speech, n = model.speech_inputs(frames, lengths)
    assert speech.shape[0] == 2 and n.tolist() == [
        len(model.transcript_ids(t)) if t else 0 for t in together
    ]
    answers = model.generate(frames, lengths, ["all", "sa"])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    with pytest.raises(ValueError, match="1500-frame windows"):
        model.reader.read(frames[:, :100], torch.tensor([100, 100]))


def test_text_speech_is_the_embedding_table_and_noise_corrupts_it(whisper_route):
    model = whisper_route
    embed = model.llm.get_input_embeddings().weight
    ids = model.transcript_ids(TEXTS[0])
    clean, n = model.text_speech([TEXTS[0], ""])
    assert n.tolist() == [len(ids), 0]
    assert torch.equal(clean[0, : len(ids)], embed[ids])
    assert clean[1].abs().sum() == 0

    _, n = model.text_speech([TEXTS[0]], TextNoiseConfig(delete=1.0))
    assert n.tolist() == [0]
    torch.manual_seed(3)
    swapped, n = model.text_speech(
        [TEXTS[0]], TextNoiseConfig(substitute=1.0, delete=0.0, insert=0.0)
    )
    assert n.tolist() == [len(ids)]
    for row, t in zip(swapped[0], ids, strict=True):
        match = (embed == row).all(dim=-1).nonzero().flatten().tolist()
        assert match and match[0] != t and match[0] in model.near_tokens(t, 8).tolist()
    torch.manual_seed(3)
    again, _ = model.text_speech(
        [TEXTS[0]], TextNoiseConfig(substitute=1.0, delete=0.0, insert=0.0)
    )
    assert torch.equal(swapped, again)  # drawn from the global RNG: a resumed run draws the same
    _, n = model.text_speech([TEXTS[0]], TextNoiseConfig(substitute=0.0, delete=0.0, insert=1.0))
    assert n.tolist() == [2 * len(ids)]


# ------------------------------------------------------------------ staged training


def _manifests(root: Path) -> tuple[Path, Path]:
    text_rows, audio_rows = [], []
    for i, (text, (entities, sentiment)) in enumerate(zip(TEXTS, LABELS, strict=True)):
        text_rows.append(Utterance(f"t{i}", None, None, text, entities, sentiment, "train"))
        wav = root / f"a{i}.wav"
        sf.write(wav, noise(1.0 + 0.5 * i, i), 16000)
        audio_rows.append(
            Utterance(f"a{i}", str(wav), 1.0 + 0.5 * i, text, entities, sentiment, "train")
        )
    write_manifest(root / "text.jsonl", text_rows)
    write_manifest(root / "audio.jsonl", audio_rows)
    return root / "text.jsonl", root / "audio.jsonl"


def _staged(tmp_path: Path, tiny_dirs, speech_input: str, stages: list[dict]) -> RunConfig:
    text, audio = _manifests(tmp_path)
    asr = save_tiny_whisper_asr(tmp_path / "tiny-whisper-asr")
    return RunConfig.from_dict(
        {
            "model": {
                "encoder": str(asr),
                "llm": str(tiny_dirs[1]),
                "adapter": {"hidden": 48},
                "speech_input": speech_input,
                "lora": {"enabled": True, "r": 4, "alpha": 8},
                "max_new_tokens": 4,
            },
            "data": {"train": [str(audio)], "tasks": ["asr", "ner", "sa", "all"]},
            "train": {
                "output_dir": str(tmp_path / "run"),
                "batch_size": 4,
                "lr": 0.01,
                "warmup_steps": 1,
                "max_steps": 3,
                "save_every": 1,
                "log_every": 1,
                "eval_every": 0,
                "ctc_weight": 1.0 if speech_input == "ctc" else 0.0,
                "feature_cache": str(tmp_path / "cache"),
                "spec_augment": {"time_masks": 1, "feature_masks": 1},
                # The tiny random Whisper reads noise: keep every clip (tested apart below).
                "max_reading_wer": None,
            },
            "stages": [
                {**s, "data": {"train": [str(text)]}} if s["kind"] == "text" else s for s in stages
            ],
        }
    )


def _metrics(run: Path, folder: str) -> list[dict]:
    lines = (run / "stages" / folder / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_three_stages_run_in_order_and_each_is_recorded(tmp_path, tiny_dirs, monkeypatch):
    config = _staged(
        tmp_path,
        tiny_dirs,
        "ctc",
        [
            {"name": "acoustic", "kind": "acoustic", "train": {"lr": 0.003}},
            {"name": "text", "kind": "text", "train": {"max_steps": 8}},
            {"name": "joint", "kind": "joint", "train": {"max_steps": 2, "sentiment_loss": False}},
        ],
    )
    made: list[dict[str, list]] = []

    def recorded(*args, **kwargs):
        made.append(examples_for(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(train_module, "examples_for", recorded)
    final = train(config)
    # Each stage's own settings reach its examples: the joint stage teaches no sentiment.
    assert "sa" in made[1] and "sa" not in made[2]
    assert all(e.unscored == e.utt.sentiment for e in made[2]["all"])
    run = tmp_path / "run"
    acoustic = _metrics(run, "00-acoustic")
    assert all("ctc_loss" in r and "lm_loss" not in r for r in acoustic)
    text = _metrics(run, "01-text")
    assert all("lm_loss" in r and "ctc_loss" not in r for r in text)
    # The text stage learns: its answers' loss falls on this tiny corpus.
    assert text[-1]["lm_loss"] < text[0]["lm_loss"]
    joint = _metrics(run, "02-joint")
    assert all("lm_loss" in r and "ctc_loss" in r for r in joint)
    for i, (name, kind) in enumerate(
        [("acoustic", "acoustic"), ("text", "text"), ("joint", "joint")]
    ):
        folder = run / "stages" / f"{i:02d}-{name}" / "model"
        summary = json.loads((folder / "train_summary.json").read_text())
        assert summary["stage"] == {"index": i, "name": name, "kind": kind}
        saved = json.loads((folder / "config.json").read_text())
        assert saved["stage"]["name"] == name
    assert json.loads((final / "train_summary.json").read_text())["stage"]["name"] == "joint"
    # Each stage starts from the one before: the text stage's LoRA starts where acoustic left
    # it (untouched there), its adapter is the acoustic stage's final adapter.
    from safetensors.torch import load_file

    after_acoustic = load_file(str(run / "stages/00-acoustic/model/model.safetensors"))
    first_text = load_file(
        str(run / "stages/01-text/checkpoints/step-0000008/trainable.safetensors")
    )
    adapter = [k for k in after_acoustic if k.startswith("adapter.")]
    assert adapter and all(torch.equal(after_acoustic[k], first_text[k]) for k in adapter)


def test_resume_skips_finished_stages_and_continues_the_current_one(tmp_path, tiny_dirs):
    stages = [
        {"name": "text", "kind": "text", "train": {"max_steps": 2}},
        {"name": "joint", "kind": "joint", "train": {"max_steps": 4}},
    ]
    config = _staged(tmp_path, tiny_dirs, "whisper", stages)
    whole = train(config)
    reference = (whole / "model.safetensors").read_bytes()
    run = tmp_path / "run"
    # Pretend the joint stage was killed after step 2: drop its later checkpoints and its model.
    import shutil

    joint = run / "stages" / "01-joint"
    for ckpt in (joint / "checkpoints").glob("step-*"):
        if ckpt.name > "step-0000002":
            shutil.rmtree(ckpt)
    shutil.rmtree(joint / "model")
    text_model = (run / "stages/00-text/model/model.safetensors").stat().st_mtime_ns
    resumed = train(_staged(tmp_path, tiny_dirs, "whisper", stages), resume=True)
    assert (run / "stages/00-text/model/model.safetensors").stat().st_mtime_ns == text_model
    assert (resumed / "model.safetensors").read_bytes() == reference
    readings = json.loads((joint / "whisper_readings.json").read_text())
    assert len(readings) == len(TEXTS)


def test_a_stage_stopped_for_time_goes_on_when_its_time_is_raised(tmp_path, tiny_dirs):
    def config(minutes: float) -> RunConfig:
        stages = [{"name": "acoustic", "kind": "acoustic", "train": {"max_minutes": minutes}}]
        return _staged(tmp_path, tiny_dirs, "ctc", stages)

    train(config(1e-6))  # stops after its first step
    run = tmp_path / "run"
    assert [r["step"] for r in _metrics(run, "00-acoustic")] == [1]
    train(config(1e-6), resume=True)  # the same limit: finished, skipped
    assert [r["step"] for r in _metrics(run, "00-acoustic")] == [1]
    train(config(60.0), resume=True)  # raised: on from step 1 to max_steps (3)
    assert [r["step"] for r in _metrics(run, "00-acoustic")] == [1, 2, 3]
    summary = json.loads((run / "stages/00-acoustic/model/train_summary.json").read_text())
    assert summary["steps"] == 3


def test_a_model_of_another_prompt_version_is_refused(whisper_route, tmp_path):
    from speechllm.errors import ModelSourceError
    from speechllm.hub.shipped import CONFIG_FILE
    from speechllm.model.prompts import PROMPT_VERSION
    from speechllm.model.saving import read_model_config

    folder = whisper_route.save(tmp_path / "model")
    assert read_model_config(folder).speech_input == "whisper"
    meta = json.loads((folder / CONFIG_FILE).read_text())
    meta["prompt_version"] = PROMPT_VERSION - 1
    (folder / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelSourceError, match=f"prompt version {PROMPT_VERSION - 1}"):
        read_model_config(folder)


def test_decode_reads_each_clip_once_and_answers_as_generate(whisper_route, monkeypatch):
    from speechllm.inference.decode import decode

    model = whisper_route
    frames, _ = model.encoder([noise(1.0, 0), noise(2.0, 1)])
    clips = [frames[0], frames[1]]
    rows, tasks = [clips[0], clips[0], clips[1]], ["all", "sa", "asr"]
    alone = [
        model.generate(f[None], torch.tensor([f.shape[0]]), [t])[0]
        for f, t in zip(rows, tasks, strict=True)
    ]
    reads = []
    original = model.reader.read
    monkeypatch.setattr(model.reader, "read", lambda x, n: reads.append(len(x)) or original(x, n))
    assert decode(model, rows, tasks, batch_size=2) == alone
    assert sum(reads) == 2  # two clips, three rows


@pytest.mark.parametrize("name", ["cpu-whisper-route.yaml", "gpu-whisper-route.yaml"])
def test_the_staged_recipes_build(name, tiny_dirs, tmp_path):
    """The shipped recipe and its GPU-scale twin: valid configs whose every stage builds (tiny
    random weights in place of the configured checkpoints)."""
    repo = Path(__file__).resolve().parents[1]
    config = RunConfig.load(repo / "configs" / name)
    assert [s.kind for s in config.stages] == ["text", "joint"]
    assert config.model.speech_input == "whisper" and config.model.lora.enabled
    asr = save_tiny_whisper_asr(tmp_path / "tiny-whisper-asr")
    for i in range(len(config.stages)):
        stage = config.for_stage(i)
        assert stage.data.train and Path(stage.train.output_dir).name.startswith(f"{i:02d}-")
    config.model.encoder, config.model.llm = str(asr), str(tiny_dirs[1])
    parts = {p: n for p, n, _ in SpeechLLM.from_config(config.model).parameter_report()}
    assert parts["lora"] > 0 and parts["adapter"] == 0 and parts["llm"] == 0


def test_overrides_into_the_stage_list_are_refused_clearly(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "model: {speech_input: whisper}\ntrain: {ctc_weight: 0.0}\n"
        "stages: [{name: text, kind: text}]\n"
    )
    with pytest.raises(ConfigError, match="inside a list"):
        RunConfig.load(path, ["stages.0.train.max_steps=3"])
    # A stage is checked as a run of its own: its overrides cannot break a cross-field rule.
    with pytest.raises(ConfigError, match="ctc_weight"):
        RunConfig.from_dict(
            {
                "model": {"speech_input": "ctc"},
                "train": {"ctc_weight": 1.0},
                "stages": [{"name": "a", "kind": "joint", "train": {"ctc_weight": 0.0}}],
            }
        )


def test_joint_answers_on_readings_keep_the_entities_the_reading_holds():
    from speechllm.training.batches import on_readings

    gold = Utterance(
        "u1",
        "a.wav",
        2.0,
        "the eib met in brussels",
        entities=[("ORG", "eib"), ("PLACE", "brussels")],
        sentiment="Neutral",
    )
    unlabelled = Utterance("u2", "b.wav", 2.0, "hello there")
    got = on_readings(
        [gold, unlabelled], {"a.wav": "the i have met in brussels", "b.wav": "hello there"}
    )
    assert got[0].text == "the i have met in brussels"
    assert got[0].entities == [("PLACE", "brussels")] and got[0].sentiment == "Neutral"
    assert got[1].entities is None and gold.text == "the eib met in brussels"  # a copy
    # The `all` answer a reading-copying model is taught: markup on what it reads.
    assert (
        examples_for(got, ["all"])["all"][0].answer
        == "Neutral | the i have met in [PLACE brussels]"
    )


def test_joint_stage_leaves_out_clips_whisper_misread():
    from speechllm.training.batches import usable_readings

    clean = Utterance("u1", "a.wav", 2.0, "the committee met in brussels")
    looped = Utterance("u2", "b.wav", 2.0, "thank you very much")
    silent = Utterance("u3", "c.wav", 2.0, "we agree")
    readings = {
        "a.wav": "The committee met in Brussels.",  # normalised: no error
        "b.wav": "the first time i was in " * 20,
        "c.wav": "",
    }
    kept, dropped = usable_readings([clean, looped, silent], readings, max_wer=0.5)
    assert kept == [clean] and dropped == [looped, silent]


def test_a_joint_stage_whose_every_reading_is_wrong_says_so(tmp_path, tiny_dirs):
    stages = [{"name": "joint", "kind": "joint", "train": {"max_reading_wer": 0.01}}]
    with pytest.raises(ConfigError, match="max_reading_wer"):
        train(_staged(tmp_path, tiny_dirs, "whisper", stages))
