"""Typed configuration: one YAML file = one `RunConfig` (model + data + training).

Every field has a docstring-style comment; unknown keys are an error (a typo must not be silently
ignored), and `RunConfig.to_dict()` is what a run directory records.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from speechllm.data.audio import WHISPER_WINDOW_SECONDS
from speechllm.errors import ConfigError

DECODE_BATCH = 24
"""Rows (clip, task) decoded together by default: 8 clips x 3 tasks. Decoding a 135M LLM on a CPU
is bound by reading its weights once per step, so more rows per step cost little: 24 rows
decoded 1.25x faster than 8 (2.5x faster than one by one), answers identical
(`benchmarks/inference.py`, figures in benchmarks/README.md)."""


@dataclass
class AdapterConfig:
    """The trainable bridge from encoder frames to LLM input embeddings."""

    kind: Literal["stack", "baseline"] = "stack"
    """`stack`: concatenate `stack` consecutive frames then a small MLP (the proposed adapter).
    `baseline`: no down-sampling, one frame per LLM position, a wider MLP (Ultravox/SLAM-style)."""
    stack: int = 4
    """Frames concatenated per output vector (`stack` only): 50 Hz Whisper frames -> 12.5 Hz."""
    hidden: int = 1024
    """Width of the MLP's hidden layers."""
    depth: int = 2
    """Number of linear layers in the MLP (>= 1)."""
    activation: Literal["gelu", "relu", "silu"] = "gelu"
    """Non-linearity between the linear layers."""
    input_norm: bool = True
    """LayerNorm on the (stacked) input frames before the MLP."""
    match_embedding_scale: bool = True
    """RMS-normalise the output and scale it by a learned scalar initialised to the RMS of the
    LLM's token embeddings, so speech vectors start at the scale the LLM expects."""

    def validate(self, where: str = "model.adapter") -> None:
        """Range checks (ConfigError)."""
        _check(self.stack >= 1, f"{where}.stack must be >= 1, got {self.stack}")
        _check(self.hidden >= 1, f"{where}.hidden must be >= 1, got {self.hidden}")
        _check(self.depth >= 1, f"{where}.depth must be >= 1, got {self.depth}")


@dataclass
class LoraSettings:
    """Optional LoRA on the LLM (peft)."""

    enabled: bool = False
    """Train low-rank adapters on the LLM; False keeps the LLM frozen."""
    r: int = 8
    """Rank of the update matrices."""
    alpha: int = 16
    """Scaling numerator (update is scaled by alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Names of the LLM's linear layers that get LoRA."""

    def validate(self, where: str = "model.lora") -> None:
        """Range checks (ConfigError)."""
        _check(self.r >= 1, f"{where}.r must be >= 1, got {self.r}")
        _check(self.alpha > 0, f"{where}.alpha must be > 0, got {self.alpha}")
        _fraction(self.dropout, f"{where}.dropout", upper_open=True)
        _check(
            bool(self.target_modules) or not self.enabled,
            f"{where}.target_modules is empty: name the LLM's linear layers that get LoRA",
        )


@dataclass
class ClassifierHeadsConfig:
    """Utterance-level classifier heads on the adapter output (`regularizer.py`).

    Part of the model: heads that exist are saved with the trained weights and rebuilt on load.
    Trained only when `train.classifier_regularizer.weight` > 0.
    """

    enabled: bool = False
    """Build the heads. False keeps the model (and its saved weights) exactly as without them."""
    pooling: Literal["mean", "attention"] = "mean"
    """How the adapter vectors (B, T', D) become one vector per clip: `mean` over the clip's
    positions, or `attention`: a learned score per position, softmax over the clip (starts out
    as the mean)."""
    hidden: int = 256
    """Hidden width of each head's MLP; 0 = a linear head on the pooled vector."""
    dropout: float = 0.1
    """Dropout before each head's output layer (training only)."""

    def validate(self, where: str = "model.classifier_heads") -> None:
        """Range checks (ConfigError)."""
        _check(self.hidden >= 0, f"{where}.hidden must be >= 0, got {self.hidden}")
        _fraction(self.dropout, f"{where}.dropout", upper_open=True)


@dataclass
class ModelConfig:
    """Which pretrained parts to combine and how."""

    encoder: str = "whisper-tiny.en"
    """Whisper model: a packaged name (`speechllm models list`), a local HF dir or a hub id."""
    llm: str = "smollm2-135m-instruct"
    """Causal LM: a packaged name, a local HF dir or a hub id."""
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    """The adapter between them."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA on the LLM."""
    speech_input: Literal["adapter", "ctc", "whisper"] = "ctc"
    """What the LLM reads for the speech. `adapter`: the adapter's output vectors, one per stacked
    frame (the paper's design). `ctc`: the adapter's CTC posteriors over the LLM vocabulary with
    blank frames dropped and repeats merged, each segment fed as the posterior-weighted mix of
    token embeddings (as LegoSLM does): speech arrives as near-text, about one position per token,
    which a frozen LLM reads from the first LM step and which shortens the LLM's input ~4x.
    Needs `train.ctc_weight` > 0 and a CTC warm-up (`train.ctc_warmup_steps`).
    `whisper`: Whisper's own decoder (frozen, from the same checkpoint as the encoder) reads the
    encoder frames; its SLUE-normalised transcript enters the LLM as the LLM's token embeddings
    (`whisper_reader.py`). Nothing acoustic trains: LoRA learns the tasks, mostly from text."""
    ctc_vocab: Literal["train", "all"] = "train"
    """Tokens the CTC head scores: `train` = those in the training transcripts (several times
    cheaper on SmolLM2's 49k vocabulary; the list is saved with the model and widened, never
    narrowed, when fine-tuning), `all` = the whole embedding table."""
    classifier_heads: ClassifierHeadsConfig = field(default_factory=ClassifierHeadsConfig)
    """Sentiment and entity-tag heads on the pooled adapter output (off by default)."""
    max_new_tokens: int = 128
    """Generation length limit at inference."""
    repetition_guard: int = 4
    """At inference, forbid repeating any n-gram of this size (`no_repeat_ngram_size`); 0 = off.
    Guards against the loops an under-trained adapter produces."""

    def validate(self) -> None:
        """Range and cross-field checks of the model alone (ConfigError); `RunConfig.validate`
        and every saved model's `SpeechLLMConfig` run them."""
        self.adapter.validate()
        self.lora.validate()
        self.classifier_heads.validate()
        _check(
            self.max_new_tokens >= 1,
            f"model.max_new_tokens must be >= 1, got {self.max_new_tokens}",
        )
        _check(
            self.repetition_guard >= 0,
            f"model.repetition_guard must be >= 0 (0 = off), got {self.repetition_guard}",
        )
        if self.speech_input == "whisper" and self.classifier_heads.enabled:
            raise ConfigError(
                "model.classifier_heads read the adapter's vectors, which speech_input 'whisper' "
                "does not use: disable the heads or choose another speech_input"
            )


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
        _check(bool(self.tasks), f"{where}.tasks is empty: name at least one task")
        known = typing.get_args(typing.get_args(typing.get_type_hints(DataConfig)["tasks"])[0])
        unknown = sorted(set(self.task_weights) - set(known))
        _check(not unknown, f"{where}.task_weights: unknown task(s) {unknown}; known: {known}")
        bad = {k: w for k, w in self.task_weights.items() if w < 0}
        _check(not bad, f"{where}.task_weights must be >= 0, got {bad}")
        _check(self.max_seconds > 0, f"{where}.max_seconds must be > 0, got {self.max_seconds}")
        _check(
            self.max_eval_utterances >= 0,
            f"{where}.max_eval_utterances must be >= 0, got {self.max_eval_utterances}",
        )


@dataclass
class ClassifierRegularizerConfig:
    """Auxiliary utterance-classification loss on the adapter output (`regularizer.py`).

    The heads' shape (pooling, width) is part of the model and lives in `model.classifier_heads`,
    so that a saved model can rebuild them; this section says only how much their loss counts.
    """

    weight: float = 0.0
    """Weight of `cls_loss` (mean of the sentiment cross-entropy and the entity-tag BCE, each over
    the examples that have that label) added to the training loss; 0 = off. Needs
    `model.classifier_heads.enabled`. Counted on full steps, not on CTC-only warm-up steps."""


@dataclass
class TextNoiseConfig:
    """How a transcript is corrupted when it stands in for speech (`kind: text` stages), so that
    what the LLM learns from text transfers to the errors of the speech front end."""

    substitute: float = 0.04
    """Probability that a token is replaced by one of its nearest neighbours in the LLM's
    embedding table (near tokens: the kind of confusion a recogniser makes)."""
    delete: float = 0.02
    """Probability that a token is dropped."""
    insert: float = 0.02
    """Probability that a near neighbour of a token is inserted after it."""
    smear: float = 0.0
    """Weight moved from each token's embedding to its nearest neighbours' (soft posteriors, as
    the CTC route delivers); 0 for hard tokens (the `whisper` route)."""
    neighbours: int = 8
    """How many nearest tokens (cosine, in the embedding table) substitutions draw from."""

    def validate(self, where: str = "train.text_noise") -> None:
        """Range checks (ConfigError)."""
        for name in ("substitute", "delete", "insert", "smear"):
            _fraction(getattr(self, name), f"{where}.{name}")
        _check(self.neighbours >= 1, f"{where}.neighbours must be >= 1, got {self.neighbours}")


@dataclass
class SpecAugmentConfig:
    """Masking of cached encoder frames in CTC-only (`acoustic`) steps, as SpecAugment masks
    spectrograms (Park et al. 2019): time spans and feature channels set to zero."""

    time_masks: int = 0
    """Time spans masked per clip (0 = off)."""
    time_width: float = 0.05
    """Largest masked span as a fraction of the clip."""
    feature_masks: int = 0
    """Channel bands masked per clip (0 = off)."""
    feature_width: int = 27
    """Largest masked band, in channels."""

    def validate(self, where: str = "train.spec_augment") -> None:
        """Range checks (ConfigError)."""
        for name in ("time_masks", "feature_masks", "feature_width"):
            value = getattr(self, name)
            _check(value >= 0, f"{where}.{name} must be >= 0, got {value}")
        _fraction(self.time_width, f"{where}.time_width")


@dataclass
class TrainConfig:
    """Optimisation, logging and checkpointing."""

    output_dir: str = "runs/default"
    """Run directory: config, checkpoints, metrics.jsonl, final model."""
    seed: int = 0
    """Seed for sampling, initialisation and dropout."""
    batch_size: int = 8
    """Examples per optimiser micro-batch (per process)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimiser step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW)."""
    lora_lr: float | None = None
    """Peak learning rate of the LoRA weights (None = `lr`). The adapter starts from random and
    wants a high rate; LoRA updates a pretrained LLM and wants a lower one."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int = 50
    """Linear warm-up steps, then cosine decay to 10% of `lr` at `max_steps`."""
    max_steps: int = 1000
    """Optimiser steps in total."""
    max_minutes: float | None = None
    """Stop (and save) after this many minutes of training, whatever `max_steps` says."""
    grad_clip: float = 1.0
    """Max global gradient norm."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Autocast dtype. bf16 pays off on GPUs and CPUs with native bf16 (AVX512-BF16/AMX); on CPUs
    without it (e.g. the 2-core AMD EPYC this was developed on) a bf16 backward step measured
    25x slower than fp32, hence the fp32 default."""
    ctc_weight: float = 1.0
    """Weight of the auxiliary CTC loss on the adapter output over the LLM's vocabulary (logits =
    adapter output x the LLM's input-embedding table, plus a learned blank); 0 disables it. It
    pulls each speech vector towards the embedding of the word being spoken, which aligns the
    adapter far faster than the LM loss alone."""
    ctc_warmup_steps: int = 0
    """First N steps train the adapter with the CTC loss alone, without running the LLM: cheap
    steps that pull speech vectors towards the spoken tokens' embeddings before the LM loss starts
    (requires ctc_weight > 0)."""
    ctc_warmup_batch_size: int | None = None
    """Examples per CTC-only warm-up step (None = `batch_size`). Those steps cost ~20x less per
    example than full steps, so a larger batch is cheap and steadies the CTC loss."""
    eval_every: int = 200
    """Evaluate on the held-out manifests every N steps (0 = only at the end)."""
    save_every: int = 100
    """Write a resumable checkpoint every N steps."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (the oldest are deleted)."""
    log_every: int = 10
    """Append training metrics to metrics.jsonl every N steps."""
    classifier_regularizer: ClassifierRegularizerConfig = field(
        default_factory=ClassifierRegularizerConfig
    )
    """Sentiment / entity-tag classifier loss on the pooled adapter output."""
    init_from: str | None = None
    """A run directory whose trained weights (adapter, LoRA, classifier heads where both models
    have them) initialise this run (fine-tuning)."""
    feature_cache: str | None = None
    """Folder of cached encoder outputs; default `$SPEECHLLM_CACHE/features`."""
    text_noise: TextNoiseConfig = field(default_factory=TextNoiseConfig)
    """Corruption of transcripts that stand in for speech in `text` stages."""
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    """Masking of cached frames in CTC-only steps (off by default)."""

    def validate(self, where: str = "train") -> None:
        """Range and cross-field checks of the training section (ConfigError)."""
        at_least = {
            "batch_size": 1,
            "grad_accum": 1,
            "warmup_steps": 0,
            "max_steps": 0,
            "ctc_warmup_steps": 0,
            "eval_every": 0,
            "save_every": 1,
            "keep_checkpoints": 1,
            "log_every": 1,
        }
        for name, least in at_least.items():
            value = getattr(self, name)
            _check(value >= least, f"{where}.{name} must be >= {least}, got {value}")
        for name in ("lr", "grad_clip"):
            value = getattr(self, name)
            _check(value > 0, f"{where}.{name} must be > 0, got {value}")
        for name in ("weight_decay", "ctc_weight"):
            value = getattr(self, name)
            _check(value >= 0, f"{where}.{name} must be >= 0, got {value}")
        _check(
            self.lora_lr is None or self.lora_lr > 0,
            f"{where}.lora_lr must be > 0 (or null: lr), got {self.lora_lr}",
        )
        _check(
            self.max_minutes is None or self.max_minutes >= 0,
            f"{where}.max_minutes must be >= 0 (or null: no limit), got {self.max_minutes}",
        )
        _check(
            self.ctc_warmup_batch_size is None or self.ctc_warmup_batch_size >= 1,
            f"{where}.ctc_warmup_batch_size must be >= 1 (or null: batch_size), "
            f"got {self.ctc_warmup_batch_size}",
        )
        _check(
            self.ctc_warmup_steps == 0 or self.ctc_weight > 0,
            f"{where}.ctc_warmup_steps trains with the CTC loss alone: set {where}.ctc_weight > 0",
        )
        weight = self.classifier_regularizer.weight
        _check(weight >= 0, f"{where}.classifier_regularizer.weight must be >= 0, got {weight}")
        self.text_noise.validate(f"{where}.text_noise")
        self.spec_augment.validate(f"{where}.spec_augment")


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
        without stages, writing to `<output_dir>/stages/<NN>-<name>`."""
        stage = self.stages[index]
        where = f"stages[{index}] ({stage.name})"
        train = {**dataclasses.asdict(self.train), **stage.train}
        data = {**dataclasses.asdict(self.data), **stage.data}
        train["output_dir"] = str(
            Path(self.train.output_dir) / "stages" / stage_folder(index, stage.name)
        )
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
        for stage in config.stages:
            for key in ("train", "eval"):
                if key in stage.data:
                    stage.data[key] = [_resolve(base, p) for p in stage.data[key]]
        return config


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _fraction(value: float, key: str, upper_open: bool = False) -> None:
    """A probability-like value: in [0, 1] (or [0, 1) with `upper_open`)."""
    ok = 0 <= value < 1 if upper_open else 0 <= value <= 1
    _check(ok, f"{key} must be in [0, 1{')' if upper_open else ']'}, got {value}")


def _resolve(base: Path, value: str) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def build(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking keys and (shallowly) types; `where` names
    the section in error messages. The one builder of every typed config (runs, stages,
    experiment rows)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is list else None
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, key)
        elif item is not None and dataclasses.is_dataclass(item):
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected a list, got {value!r}")
            kwargs[name] = [build(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        else:
            _check_type(hint, value, key)
            kwargs[name] = value
    return cls(**kwargs)


def _check_type(hint: Any, value: Any, key: str) -> None:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                _check_type(arg, value, key)
                return
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} matches none of {[str(a) for a in args]}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null")
        return
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        for i, item in enumerate(value):
            _check_type(args[0], item, f"{key}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")


def stage_folder(index: int, name: str) -> str:
    """Folder name of stage `index` inside `<output_dir>/stages/`."""
    return f"{index:02d}-{name}"
