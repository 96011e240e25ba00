"""The model section of a run's config: which pretrained parts, and how they are joined.

A saved model records the same fields in its config.json (`speechllm.model.configuration`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from speechllm.config.checks import check, fraction


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
        check(self.stack >= 1, f"{where}.stack must be >= 1, got {self.stack}")
        check(self.hidden >= 1, f"{where}.hidden must be >= 1, got {self.hidden}")
        check(self.depth >= 1, f"{where}.depth must be >= 1, got {self.depth}")


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
        check(self.r >= 1, f"{where}.r must be >= 1, got {self.r}")
        check(self.alpha > 0, f"{where}.alpha must be > 0, got {self.alpha}")
        fraction(self.dropout, f"{where}.dropout", upper_open=True)
        check(
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
        check(self.hidden >= 0, f"{where}.hidden must be >= 0, got {self.hidden}")
        fraction(self.dropout, f"{where}.dropout", upper_open=True)


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
    ctc_vocab: str = "train"
    """Tokens the CTC head scores: `train` = those in the training transcripts (several times
    cheaper on SmolLM2's 49k vocabulary; the list is saved with the model and widened, never
    narrowed, when fine-tuning), `all` = the whole embedding table, `train+words:N` = the
    training tokens plus every token of the N most frequent English words (wordfreq's
    `top_n_list('en', N)`, each word tokenised with and without a leading space), so that words
    the training text lacks can still be spelt: with N = 20000 and SmolLM2 the 10-hour
    recipe's 10,611 training tokens become 24,384, a CTC step 2.6x dearer (docs/recipe.md)."""
    classifier_heads: ClassifierHeadsConfig = field(default_factory=ClassifierHeadsConfig)
    """Sentiment and entity-tag heads on the pooled adapter output (off by default)."""
    max_new_tokens: int = 128
    """Generation length limit at inference."""
    repetition_guard: int = 4
    """At inference, forbid repeating any n-gram of this size (`no_repeat_ngram_size`); 0 = off.
    Guards against the loops an under-trained adapter produces."""
    copy_reading: bool = True
    """`whisper` route, at inference: the transcript in an answer copies Whisper's reading word
    for word; the LLM chooses the sentiment, where entity markup opens and closes and its tag
    (`answer_grammar.py`: on the benchmark the free rewrite scored 8.9% WER against the
    reading's 6.0%, losing words). False lets the LLM rewrite the reading. Training is the same
    either way (`train.joint_answers` picks what a joint stage teaches)."""

    def validate(self) -> None:
        """Range and cross-field checks of the model alone (ConfigError); `RunConfig.validate`
        and every saved model's `SpeechLLMConfig` run them."""
        self.adapter.validate()
        self.lora.validate()
        self.classifier_heads.validate()
        check(
            self.ctc_vocab in ("train", "all") or ctc_word_count(self.ctc_vocab) > 0,
            f"model.ctc_vocab must be 'train', 'all' or 'train+words:N' (N >= 1 English words, "
            f"e.g. train+words:20000), got {self.ctc_vocab!r}",
        )
        check(
            self.max_new_tokens >= 1,
            f"model.max_new_tokens must be >= 1, got {self.max_new_tokens}",
        )
        check(
            self.repetition_guard >= 0,
            f"model.repetition_guard must be >= 0 (0 = off), got {self.repetition_guard}",
        )
        check(
            self.speech_input != "whisper" or not self.classifier_heads.enabled,
            "model.classifier_heads read the adapter's vectors, which speech_input 'whisper' "
            "does not use: disable the heads or choose another speech_input",
        )


_WORDS = re.compile(r"train\+words:([1-9][0-9]{0,6})")


def ctc_word_count(ctc_vocab: str) -> int:
    """N of a `train+words:N` CTC vocabulary (`ModelConfig.ctc_vocab`); 0 for any other value."""
    match = _WORDS.fullmatch(ctc_vocab)
    return int(match.group(1)) if match else 0
