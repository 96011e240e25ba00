import pytest

from speechllm.config import RunConfig
from speechllm.errors import ConfigError


def test_load_resolves_paths_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  train: [a.jsonl]\ntrain:\n  output_dir: out\n  lr: 0.01\n")
    cfg = RunConfig.load(p, ["train.max_steps=5", "model.adapter.stack=2"])
    assert cfg.data.train == [str(tmp_path / "a.jsonl")]
    assert cfg.train.output_dir == str(tmp_path / "out")
    assert cfg.train.max_steps == 5 and cfg.model.adapter.stack == 2 and cfg.train.lr == 0.01


def test_init_from_is_found_beside_the_config_file_or_kept_as_a_name(tmp_path):
    (tmp_path / "runs" / "text" / "model").mkdir(parents=True)
    configs = tmp_path / "configs"
    configs.mkdir()
    p = configs / "c.yaml"
    p.write_text(
        "train:\n  init_from: ../runs/text/model\n"
        "stages:\n  - {name: a, kind: joint, train: {init_from: ../runs/text}}\n"
        "  - {name: b, kind: joint, train: {init_from: speechllm-tiny.en}}\n"
    )
    cfg = RunConfig.load(p)
    assert cfg.train.init_from == str(tmp_path / "runs" / "text" / "model")
    assert cfg.stages[0].train["init_from"] == str(tmp_path / "runs" / "text")
    assert cfg.stages[1].train["init_from"] == "speechllm-tiny.en"  # a shipped model's name


@pytest.mark.parametrize(
    ("yaml_text", "match"),
    [
        ("train:\n  lrr: 1\n", "unknown key"),
        ("train:\n  lr: fast\n", "train.lr"),
        ("model:\n  adapter:\n    kind: conv\n", "model.adapter.kind"),
        ("data:\n  train: a.jsonl\n", "data.train"),
        ("- 1\n", "mapping"),
        ("model:\n  classifier_heads:\n    pooling: max\n", "model.classifier_heads.pooling"),
        ("train:\n  classifier_regularizer:\n    wieght: 1\n", "unknown key"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, yaml_text, match):
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError, match=match):
        RunConfig.load(p)


def test_classifier_sections(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "model:\n  classifier_heads: {enabled: true, pooling: attention, hidden: 64}\n"
        "train:\n  classifier_regularizer: {weight: 0.2}\n"
    )
    cfg = RunConfig.load(p)
    heads = cfg.model.classifier_heads
    assert heads.enabled and heads.pooling == "attention" and heads.hidden == 64
    assert cfg.train.classifier_regularizer.weight == 0.2
    default = RunConfig()
    assert not default.model.classifier_heads.enabled
    assert default.train.classifier_regularizer.weight == 0.0
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # what a run directory records reloads


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"model": {"adapter": {"stack": 0}}}, r"model.adapter.stack must be >= 1"),
        ({"model": {"lora": {"dropout": 1.0}}}, r"model.lora.dropout must be in \[0, 1\)"),
        ({"model": {"classifier_heads": {"hidden": -1}}}, "model.classifier_heads.hidden"),
        ({"model": {"max_new_tokens": 0}}, "model.max_new_tokens must be >= 1"),
        ({"data": {"tasks": []}}, "data.tasks is empty"),
        ({"data": {"task_weights": {"asr": 1.0, "sum": 1.0}}}, r"unknown task\(s\) \['sum'\]"),
        ({"data": {"task_weights": {"asr": -1.0}}}, "data.task_weights must be >= 0"),
        ({"train": {"batch_size": 0}}, "train.batch_size must be >= 1"),
        ({"train": {"keep_checkpoints": 0}}, "train.keep_checkpoints must be >= 1"),
        ({"train": {"lr": 0}}, "train.lr must be > 0"),
        ({"train": {"max_minutes": -1}}, "train.max_minutes must be >= 0"),
        (
            {
                "model": {"speech_input": "adapter"},
                "train": {"ctc_weight": 0, "ctc_warmup_steps": 5},
            },
            "ctc_warmup_steps trains with the CTC loss alone",
        ),
        (
            {"train": {"text_noise": {"delete": 1.5}}},
            r"train.text_noise.delete must be in \[0, 1\]",
        ),
        ({"train": {"spec_augment": {"time_masks": -2}}}, "train.spec_augment.time_masks"),
        (
            {"stages": [{"name": "a", "kind": "joint", "train": {"grad_accum": 0}}]},
            r"stages\[0\] \(a\).*grad_accum must be >= 1",
        ),
    ],
)
def test_values_out_of_range_and_contradictions_are_clear_errors(section, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_dict(section)


def test_model_checks_are_the_model_configs_own():
    """A saved model's config runs the same checks as a run's model section."""
    from speechllm.config import ModelConfig, build

    bad = build(ModelConfig, {"speech_input": "whisper", "classifier_heads": {"enabled": True}})
    with pytest.raises(ConfigError, match="whisper"):
        bad.validate()
    with pytest.raises(ConfigError, match="whisper"):
        RunConfig.from_dict(
            {"model": {"speech_input": "whisper", "classifier_heads": {"enabled": True}}}
        )
    ModelConfig().validate()
    RunConfig().validate()


def test_each_stage_starts_from_the_model_of_the_stage_before(tmp_path):
    config = RunConfig.from_dict(
        {
            "train": {"output_dir": str(tmp_path / "run"), "init_from": "/base/model"},
            "stages": [
                {"name": "text", "kind": "text"},
                {"name": "joint", "kind": "joint"},
                {"name": "again", "kind": "joint", "train": {"init_from": "/elsewhere"}},
            ],
        }
    )
    runs = [config.for_stage(i) for i in range(3)]
    assert runs[0].train.init_from == "/base/model"
    assert runs[1].train.init_from == str(tmp_path / "run/stages/00-text/model")
    assert runs[2].train.init_from == "/elsewhere"
    assert runs[1].train.output_dir == str(tmp_path / "run/stages/01-joint")
    assert not any(run.stages for run in runs)
