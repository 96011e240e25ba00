"""The annotator: a causal LLM with the annotation prompts, decoding answers in batches.

`speechllm annotate` labels the transcripts of a manifest with a causal LLM, so that speech
without human NER / sentiment labels (e.g. LibriSpeech, or piper-spoken text) can be trained on,
and the cascade baseline (`speechllm evaluate --cascade`, `evaluation/cascade.py`) labels ASR
output with the same code. The prompts are in `prompts.py`, validation in `validation.py`, the
answer grammars in `grammar.py`, the cache and the run in `cache.py` and `run.py`.

Decoding is greedy and batched (each answer is the one the model gives the prompt alone), and
stops at the end of the line. By default it is constrained by the answer's grammar
(`GrammarProcessor`). For the tasks in `calibrate` (`--calibrate`, default none) each label's
probability is divided by its probability for content-free texts (contextual calibration,
`Annotator.label_prior`). `constrained=False` (`--free`) decodes freely, for comparison
(`docs/annotation.md`).

A malformed answer is asked again once (`MAX_ATTEMPTS`) with a stricter instruction, still
greedy (so batch composition never changes an answer); if that fails too the annotation is a
recorded failure.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from speechllm.annotate.grammar import GRAMMAR_VERSION, Grammar, GrammarProcessor, grammar_for
from speechllm.annotate.prompts import ANNOTATION_TASKS, PromptStyle, prompt_parts
from speechllm.annotate.validation import Annotation, check
from speechllm.errors import ModelSourceError
from speechllm.hub.llm import chat_stop_token, load_causal_lm
from speechllm.labels import SENTIMENTS, SLUE_TAGS

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

LOGPROB_CHUNK = 16
"""Continuations scored together by `Annotator.sequence_logprobs` (each copies the context's
key/value cache, so this bounds the memory: about 0.5 GB for SmolLM2 with a 700-token prompt)."""

CALIBRATION_VERSION = 2
"""Version of `Annotator.label_prior` (part of the cache key of calibrated answers). 2: the
plain-style sentiment prior scores `Answer: Positive`, not `Answer:  Positive`."""

CALIBRATED_TASKS: tuple[str, ...] = ()
"""Tasks calibrated by default (`Annotator.calibrate`): none. Measured (docs/annotation.md), it
raised SmolLM2's and Qwen's sentiment macro F1 but lowered Gemma 3's, hurt SmolLM2's entity tags,
and made SmolLM2 call "I loved this phone, it works perfectly" Neutral: an option to measure on
one's own data, not a default."""

CONTENT_FREE_TEXTS: tuple[str, ...] = ("N/A", "", "[MASK]")
"""Texts with no content, for `Annotator.label_prior` (the three of Zhao et al. 2021)."""

MAX_ATTEMPTS = 2
"""Greedy answer, then at most one retry with the stricter instruction."""


@dataclass
class Annotator:
    """A causal LLM with the annotation prompts. Build with `Annotator.load` or directly."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    """The model name as the user gave it (part of the cache key)."""
    style: PromptStyle = "auto"
    """`chat`: few-shot turns in the chat template; `plain`: a completion prompt; `auto`: chat
    when the tokenizer has a chat template."""
    constrained: bool = True
    """Decode under the answer grammar (`GrammarProcessor`): the NER answer can only be the
    transcript with markup, the SA answer only a class name. False: free greedy decoding."""
    calibrate: tuple[str, ...] = CALIBRATED_TASKS
    """Tasks whose labels are calibrated under the grammar: each whole label's probability is
    divided by its probability for content-free texts (`label_prior`; contextual calibration,
    Zhao et al. 2021, "Calibrate Before Use"), against a small model's bias to a few labels.
    docs/annotation.md measures it: it helped two models' sentiment and hurt the third's, and hurt
    NER tags (hence none by default)."""
    _newline_ids: frozenset[int] = field(default=frozenset(), init=False, repr=False)
    _special_stop: frozenset[int] = field(default=frozenset(), init=False, repr=False)
    _pad_id: int = field(default=0, init=False, repr=False)
    _prefixes: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _priors: dict[str, dict[str, float]] = field(default_factory=dict, init=False, repr=False)
    _reuse_prefix: bool = field(default=True, init=False, repr=False)
    _cache_kwarg: str = field(default="cache", init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.calibrate) - set(ANNOTATION_TASKS)
        if unknown:
            raise ValueError(f"calibrate: unknown task(s) {sorted(unknown)}; tasks: ner, sa")
        if self.style == "auto":
            self.style = "chat" if getattr(self.tokenizer, "chat_template", None) else "plain"
        if self.style not in ("chat", "plain"):
            raise ValueError(f"prompt style must be auto, chat or plain, got {self.style!r}")
        tok = self.tokenizer
        stops = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        if self.style == "chat":
            # The token the template writes after an assistant turn (e.g. <|im_end|>, Gemma's
            # <end_of_turn>) ends the answer as well as EOS does.
            end_of_turn = chat_stop_token(tok)
            if end_of_turn is not None:
                stops.add(end_of_turn)
        if not stops:
            raise ModelSourceError(f"{self.name}: the tokenizer has no EOS token to stop on")
        self._special_stop = frozenset(stops)
        self._newline_ids = _newline_token_ids(tok)
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else min(stops)
        config = self.model.config
        layer_types = getattr(config, "layer_types", None) or ()
        sliding = getattr(config, "sliding_window", None) and (
            not layer_types or any("sliding" in t for t in layer_types)
        )
        self._reuse_prefix = not sliding
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.model.eval()

    @classmethod
    def load(
        cls,
        name: str,
        *,
        style: PromptStyle = "auto",
        constrained: bool = True,
        calibrate: Sequence[str] = CALIBRATED_TASKS,
    ) -> Annotator:
        """Load a packaged model name (`hub/sources.py`), a local HF directory or a hub id."""
        model, tokenizer = load_causal_lm(name)
        return cls(model, tokenizer, name, style, constrained, tuple(calibrate))

    @property
    def stop_ids(self) -> frozenset[int]:
        """Tokens that end an answer: EOS and, for a chat prompt, the template's end of turn."""
        return self._special_stop

    @property
    def newline_ids(self) -> frozenset[int]:
        """Tokens whose text holds a line break: an answer is one line, so they end it too."""
        return self._newline_ids

    @property
    def cache_name(self) -> str:
        """The model's part of the cache key: name, prompt style, decoding mode with the grammar's
        and calibration's versions (a free, a constrained and a calibrated answer are different
        answers)."""
        mode = f"grammar{GRAMMAR_VERSION}" if self.constrained else "free"
        if self.constrained and self.calibrate:
            mode += f"+calibrated{CALIBRATION_VERSION}[{','.join(sorted(self.calibrate))}]"
        return f"{self.name}|{self.style}|{mode}"

    # -------------------------------------------------------------- prompts

    def prompt_parts(self, task: str, text: str, *, strict: bool = False) -> tuple[str, str]:
        """The prompt for one item as (prefix, suffix) in this annotator's style
        (`prompts.prompt_parts`); the prefix's keys and values are computed once (`generate`)."""
        return prompt_parts(self.tokenizer, self.style, task, text, strict=strict)

    def prompt(self, task: str, text: str, *, strict: bool = False) -> str:
        """The full prompt text for one item."""
        return "".join(self.prompt_parts(task, text, strict=strict))

    def max_new_tokens(self, task: str, text: str) -> int:
        """Answer budget: a copy of the transcript plus markup for ner, a word for sa."""
        if task == "sa":
            return 8
        n = len(self.tokenizer(text, add_special_tokens=False).input_ids)
        return 2 * n + 24

    # -------------------------------------------------------------- generation

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: Sequence[int],
        grammars: Sequence[Grammar | None] | None = None,
        prefix: str = "",
    ) -> list[str]:
        """Greedy answers (one line each) for `prefix + prompt` decoded together.

        The prefix and each prompt are tokenized apart. Rows are (B, L) token ids laid out as
        [prefix][padding][prompt] with attention mask (B, L) and positions that skip the padding;
        the prefix's keys and values are computed once and reused (`_prefix_cache`). Models with
        sliding-window attention get [padding][prefix][prompt] instead (padding inside the window
        would change what the window sees). Each row stops at its own end of line / stop token
        and budget, so an answer does not depend on its batch. Where `grammars` gives a row a
        grammar, each step takes the best-scoring token that keeps the row's text a prefix of a
        string the grammar accepts (`GrammarProcessor`).
        """
        if not prompts:
            return []
        tok = self.tokenizer
        pre = tok(prefix, add_special_tokens=False).input_ids if prefix else []
        ids = [tok(p, add_special_tokens=False).input_ids for p in prompts]
        shared = self._prefix_cache(prefix, pre) if pre and self._reuse_prefix else None
        rows = ids if shared is not None else [pre + x for x in ids]
        n_pre = len(pre) if shared is not None else 0
        width = max(len(x) for x in rows)
        input_ids = torch.full((len(rows), n_pre + width), self._pad_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        input_ids[:, :n_pre] = torch.tensor(pre[:n_pre], dtype=torch.long)
        mask[:, :n_pre] = 1
        for i, row in enumerate(rows):
            input_ids[i, n_pre + width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, n_pre + width - len(row) :] = 1
        total = n_pre + width
        kwargs: dict[str, Any] = {}
        if shared is not None:
            cache = copy.deepcopy(shared)
            cache.batch_repeat_interleave(len(rows))
            kwargs[self._cache_kwarg] = cache
        if grammars is not None and any(g is not None for g in grammars):
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(
                [GrammarProcessor(self, list(grammars), total, [pre + x for x in ids], prefix, pre)]
            )
        device = next(self.model.parameters()).device
        out = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max(max_new_tokens),
            do_sample=False,
            num_beams=1,
            # Newline tokens end a row like EOS does: answers are one line.
            eos_token_id=sorted(self._special_stop | self._newline_ids),
            pad_token_id=self._pad_id,
            **kwargs,
        )
        answers = []
        for row, budget in zip(out[:, total:].tolist(), max_new_tokens, strict=True):
            kept: list[int] = []
            for t in row[:budget]:
                if t in self._special_stop:
                    break
                kept.append(t)
                if t in self._newline_ids:
                    break
            text = tok.decode(kept, skip_special_tokens=True)
            answers.append(text.split("\n", 1)[0].strip())
        return answers

    @torch.no_grad()
    def sequence_logprobs(
        self,
        context: list[int],
        continuations: list[list[int]],
        prefix: str = "",
        prefix_ids: Sequence[int] = (),
    ) -> list[float]:
        """log P(continuation | context) for each continuation, summed over its tokens.

        The context (one row's prompt and answer so far, no padding) runs once, from the
        prefix's cached keys and values where it starts with the prefix; then the continuations
        (right-padded, (K, max len - 1)) run together on copies of that cache. Without padding
        inside the context this is exact for sliding-window models too.
        """
        device = next(self.model.parameters()).device
        kwargs: dict[str, Any] = {}
        rest = context
        n = len(prefix_ids)
        if n and len(context) > n and list(context[:n]) == list(prefix_ids):
            kwargs[self._cache_kwarg] = copy.deepcopy(self._prefix_cache(prefix, list(prefix_ids)))
            rest = context[n:]
        out = self.model(input_ids=torch.tensor([rest], device=device), use_cache=True, **kwargs)
        first = out.logits[0, -1].float().log_softmax(-1)
        scores = [float(first[c[0]]) for c in continuations]
        context_cache = _returned_cache(out)
        # In chunks: each continuation holds a copy of the context's keys and values.
        for start in range(0, len(continuations), LOGPROB_CHUNK):
            chunk = continuations[start : start + LOGPROB_CHUNK]
            longest = max(len(c) for c in chunk)
            if longest < 2:
                continue
            cache = copy.deepcopy(context_cache)
            cache.batch_repeat_interleave(len(chunk))
            # Right padding: a padded position comes after every scored one, so no mask is needed.
            ids = torch.full((len(chunk), longest - 1), self._pad_id, dtype=torch.long)
            for i, c in enumerate(chunk):
                ids[i, : len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
            logits = self.model(
                input_ids=ids.to(device), use_cache=True, **{self._cache_kwarg: cache}
            ).logits
            logp = logits.float().log_softmax(-1)
            for i, c in enumerate(chunk):
                scores[start + i] += sum(float(logp[i, j - 1, c[j]]) for j in range(1, len(c)))
        return scores

    def answer_lead(self, answer_so_far: str) -> str:
        """What precedes the next label given the answer so far: a space where the answer
        starts after a completion prompt's `Answer:`, else nothing."""
        return " " if answer_so_far == "" and self.style == "plain" else ""

    def score_labels(
        self,
        task: str,
        context: list[int],
        candidates: list[list[int]],
        labels: Sequence[str],
        prefix: str = "",
        prefix_ids: Sequence[int] = (),
    ) -> list[float]:
        """log P(candidate | context) per candidate (`sequence_logprobs`); for a task in
        `calibrate`, less the log prior of its label (`labels`: each candidate's label)."""
        logprobs = self.sequence_logprobs(context, candidates, prefix, prefix_ids)
        if task in self.calibrate:
            prior = self.label_prior(task)
            logprobs = [lp - prior[name] for lp, name in zip(logprobs, labels, strict=True)]
        return logprobs

    def label_prior(self, task: str) -> dict[str, float]:
        """log P(label | content-free text) per label where a label starts (class names for sa,
        entity tags right after `[` for ner): the log of the mean probability over
        `CONTENT_FREE_TEXTS` given as the text to label. Computed once per task."""
        if task not in self._priors:
            labels = SENTIMENTS if task == "sa" else SLUE_TAGS
            # The answer so far where the label starts: nothing (sa) or an opening bracket (ner).
            start = self.answer_lead("") + "[" if task == "ner" else ""
            tok = self.tokenizer
            lead = self.answer_lead(start)
            label_ids = [tok(lead + x, add_special_tokens=False).input_ids for x in labels]
            total = torch.zeros(len(labels), dtype=torch.float64)
            for text in CONTENT_FREE_TEXTS:
                prefix, suffix = self.prompt_parts(task, text)
                pre = tok(prefix, add_special_tokens=False).input_ids
                context = pre + tok(suffix + start, add_special_tokens=False).input_ids
                total += torch.tensor(self.sequence_logprobs(context, label_ids, prefix, pre)).exp()
            mean = (total / len(CONTENT_FREE_TEXTS)).log()
            self._priors[task] = {x: float(v) for x, v in zip(labels, mean, strict=True)}
        return self._priors[task]

    def _prefix_cache(self, prefix: str, ids: list[int]) -> Any:
        """The model's key/value cache (batch 1) after the prefix tokens, computed once."""
        if prefix not in self._prefixes:
            device = next(self.model.parameters()).device
            out = self.model(input_ids=torch.tensor([ids], device=device), use_cache=True)
            # transformers 5 names the cache `cache`, 4.x `past_key_values`.
            self._prefixes[prefix] = _returned_cache(out)
        return self._prefixes[prefix]

    def annotate_batch(self, task: str, texts: Sequence[str]) -> list[Annotation]:
        """Annotate texts decoded together: greedy answer, one stricter retry where malformed."""
        results: list[Annotation | None] = [None] * len(texts)
        todo = []
        for i, text in enumerate(texts):
            if not text.strip():
                # Nothing to tag; a sentiment of nothing is not a guess we make.
                results[i] = (
                    Annotation(task="ner", ok=True, answer="", attempts=0, entities=[])
                    if task == "ner"
                    else Annotation(task="sa", ok=False, answer="", attempts=0, error="empty text")
                )
            else:
                todo.append(i)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if not todo:
                break
            parts = [self.prompt_parts(task, texts[i], strict=attempt > 1) for i in todo]
            prefix = parts[0][0]
            budgets = [self.max_new_tokens(task, texts[i]) for i in todo]
            grammars = [grammar_for(task, texts[i]) for i in todo] if self.constrained else None
            answers = self.generate([p for _, p in parts], budgets, grammars, prefix=prefix)
            retry = []
            for i, answer in zip(todo, answers, strict=True):
                ann = replace(check(task, answer, texts[i]), attempts=attempt)
                results[i] = ann
                if not ann.ok:
                    retry.append(i)
            todo = retry
        return [r for r in results if r is not None]


def _newline_token_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Ids of every token whose text holds a line break (e.g. `Ċ`, `.Ċ`, `<0x0A>`, `\\n\\n`)."""
    ids = list(range(len(tokenizer)))
    texts = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False)
    return frozenset(i for i, t in zip(ids, texts, strict=True) if "\n" in t)


def _returned_cache(out: Any) -> Any:
    """The key/value cache a forward pass returned (`cache` in newer transformers)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values
