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


def test_export_merges_lora_into_a_plain_llm(tiny_dirs, tmp_path):
    import torch

    from speechllm.config import AdapterConfig, LoraSettings, ModelConfig
    from speechllm.model.speechllm import SpeechLLM

    w, lm = tiny_dirs
    torch.manual_seed(0)
    m = SpeechLLM.from_config(
        ModelConfig(
            encoder=str(w),
            llm=str(lm),
            adapter=AdapterConfig(hidden=48),
            lora=LoraSettings(enabled=True, r=4, alpha=8),
            max_new_tokens=8,
        )
    ).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    m.save(tmp_path / "run" / "model")  # a run directory: export finds model/ in it
    out = tmp_path / "export"
    result = runner.invoke(
        app, ["export", "--model", str(tmp_path / "run"), "--out", str(out), "--merge"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "llm" / "config.json").is_file() and (out / "model.safetensors").is_file()
    frames = torch.randn(1, 40, m.encoder.dim)
    lengths = torch.tensor([40])
    assert SpeechLLM.load(out).generate(frames, lengths, ["asr"]) == m.generate(
        frames, lengths, ["asr"]
    )
    again = runner.invoke(app, ["export", "--model", str(tmp_path / "run"), "--out", str(out)])
    # rich wraps long lines (tmp paths): compare with whitespace normalised
    assert again.exit_code == 2 and "not an empty folder" in " ".join(again.output.split())
    assert "Traceback" not in again.output
    copy = runner.invoke(
        app, ["export", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "c")]
    )
    assert copy.exit_code == 0, copy.output
    assert (tmp_path / "c" / "model.safetensors").read_bytes() == (
        tmp_path / "run" / "model" / "model.safetensors"
    ).read_bytes()
