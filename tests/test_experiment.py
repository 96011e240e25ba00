"""`speechllm experiment`: row planning, the shipped ablation configs, and a real run on tiny models."""

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from speechllm.config import RunConfig
from speechllm.data.manifest import read_manifest
from speechllm.errors import ConfigError
from speechllm.model.speechllm import SpeechLLM
from speechllm.training.experiment import (
    ExperimentConfig,
    plan_rows,
    row_run_config,
    run_experiment,
    score_row,
    train_row,
)
from test_train import make_corpus

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["paper_ablation.yaml", "paper_ablation_gpu.yaml"])
def test_shipped_ablation_rows_are_cumulative_and_build(tmp_path, tiny_dirs, name):
    config, rows = ExperimentConfig.load(REPO / "configs" / name)
    plans = plan_rows(config, rows)
    assert [p.name for p in plans] == [
        "baseline projector",
        "proposed adapter",
        "+ synthetic labels",
        "+ classifier regularizer",
        "+ LoRA",
    ]
    assert [p.synthetic_labels for p in plans] == [False, False, True, True, True]
    # Each row keeps what the rows above set: the last one has the proposed adapter, the
    # regularizer and LoRA, and still the baseline row's shared settings.
    last = plans[-1].overrides
    assert last["model.adapter"]["kind"] == "stack"
    assert last["model.lora.enabled"] is True
    assert last["train.classifier_regularizer"] == {"weight": 0.3}
    assert last["data.tasks"] == ["asr", "ner", "sa"]
    # Every row resolves into a valid run config (types checked by RunConfig).
    configs = []
    for plan in plans:
        if not plan.synthetic_labels:
            plan.synthetic_labels = True  # the asr_only manifests are not on this machine
        configs.append(row_run_config(config, plan, 0, tmp_path))
    assert configs[0].model.adapter.kind == "baseline"
    assert configs[0].model.speech_input == "adapter"
    assert configs[1].model.adapter.kind == "stack" and not configs[1].model.lora.enabled
    assert configs[3].model.classifier_heads.enabled
    assert configs[4].model.lora.enabled
    assert all(c.train.max_minutes == config.budget_minutes for c in configs)
    assert len({c.train.output_dir for c in configs}) == len(configs)
    # Each row's model builds (tiny random weights in place of the configured checkpoints).
    w, lm = tiny_dirs
    for c in configs:
        c.model.encoder, c.model.llm = str(w), str(lm)
        parts = {p: n for p, n, _ in SpeechLLM.from_config(c.model).parameter_report()}
        assert parts["adapter"] > 0 and ("lora" in parts) == c.model.lora.enabled


@pytest.mark.parametrize(
    "name", ["cpu-smollm2-whisper-tiny.yaml", "gpu-tinyllama-whisper-small.yaml"]
)
def test_shipped_run_configs_build_the_model(name, tiny_dirs):
    """Full-scale configs are checked to build (on tiny random weights), not run."""
    config = RunConfig.load(REPO / "configs" / name)
    w, lm = tiny_dirs
    config.model.encoder, config.model.llm = str(w), str(lm)
    model = SpeechLLM.from_config(config.model)
    parts = {part: trainable for part, trainable, _ in model.parameter_report()}
    assert parts["adapter"] > 0
    assert ("lora" in parts) == config.model.lora.enabled
    assert parts["encoder"] == 0 and parts["llm"] == 0  # frozen


def _experiment(tmp_path, tiny_dirs, rows, **extra) -> Path:
    w, lm = tiny_dirs
    data = tmp_path / "data"
    make_corpus(data, n=8)
    (data / "m.jsonl").rename(data / "labelled.jsonl")
    make_corpus(data / "second", n=8, seed=1)
    base = {
        "model": {
            "encoder": str(w),
            "llm": str(lm),
            "adapter": {"hidden": 64},
            "max_new_tokens": 6,
        },
        "data": {"tasks": ["asr", "ner", "sa"]},
        "train": {
            "batch_size": 4,
            "lr": 3e-3,
            "warmup_steps": 1,
            "max_steps": 4,
            "eval_every": 0,
            "save_every": 2,
            "log_every": 2,
            "feature_cache": str(tmp_path / "features"),
        },
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    exp = {
        "base": "base.yaml",
        "output_dir": "out",
        "budget_minutes": 5,
        "data": {
            "labelled": ["data/labelled.jsonl"],
            "asr_only": ["data/second/m.jsonl"],
            "synthetic": ["data/second/m.jsonl"],
        },
        "eval": {"manifest": "data/labelled.jsonl", "max_utterances": 4, "batch_size": 4},
        "rows": rows,
        **extra,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def test_experiment_trains_scores_and_writes_results(tmp_path, tiny_dirs):
    path = _experiment(
        tmp_path,
        tiny_dirs,
        [
            {"name": "proposed adapter", "set": {"model.adapter": {"kind": "stack", "hidden": 64}}},
            {"name": "+ synthetic labels", "synthetic_labels": True},
            {"name": "+ LoRA", "set": {"model.lora": {"enabled": True, "r": 4, "alpha": 8}}},
        ],
    )
    config, rows = ExperimentConfig.load(path)
    logged: list[str] = []
    records = run_experiment(config, rows, train_row, score_row, log=logged.append)
    out = tmp_path / "out"
    assert [r["row"] for r in records] == ["proposed adapter", "+ synthetic labels", "+ LoRA"]
    for r in records:
        assert r["train_steps"] == 4
        assert {"wer", "ner_f1", "sa_macro_f1", "slue_score"} <= r["metrics"].keys()
    # LoRA adds trainable parameters; the adapter is the same in every row.
    assert records[2]["params"]["total"] > records[1]["params"]["total"]
    assert records[0]["params"]["adapter"] == records[2]["params"]["adapter"]
    # Rows without synthetic labels train on the ASR-only half with its labels dropped.
    label_free = read_manifest(out / "asr_only.jsonl", require_audio=True)
    assert len(label_free) == 8
    assert all(u.entities is None and u.sentiment is None for u in label_free)
    run0 = json.loads((out / "proposed-adapter/seed-0/config.json").read_text())
    run1 = json.loads((out / "synthetic-labels/seed-0/config.json").read_text())
    assert run0["data"]["train"][1] == str(out / "asr_only.jsonl")
    assert run1["data"]["train"][1] == str(tmp_path / "data/second/m.jsonl")
    table = (out / "results.md").read_text()
    assert "| proposed adapter | " in table and "| + LoRA | " in table
    assert json.loads((out / "results.json").read_text()) == records
    with Image.open(out / "results.png") as image:
        assert image.size[0] > 400 and image.size[1] > 200
    # A second call keeps every scored row instead of training it again.
    logged.clear()
    again = run_experiment(config, rows, train_row, score_row, log=logged.append)
    assert all("already scored" in line for line in logged)
    assert [r["metrics"] for r in again] == [r["metrics"] for r in records]
    # --scored-only tabulates what is scored and trains nothing, even for a row never run.
    (out / "lora/seed-0/result.json").unlink()
    logged.clear()
    partial = run_experiment(config, rows, train_row, score_row, logged.append, scored_only=True)
    assert [r["row"] for r in partial] == ["proposed adapter", "+ synthetic labels"]
    assert "| + LoRA | " not in (out / "results.md").read_text()
    assert any("not scored yet" in line for line in logged)


def test_rows_may_not_override_what_the_experiment_owns(tmp_path, tiny_dirs):
    path = _experiment(tmp_path, tiny_dirs, [{"name": "a", "set": {"train.max_minutes": 1}}])
    config, rows = ExperimentConfig.load(path)
    with pytest.raises(ConfigError, match="experiment sets"):
        row_run_config(config, plan_rows(config, rows)[0], 0, tmp_path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"rows": []}, "no rows"),
        ({"rows": [{"name": "a"}, {"name": "a"}]}, "distinct name"),
        (
            {"rows": [{"name": "a", "synthetic_labels": True}], "data": {"labelled": ["x"]}},
            "annotate",
        ),
        ({"rows": [{"name": "a", "colour": 1}]}, "unknown key"),
        ({"budget": 3}, "unknown key"),
    ],
)
def test_bad_experiment_config_is_a_clear_error(tmp_path, tiny_dirs, change, match):
    path = _experiment(tmp_path, tiny_dirs, [{"name": "a"}])
    raw = yaml.safe_load(path.read_text())
    raw.update(change)
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match):
        ExperimentConfig.load(path)
