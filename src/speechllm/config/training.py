"""The train section of a run's config: optimisation, auxiliary losses, corruption of what stands
in for speech, logging and checkpointing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from speechllm.config.checks import check, fraction


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
            fraction(getattr(self, name), f"{where}.{name}")
        check(self.neighbours >= 1, f"{where}.neighbours must be >= 1, got {self.neighbours}")


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
            check(value >= 0, f"{where}.{name} must be >= 0, got {value}")
        fraction(self.time_width, f"{where}.time_width")


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
    chunk_tokens: int | None = None
    """Run each micro-batch as length-sorted chunks of at most this many LLM positions (rows x
    padded length), forward and backward per chunk, each chunk's loss weighted by its share of
    the batch so the gradient is the whole batch's (`training.chunks`). A batch is padded to its
    longest example: chunks of similar length compute less padding, and hold the activations of
    one chunk at a time. The batches themselves are unchanged. None = the whole batch at once."""
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
    """A run directory, model folder or shipped model's name (`--model` names) whose trained
    weights (adapter, LoRA, classifier heads where both models have them) initialise this run
    (fine-tuning). A relative folder is found beside the config file, as the other paths are."""
    joint_answers: Literal["gold", "reading"] = "gold"
    """`whisper` route, `joint` stage: the answers it teaches. `gold`: written on the gold
    transcript, so the LLM also learns to mend Whisper's reading. `reading`: written on Whisper's
    reading of the clip (the gold entities it holds, the gold sentiment), what a model that copies
    its reading (`model.copy_reading`) answers. Measured once each (docs/recipe.md): `gold` scored
    the better SLUE score; both are kept to compare."""
    synthetic_sentiment_loss: bool = True
    """Whether rows whose sentiment is synthetic (named in a manifest row's `synthetic` list:
    the VADER lexicon's guess on parliament speech, an LLM annotator's) teach sentiment. False:
    they give no `sa` examples and no loss on the sentiment word of their `all` answers, while the
    rest of those answers (transcript, entities) still teaches; the sentiment classifier skips
    them too. Dropping the rows instead would also drop what they teach about entities."""
    sentiment_loss: bool = True
    """Whether this stage teaches sentiment at all. False: every row is treated as one whose
    sentiment is synthetic with `synthetic_sentiment_loss` off (no `sa` examples, no loss on the
    sentiment word of `all` answers, no classifier target). For a short stage on a few hundred
    clips after a text stage that learnt sentiment from ten thousand snippets: a few hundred
    gold labels there move the decision more by their draw than by what they add."""
    max_reading_wer: float | None = 0.5
    """`whisper` route, `joint` stage: clips whose Whisper reading is further than this WER (a
    fraction) from the gold transcript are left out of the stage (`training.batches.usable_readings`):
    looped or empty readings of heavily augmented clips. None keeps every clip."""
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
        if self.chunk_tokens is not None:
            at_least["chunk_tokens"] = 1
        for name, least in at_least.items():
            value = getattr(self, name)
            check(value >= least, f"{where}.{name} must be >= {least}, got {value}")
        check(
            self.chunk_tokens is None or self.classifier_regularizer.weight == 0,
            f"{where}.chunk_tokens: chunked steps cannot weight the classifier regularizer's "
            f"loss exactly; set {where}.chunk_tokens: null or classifier_regularizer.weight: 0",
        )
        for name in ("lr", "grad_clip"):
            value = getattr(self, name)
            check(value > 0, f"{where}.{name} must be > 0, got {value}")
        for name in ("weight_decay", "ctc_weight"):
            value = getattr(self, name)
            check(value >= 0, f"{where}.{name} must be >= 0, got {value}")
        check(
            self.lora_lr is None or self.lora_lr > 0,
            f"{where}.lora_lr must be > 0 (or null: lr), got {self.lora_lr}",
        )
        check(
            self.max_minutes is None or self.max_minutes >= 0,
            f"{where}.max_minutes must be >= 0 (or null: no limit), got {self.max_minutes}",
        )
        check(
            self.ctc_warmup_batch_size is None or self.ctc_warmup_batch_size >= 1,
            f"{where}.ctc_warmup_batch_size must be >= 1 (or null: batch_size), "
            f"got {self.ctc_warmup_batch_size}",
        )
        check(
            self.ctc_warmup_steps == 0 or self.ctc_weight > 0,
            f"{where}.ctc_warmup_steps trains with the CTC loss alone: set {where}.ctc_weight > 0",
        )
        check(
            self.max_reading_wer is None or self.max_reading_wer > 0,
            f"{where}.max_reading_wer must be > 0 (or null: keep every clip), "
            f"got {self.max_reading_wer}",
        )
        weight = self.classifier_regularizer.weight
        check(weight >= 0, f"{where}.classifier_regularizer.weight must be >= 0, got {weight}")
        self.text_noise.validate(f"{where}.text_noise")
        self.spec_augment.validate(f"{where}.spec_augment")
