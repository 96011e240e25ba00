"""Fast CLI checks (no packaged weights needed)."""

import yaml
from typer.testing import CliRunner

from speechllm.cli import app

runner = CliRunner()


def test_models_list_names_the_packaged_models():
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    for name in ("whisper-tiny.en", "whisper-base", "smollm2-135m-instruct"):
        assert name in result.output


def test_unknown_model_is_one_clear_error():
    result = runner.invoke(app, ["models", "fetch", "no-such-model"])
    assert result.exit_code == 2
    assert "no-such-model" in result.output and "Traceback" not in result.output


def test_info_on_a_tiny_config(tiny_dirs, tmp_path):
    w, lm = tiny_dirs
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump({"model": {"encoder": str(w), "llm": str(lm), "lora": {"enabled": True}}})
    )
    result = runner.invoke(app, ["info", str(cfg)])
    assert result.exit_code == 0, result.output
    for part in ("encoder", "adapter", "llm", "lora", "total"):
        assert part in result.output


def test_bad_config_is_reported_without_traceback(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lrr: 1\n")
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and "lrr" in result.output and "Traceback" not in result.output


def test_infer_rejects_unknown_task(tmp_path):
    result = runner.invoke(app, ["infer", "--model", str(tmp_path), "--task", "pos", "x.wav"])
    assert result.exit_code == 2 and "--task" in result.output
