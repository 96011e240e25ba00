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
