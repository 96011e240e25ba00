"""SpeechLLM: frozen Whisper encoder -> trainable adapter -> causal LLM (frozen or LoRA).

The LLM reads each example's speech inside its task's prompt (`llm_inputs.py`): the adapter's
vectors (B, T', D), or with `speech_input: ctc` the CTC-compressed soft tokens (B, N, D), or with
`whisper` Whisper's transcript as token embeddings. The loss is the LM loss on the answer tokens,
plus in training an optional CTC loss aligning speech vectors with token embeddings (`ctc.py`)
and a sentiment / entity-tag loss on the pooled adapter output (`regularizer.py`).

A transformers `PreTrainedModel` configured by a `SpeechLLMConfig`: `save_pretrained` writes
config.json (naming the base models) and model.safetensors (only what trained), and
`from_pretrained` rebuilds the bases and restores identical logits (`saving.py`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from speechllm.config import ModelConfig, TextNoiseConfig
from speechllm.model.adapter import build_adapter
from speechllm.model.answer_grammar import GrammarChooser, ReadingGrammar
from speechllm.model.batch import Batch
from speechllm.model.configuration import SpeechLLMConfig
from speechllm.model.ctc import CTCHead
from speechllm.model.draft_decoding import DRAFT_TOKENS, generate_with_drafts
from speechllm.model.encoder import SpeechEncoder
from speechllm.model.llm_inputs import PromptLayout
from speechllm.model.lora import add_lora
from speechllm.model.regularizer import ClassifierHeads
from speechllm.model.saving import (
    load_trained_state,
    read_model_config,
    read_trained_state,
    resolve_inside,
    trained_state,
    write_model_dir,
)
from speechllm.model.text_noise import NearTokens, text_embeddings
from speechllm.model.whisper_reader import WhisperReader


class SpeechLLM(PreTrainedModel):
    """The whole model. Build with `SpeechLLM.from_config` (fresh adapter) or
    `SpeechLLM.from_pretrained` (a saved folder); `save_pretrained` writes one."""

    config_class = SpeechLLMConfig
    config: SpeechLLMConfig

    def __init__(
        self,
        config: SpeechLLMConfig | ModelConfig,
        encoder: SpeechEncoder,
        llm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        reader: WhisperReader | None = None,
    ) -> None:
        if isinstance(config, ModelConfig):
            config = SpeechLLMConfig.from_model_config(config)
        super().__init__(config)
        if (config.speech_input == "whisper") != (reader is not None):
            raise ValueError("a WhisperReader is given exactly when speech_input is 'whisper'")
        self.encoder = encoder
        self.reader = reader
        self.tokenizer = tokenizer
        llm.requires_grad_(False)
        embed = llm.get_input_embeddings().weight
        target_rms = float(embed.detach().float().pow(2).mean().sqrt())
        d_llm = embed.shape[1]
        self.adapter = build_adapter(encoder.dim, d_llm, config.adapter, target_rms)
        self.ctc = CTCHead(d_llm, target_rms)
        if reader is not None:
            # The whisper route reads Whisper's text: adapter and CTC head exist (one module
            # layout for every route) but never train, and are not saved.
            self.adapter.requires_grad_(False)
            self.ctc.requires_grad_(False)
        # Only when asked for: a model without heads keeps exactly its parameter names, so weights
        # saved before heads existed still load strictly.
        self.classifier = (
            ClassifierHeads(d_llm, config.classifier_heads)
            if config.classifier_heads.enabled
            else None
        )
        if config.lora.enabled:
            llm = add_lora(llm, config.lora)
        self.llm = llm
        self.layout = PromptLayout(tokenizer)
        self._near = NearTokens()

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_config(cls, config: SpeechLLMConfig | ModelConfig) -> SpeechLLM:
        """Load the pretrained encoder and LLM named in `config` and add a fresh adapter."""
        from speechllm.hub.llm import load_causal_lm
        from speechllm.hub.sources import resolve
        from speechllm.model.encoder import SpeechEncoder, load_speech_encoder
        from speechllm.model.whisper_reader import load_whisper_reader

        reader = None
        if config.speech_input == "whisper":
            # One checkpoint load: the reader's model holds the encoder the SpeechEncoder runs.
            reader = load_whisper_reader(config.encoder)
            from transformers import WhisperFeatureExtractor

            encoder = SpeechEncoder(
                reader.whisper.get_encoder(),
                WhisperFeatureExtractor.from_pretrained(resolve(config.encoder)),
                pad_to_window=True,
            )
        else:
            encoder = load_speech_encoder(resolve(config.encoder))
        llm, tokenizer = load_causal_lm(config.llm)
        return cls(config, encoder, llm, tokenizer, reader)

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids of an answer followed by the stop token."""
        return self.layout.answer_ids(answer)

    # ---------------------------------------------------------------- forward

    def speech_embeddings(
        self, frames: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder frames (B, T, C) -> adapter vectors (B, T', D) and lengths (B,)."""
        return self.adapter(frames, lengths)

    def llm_speech(
        self, speech: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapter vectors (B, T', D) -> what the LLM reads: themselves (`adapter`) or the
        CTC-compressed soft tokens (B, N, D) (`ctc`), with lengths (B,)."""
        if self.config.speech_input == "ctc":
            return self.ctc.soft_tokens(speech, lengths, self.llm.get_input_embeddings().weight)
        return speech, lengths

    def speech_inputs(
        self, frames: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder frames (B, T, C), lengths (B,) -> what the LLM reads (B, N, D), lengths (B,)."""
        if self.reader is not None:
            return self.text_speech(self.reader.read(frames, lengths))
        return self.llm_speech(*self.speech_embeddings(frames, lengths))

    def text_speech(
        self, texts: list[str], noise: TextNoiseConfig | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transcripts (B,) standing in for speech -> token embeddings (B, N, D), lengths (B,),
        corrupted per `noise` in training (`text_noise.py`)."""
        ids = [self.transcript_ids(text) if text else [] for text in texts]
        return text_embeddings(ids, self.llm.get_input_embeddings().weight, self._near, noise)

    def near_tokens(self, token: int, k: int) -> torch.Tensor:
        """The `k` tokens (k,) nearest to `token` (cosine, input-embedding table), itself
        excluded: what text noise substitutes."""
        return self._near.get(token, k, self.llm.get_input_embeddings().weight)

    @torch.no_grad()
    def ctc_transcripts(self, frames: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Greedy CTC transcripts (B,) from encoder frames: the adapter's own reading."""
        speech, lengths = self.speech_embeddings(frames, lengths)
        ids = self.ctc.greedy(speech, lengths, self.llm.get_input_embeddings().weight)
        return [self.tokenizer.decode(i, skip_special_tokens=True).strip() for i in ids]

    def _assemble(self, speech, lengths, tasks, answers, left_pad, unscored=None):  # type: ignore[no-untyped-def]
        """`PromptLayout.assemble` with this model's embedding table: (inputs_embeds (B, L, D),
        attention_mask (B, L), labels (B, L)) from speech (B, N, D), lengths (B,)."""
        embed = self.llm.get_input_embeddings()
        return self.layout.assemble(embed, speech, lengths, tasks, answers, left_pad, unscored)

    def forward(
        self,
        batch: Batch,
        ctc_weight: float = 0.0,
        lm: bool = True,
        cls_weight: float = 0.0,
        text_noise: TextNoiseConfig | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training losses: {'loss', 'lm_loss' (if lm), 'ctc_loss' (if ctc_weight > 0),
        'cls_loss' (if cls_weight > 0 and some example has a sentiment or entity label)}.

        `lm=False` skips the LLM entirely (CTC only): a step then costs the adapter and one
        projection onto the embedding table, a small fraction of a full step.
        """
        if batch.answers is None:
            raise ValueError("training batch needs answers")
        if cls_weight > 0 and self.classifier is None:
            raise ValueError(
                "cls_weight > 0 needs classifier heads: build the model with "
                "classifier_heads.enabled"
            )
        if batch.speech_texts is not None:
            # Text standing in for speech: the LLM side learns; nothing acoustic runs.
            lm_loss = self._lm_loss(*self.text_speech(batch.speech_texts, text_noise), batch)
            return {"lm_loss": lm_loss, "loss": lm_loss}
        if batch.frames is None or batch.frame_lengths is None:
            raise ValueError("a training batch needs frames or speech_texts")
        speech, lengths = self.speech_embeddings(batch.frames, batch.frame_lengths)
        if not lm:
            ctc = self.ctc_loss(speech, lengths, batch.transcripts or [])
            if ctc is None:
                raise ValueError("a CTC-only step needs transcripts")
            return {"ctc_loss": ctc, "loss": ctc}
        lm_loss = self._lm_loss(*self.llm_speech(speech, lengths), batch)
        result = {"lm_loss": lm_loss, "loss": lm_loss}
        if ctc_weight > 0 and batch.transcripts is not None:
            ctc = self.ctc_loss(speech, lengths, batch.transcripts)
            if ctc is not None:
                result["ctc_loss"] = ctc
                result["loss"] = result["loss"] + ctc_weight * ctc
        if cls_weight > 0 and self.classifier is not None:
            # The heads read the adapter's own vectors, not the CTC-compressed soft tokens.
            cls = self.classifier.loss(speech, lengths, batch.sentiments, batch.entity_tags)
            if cls is not None:
                result["cls_loss"] = cls
                result["loss"] = result["loss"] + cls_weight * cls
        return result

    def _lm_loss(self, speech: torch.Tensor, lengths: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy of the batch's answer tokens after what the LLM reads for the speech
        (B, N, D), lengths (B,)."""
        inputs, mask, labels = self._assemble(
            speech, lengths, batch.tasks, batch.answers, left_pad=False, unscored=batch.unscored
        )
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # Run the decoder body, then the LM head only where a label is predicted: the head over a
        # ~50k vocabulary at every prompt/speech position would cost ~20% of the step for nothing.
        causal = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
        hidden = causal.get_decoder()(
            inputs_embeds=inputs, attention_mask=mask, position_ids=positions
        ).last_hidden_state
        targets = labels[:, 1:]
        picked = hidden[:, :-1][targets != -100]  # N, D
        logits = causal.get_output_embeddings()(picked).float()  # N, V
        return nn.functional.cross_entropy(logits, targets[targets != -100])

    def ctc_loss(
        self, speech: torch.Tensor, lengths: torch.Tensor, transcripts: list[str | None]
    ) -> torch.Tensor | None:
        """CTC over LLM tokens of each transcript; examples without a transcript are skipped."""
        keep = [i for i, t in enumerate(transcripts) if t]
        if not keep:
            return None
        targets = [self.transcript_ids(transcripts[i]) for i in keep]
        return self.ctc.loss(
            speech[keep], lengths[keep], targets, self.llm.get_input_embeddings().weight
        )

    def transcript_ids(self, transcript: str) -> list[int]:
        """LLM token ids of a transcript as CTC targets (leading space: a word-initial piece)."""
        return self.tokenizer(" " + transcript, add_special_tokens=False).input_ids

    # ---------------------------------------------------------------- inference

    @torch.no_grad()
    def classify(
        self, frames: torch.Tensor, lengths: torch.Tensor
    ) -> list[dict[str, dict[str, float]]]:
        """The classifier heads' reading of encoder frames (B, T, C), lengths (B,): per clip
        {'sentiment': {class: probability} (sums to 1), 'entity_tags': {tag: probability}}.

        Call in eval mode (dropout). ValueError for a model built without heads.
        """
        if self.classifier is None:
            raise ValueError("this model has no classifier heads (model.classifier_heads.enabled)")
        speech, speech_lengths = self.speech_embeddings(frames, lengths)
        return self.classifier.probabilities(speech, speech_lengths)

    @torch.no_grad()
    def generate(
        self,
        frames: torch.Tensor,
        frame_lengths: torch.Tensor,
        tasks: list[str],
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Greedy answers for a batch (left-padded; identical to one-by-one decoding)."""
        return self.generate_from(*self.speech_inputs(frames, frame_lengths), tasks, max_new_tokens)

    @torch.no_grad()
    def generate_from(
        self,
        speech: torch.Tensor,
        lengths: torch.Tensor,
        tasks: list[str],
        max_new_tokens: int | None = None,
        readings: list[str] | None = None,
        drafts: bool = True,
    ) -> list[str]:
        """Greedy answers from what the LLM reads for the speech (B, N, D), lengths (B,).

        `readings` (per row, the transcript the LLM reads, on the whisper route): with
        `config.copy_reading` each answer's transcript copies it (`answer_grammar.py`); with
        `drafts` each call checks the next copied tokens of several positions at once
        (`draft_decoding.py`). Without readings, or with the repetition guard on, transformers'
        `generate` decodes one token per call.
        """
        inputs, mask, _ = self._assemble(speech, lengths, tasks, None, left_pad=True)
        if readings is not None and not self.config.repetition_guard:
            prefixes = {tuple(self.layout.prompt_ids[t][0]) for t in tasks}
            grammars = None
            if self.config.copy_reading:
                grammars = [ReadingGrammar(t, r) for t, r in zip(tasks, readings, strict=True)]
            rows = generate_with_drafts(
                self.llm,
                inputs,
                mask,
                [self.transcript_ids(r) if r else [] for r in readings],
                max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                stop_ids=self.layout.stop_ids,
                draft_tokens=DRAFT_TOKENS if drafts else 0,
                shared_prefix=len(prefixes.pop()) if len(prefixes) == 1 else 0,
                grammars=grammars,
                chooser=GrammarChooser(self.tokenizer, self.layout.stop_ids),
            )
            return self.layout.answers(rows)
        with warnings.catch_warnings():
            # With inputs_embeds the n-gram guard sees only generated tokens: what we want.
            warnings.filterwarnings("ignore", message=".*no_repeat_ngram_size.*")
            out = self._generate(
                inputs, mask, max_new_tokens, self.layout.stop_ids, self.layout.pad_id
            )
        return self.layout.answers(out.tolist())

    def _generate(
        self,
        inputs: torch.Tensor,
        mask: torch.Tensor,
        max_new_tokens: int | None,
        stop: list[int],
        pad_id: int,
    ) -> torch.Tensor:
        return self.llm.generate(
            inputs_embeds=inputs,
            attention_mask=mask,
            max_new_tokens=max_new_tokens or self.config.max_new_tokens,
            do_sample=False,
            num_beams=1,
            no_repeat_ngram_size=self.config.repetition_guard,
            eos_token_id=stop,
            pad_token_id=pad_id,
        )

    # ---------------------------------------------------------------- save / load

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Exactly the parameters that train (adapter, CTC head, LoRA, classifier heads), plus the
        CTC vocabulary."""
        return trained_state(self)

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Path:  # type: ignore[override]
        """Write a transformers model folder: config.json and model.safetensors holding the trained
        weights only (the base models are named by the config, not copied)."""
        if kwargs:
            raise TypeError(f"SpeechLLM.save_pretrained takes no options, got {sorted(kwargs)}")
        return write_model_dir(save_directory, self.trainable_state_dict(), self.config)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        config: SpeechLLMConfig | None = None,
        **kwargs: Any,
    ) -> SpeechLLM:
        """Rebuild a saved model folder (either format, `saving.py`): the base models its config
        (or `config`) names, then its trained weights (strictly: every one found, no unknown one);
        eval mode. `AutoModel.from_pretrained(folder)` comes here too.

        Replaces transformers' loader, which initialises every parameter on the meta device and
        then materialises those absent from the file: here the absent ones are the base models,
        loaded from their own checkpoints."""
        kwargs.pop("_from_auto", None)
        # AutoModel passes its options along, unset ones included (None, or adapter_kwargs
        # {"revision": None}): only one actually set is refused.
        unsupported = sorted(k for k, v in kwargs.items() if v and v != {"revision": None})
        if unsupported:
            raise TypeError(f"SpeechLLM.from_pretrained: unsupported options {unsupported}")
        directory = Path(pretrained_model_name_or_path)
        config = (
            read_model_config(directory) if config is None else resolve_inside(config, directory)
        )
        model = cls.from_config(config)
        model.load_trained(directory)
        return model.eval()

    # The names the CLI, the server and the tests use.
    save = save_pretrained
    load = from_pretrained

    def load_trained(self, directory: str | Path, strict: bool = True) -> None:
        """Load the trained weights of a saved model folder into this model (`strict`: see
        `saving.load_trained_state`)."""
        load_trained_state(self, read_trained_state(directory), strict, directory)

    def parameter_report(self) -> list[tuple[str, int, int]]:
        """(part, trainable, frozen) parameter counts for encoder, adapter, llm (+LoRA), other."""
        parts: dict[str, list[int]] = {}
        for name, p in self.named_parameters():
            part = name.split(".")[0]
            if part == "llm" and "lora_" in name:
                part = "lora"
            t = parts.setdefault(part, [0, 0])
            t[0 if p.requires_grad else 1] += p.numel()
        return [(k, v[0], v[1]) for k, v in parts.items()]


# `AutoModel.from_pretrained(folder)` loads a saved SpeechLLM.
AutoModel.register(SpeechLLMConfig, SpeechLLM, exist_ok=True)
