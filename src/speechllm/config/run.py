"""A whole run's config (`RunConfig`: model + data + train + stages), read from YAML with
`section.key=value` overrides, and the data section.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from speechllm.config.checks import build, check
from speechllm.config.model import ModelConfig
from speechllm.config.training import TrainConfig
from speechllm.data.audio import WHISPER_WINDOW_SECONDS
from speechllm.errors import ConfigError

DECODE_BATCH = 24
"""Rows (clip, task) decoded together by default: 8 clips x 3 tasks. Decoding a 135M LLM on a CPU
is bound by reading its weights once per step, so more rows per step cost little: 24 rows
decoded 1.25x faster than 8 (2.5x faster than one by one), answers identical
(`benchmarks/inference.py`, figures in benchmarks/README.md)."""


@dataclass
class DataConfig:
    """Manifests to train and evaluate on."""

    train: list[str] = field(default_factory=list)
    """Training manifests (JSONL); relative paths resolve against the config file's folder."""
    eval: list[str] = field(default_factory=list)
    """Held-out manifests evaluated every `train.eval_every` steps."""
    tasks: list[Literal["asr", "ner", "sa", "all"]] = field(
        default_factory=lambda: ["asr", "ner", "sa"]
    )
    """Tasks to train; an utterance yields a task's example only where it has that task's label."""
    task_weights: dict[str, float] = field(
        default_factory=lambda: {"asr": 1.0, "ner": 1.0, "sa": 1.0}
    )
    """Relative sampling weight of each task when mixing examples into batches."""
    max_eval_utterances: int = 64
    """Utterances decoded per periodic evaluation (the first N of the eval manifests)."""
    max_seconds: float = WHISPER_WINDOW_SECONDS
    """Utterances longer than this are skipped (Whisper's window is 30 s)."""

    def validate(self, where: str = "data") -> None:
        """Range and cross-field checks (ConfigError)."""
        check(bool(self.tasks), f"{where}.tasks is empty: name at least one task")
        known = typing.get_args(typing.get_args(typing.get_type_hints(DataConfig)["tasks"])[0])
        unknown = sorted(set(self.task_weights) - set(known))
        check(not unknown, f"{where}.task_weights: unknown task(s) {unknown}; known: {known}")
        bad = {k: w for k, w in self.task_weights.items() if w < 0}
        check(not bad, f"{where}.task_weights must be >= 0, got {bad}")
        check(self.max_seconds > 0, f"{where}.max_seconds must be > 0, got {self.max_seconds}")
        check(
            self.max_eval_utterances >= 0,
            f"{where}.max_eval_utterances must be >= 0, got {self.max_eval_utterances}",
        )


@dataclass
class StageConfig:
    """One stage of a staged recipe (`RunConfig.stages`): what trains, on what, for how long.

    Each stage is a training run of its own in `<output_dir>/stages/<NN>-<name>`, resumable on its
    own, initialised from the stage before (the first from `train.init_from`)."""

    name: str = "stage"
    """A short name, used in the stage's folder name and recorded in its model."""
    kind: Literal["acoustic", "text", "joint"] = "joint"
    """`acoustic`: adapter + CTC head only, on cached encoder frames, no LLM forward.
    `text`: the LLM side (LoRA) learns the tasks from transcripts that stand in for the speech
    (token embeddings, corrupted per `train.text_noise`): no audio, no encoder. `joint`:
    end-to-end on audio (for `speech_input: whisper`, on Whisper's transcripts of the audio)."""
    train: dict[str, Any] = field(default_factory=dict)
    """Overrides of the `train` section for this stage (e.g. `max_steps`, `lr`)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Overrides of the `data` section for this stage (e.g. `train` manifests, `tasks`)."""


@dataclass
class RunConfig:
    """A whole run: what `speechllm train CONFIG.yaml` reads."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stages: list[StageConfig] = field(default_factory=list)
    """Stages run in order by `speechllm train` (empty: one run of kind `joint`)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        config = build(cls, data, "")
        config.validate()
        return config

    def validate(self) -> None:
        """Every check of a run (ConfigError): each section's own (`ModelConfig.validate`,
        `DataConfig.validate`, `TrainConfig.validate`), then what spans sections and stages."""
        tc, mc = self.train, self.model
        mc.validate()
        self.data.validate()
        tc.validate()
        if mc.speech_input == "ctc" and tc.ctc_weight <= 0:
            raise ConfigError(
                "model.speech_input 'ctc' feeds the LLM the CTC head's output: set "
                "train.ctc_weight > 0"
            )
        if tc.classifier_regularizer.weight > 0 and not mc.classifier_heads.enabled:
            raise ConfigError(
                "train.classifier_regularizer.weight > 0 trains the classifier heads, but the "
                "model has none: set model.classifier_heads.enabled: true"
            )
        if not tc.sentiment_loss and set(self.data.tasks) <= {"sa"}:
            raise ConfigError(
                "train.sentiment_loss: false teaches no sentiment, and data.tasks "
                f"{self.data.tasks} holds nothing else to learn: add asr, ner or all"
            )
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stages: names must differ, got {names}")
        for i, stage in enumerate(self.stages):
            if stage.kind == "acoustic" and mc.speech_input == "whisper":
                raise ConfigError(
                    f"stages[{i}] ({stage.name}): an acoustic stage trains the adapter's CTC "
                    "head, which speech_input 'whisper' does not use"
                )
            self.for_stage(i)  # its overrides must build a valid config

    def for_stage(self, index: int) -> RunConfig:
        """The single-run config of stage `index`: this config with the stage's overrides,
        without stages, writing to `<output_dir>/stages/<NN>-<name>/`, initialised (unless the
        stage sets `init_from`) from the model of the stage before; the first stage from
        `train.init_from`."""
        stage = self.stages[index]
        where = f"stages[{index}] ({stage.name})"
        train = {**dataclasses.asdict(self.train), **stage.train}
        data = {**dataclasses.asdict(self.data), **stage.data}
        train["output_dir"] = str(self.stage_dir(index))
        if index > 0 and "init_from" not in stage.train:
            train["init_from"] = str(self.stage_dir(index - 1) / "model")
        config = RunConfig(
            model=self.model,
            data=build(DataConfig, data, f"{where}.data"),
            train=build(TrainConfig, train, f"{where}.train"),
        )
        try:
            config.validate()  # the stage's own checks, with its overrides
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        return config

    def stage_dir(self, index: int) -> Path:
        """The run folder of stage `index`: `<output_dir>/stages/<NN>-<name>`."""
        return Path(self.train.output_dir) / "stages" / stage_folder(index, self.stages[index].name)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> RunConfig:
        """Read a YAML file; `overrides` are `section.key=value` strings (value parsed as YAML).

        Relative manifest paths and `output_dir` resolve against the YAML file's folder.
        """
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        for item in overrides or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} is not of the form section.key=value")
            node = raw
            parts = key.split(".")
            for part in parts[:-1]:
                if not isinstance(node, dict):
                    raise ConfigError(
                        f"override {item!r}: {part!r} is inside a list; set the whole list "
                        "(e.g. stages=[...])"
                    )
                node = node.setdefault(part, {})
            node[parts[-1]] = yaml.safe_load(value)
        config = cls.from_dict(raw)
        base = path.parent
        config.data.train = [_resolve(base, p) for p in config.data.train]
        config.data.eval = [_resolve(base, p) for p in config.data.eval]
        config.train.output_dir = _resolve(base, config.train.output_dir)
        if config.train.init_from is not None:
            config.train.init_from = _resolve_source(base, config.train.init_from)
        for stage in config.stages:
            for key in ("train", "eval"):
                if key in stage.data:
                    stage.data[key] = [_resolve(base, p) for p in stage.data[key]]
            if isinstance(stage.train.get("init_from"), str):
                stage.train["init_from"] = _resolve_source(base, stage.train["init_from"])
        return config


def _resolve(base: Path, value: str) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_source(base: Path, value: str) -> str:
    """`train.init_from`: a folder relative to the config file's folder, as the other paths are,
    where one is there; otherwise as written (a shipped model's name, a hub id, a folder
    relative to the working directory)."""
    p = Path(value).expanduser()
    return str((base / p).resolve()) if not p.is_absolute() and (base / p).exists() else value


def stage_folder(index: int, name: str) -> str:
    """Folder name of stage `index` inside `<output_dir>/stages/`."""
    return f"{index:02d}-{name}"
