"""Text annotation with an LLM: SLUE entity tags (inline markup) and 3-way sentiment.

`speechllm annotate` labels the transcripts of a manifest with a causal LLM, so that speech
without human NER / sentiment labels (e.g. LibriSpeech, or piper-spoken text) can be trained on,
and the cascade baseline (`speechllm evaluate --cascade`, `cascade.py`) labels ASR output with the
same code.

Answers follow the speech model's answer formats (`prompts.py`) and are read by the same parsers:

- `ner`: the sentence copied word for word with each entity wrapped as `[TAG phrase]`, TAG one of
  SLUE's 7 tags, e.g. `the [ORG council] met in [PLACE luxembourg] on [WHEN tuesday]`.
- `sa`: one word, `Negative`, `Neutral` or `Positive`.

Prompts are few-shot: the examples in `NER_EXAMPLES` and `SA_EXAMPLES` were written for this
module in SLUE-VoxPopuli's style (lower case, numbers spelled out, parliamentary speech) and
following SLUE's labelling conventions (`eu` and `europe` are PLACE, `european` alone NORP,
`first` / `one` QUANT, `today` WHEN, a leading `the` outside the entity); none is taken from
SLUE's dev set, which is the test set. An instruct model (a tokenizer with a chat template) gets
them as earlier user / assistant turns; a base model (e.g. `gemma3-270m`) gets a plain
`Sentence: ... / Answer: ...` completion prompt. The instruction and examples (the prompt's
prefix, the same for every text) are run through the model once; their keys and values are reused
for every batch.

Decoding is greedy and batched (each answer is the one the model gives the prompt alone), and
stops at the end of the line. By default it is constrained by the answer's grammar
(`GrammarProcessor`): at each step the model's best-scoring token among those that keep the
answer valid is taken, so a NER answer is always the transcript, word for word, with `[TAG ...]`
groups (one of the 7 tags, at most `NER_MAX_WORDS` words, not starting or ending with a function
word: SLUE's convention), and a sentiment answer one of the three classes. Where a label starts
the candidates are compared as wholes, by their summed token log-probabilities: the three classes
(`Neutral` = `Ne` + `utral` for SmolLM2 must not be judged by `Ne` alone), and after `[` every
(tag, length) of the entity (`PLACE brussels]`, `ORG european commission]`, ...), each scored
over the same words, so that the tag is chosen with its words in view. For the tasks in
`calibrate` (`--calibrate`, default none) each label's probability is divided by its
probability for content-free texts (contextual calibration, `Annotator.label_prior`). Small models (135M, 270M) rarely copy a
sentence faithfully on their own; the grammar leaves them only the choices that matter (where an
entity starts and ends, which tag). `constrained=False` (`--free`) decodes freely, for comparison
(`docs/annotation.md`).

Validation (`check_ner`, `check_sentiment`):

- NER: markup with a tag outside the 7 (any case variant of the 7 is accepted) is dropped, the
  words kept, and counted (`invalid_tags`); an entity phrase that does not occur in the transcript
  is dropped and counted (`dropped_phrases`); kept phrases are spelt as the transcript spells
  them. The answer is malformed when its words (markup removed, case and edge punctuation
  ignored) are not the transcript's words, or when brackets are left unbalanced.
- SA: malformed when the answer names none (or several) of the three classes.

A malformed answer is asked again once (`MAX_ATTEMPTS`) with a stricter instruction, still
greedy (so batch composition never changes an answer); if that fails too the annotation is a
recorded failure: the output row gets `entities` / `sentiment` null ("not labelled") and the
summary lists its id, task, problem and the model's last answer. Nothing is dropped silently.

Results are cached by sha256(text, model name, PROMPT_VERSION, task), the model name including
the prompt style, the decoding mode and the versions of the grammar and calibration
(`Annotator.cache_name`), in a JSONL file beside the output,
appended and flushed after every batch, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import torch

from speechllm.data.manifest import Utterance
from speechllm.errors import ModelSourceError
from speechllm.labels import SENTIMENTS, SLUE_TAGS
from speechllm.model.prompts import parse_ner, parse_sentiment

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PROMPT_VERSION = 1
"""Version of the prompts and few-shot examples below; bump when they change (it is part of the
cache key, so a new version never reuses old answers)."""

ANNOTATION_TASKS: tuple[str, ...] = ("ner", "sa")

GRAMMAR_VERSION = 3
"""Version of the constrained decoding (part of the cache key of constrained answers). 3: the
sentiment class, and an entity's tag and length, are chosen as wholes by log-probability."""

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

PromptStyle = Literal["auto", "chat", "plain"]

TAG_GUIDE = (
    "PLACE (countries, cities, regions, the eu, europe), "
    "QUANT (numbers, amounts, percentages, ordinals such as first), "
    "ORG (organisations, institutions, companies, parliament, council), "
    "WHEN (dates, years, days, periods such as today or next year), "
    "NORP (nationalities, religious or political groups, european as an adjective), "
    "PERSON (names of people), "
    "LAW (laws, treaties, directives, regulations, agreements)"
)

INSTRUCTIONS: dict[str, str] = {
    "ner": (
        "Mark the named entities in the sentence. Copy the sentence word for word and wrap each "
        "named entity as [TAG phrase], with TAG one of: " + TAG_GUIDE + ". Leave other words "
        "unmarked. A sentence without entities is copied unchanged."
    ),
    "sa": ("Judge the sentiment of the text. Answer with one word: Negative, Neutral or Positive."),
}

STRICT_SUFFIX: dict[str, str] = {
    "ner": (
        " Important: repeat every word of the sentence exactly, in the same order, adding only "
        "the brackets and tags; do not add, drop or change any word."
    ),
    "sa": " Important: answer with exactly one of the words Negative, Neutral or Positive.",
}

# Written for this module (not from SLUE dev); they follow SLUE-VoxPopuli's conventions.
NER_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "the eu must stand with ukraine today",
        "the [PLACE eu] must stand with [PLACE ukraine] [WHEN today]",
    ),
    (
        "first i would like to thank the council and the rapporteur mr lindqvist for their work",
        "[QUANT first] i would like to thank the [ORG council] and the rapporteur mr "
        "[PERSON lindqvist] for their work",
    ),
    (
        "thank you madam president i fully support this report",
        "thank you madam president i fully support this report",
    ),
    (
        "since two thousand and ten more than three million syrian refugees have arrived in turkey",
        "since [WHEN two thousand and ten] more than [QUANT three million] [NORP syrian] refugees "
        "have arrived in [PLACE turkey]",
    ),
    (
        "every european government must respect the paris agreement and the asylum directive",
        "every [NORP european] government must respect the [LAW paris agreement] and the "
        "[LAW asylum directive]",
    ),
    (
        "last week parliament asked the european investment bank for twenty billion euro",
        "[WHEN last week] [ORG parliament] asked the [ORG european investment bank] for "
        "[QUANT twenty billion euro]",
    ),
)

# Written for this module; short texts of the kinds annotated (reviews, tweets, speeches).
SA_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("I loved every minute of it, the acting is superb.", "Positive"),
    ("The battery died after two days and support never answered.", "Negative"),
    ("The meeting is scheduled for Thursday at the main office.", "Neutral"),
    ("this is the worst decision the council has taken in years", "Negative"),
    ("what a wonderful result for our farmers, well done everyone", "Positive"),
    ("the report covers the period from january to june", "Neutral"),
)

# `[WORD phrase]` with any first word: markup whose tag is one of the 7 (in any case) is kept,
# other tags are dropped.
_ANY_MARKUP = re.compile(r"\[\s*([A-Za-z_]+)\s+([^\[\]]*?)\s*\]")
_EDGE_PUNCT = '.,;:?!"()'


# ------------------------------------------------------------------------------ validation


@dataclass
class Annotation:
    """One text's label for one task, as cached and summarised."""

    task: str
    ok: bool
    """False: every attempt was malformed (a recorded failure)."""
    answer: str
    """The model's last answer (the line it wrote)."""
    attempts: int
    """Generations made (1 or 2; 0 when no model call was needed, e.g. an empty text)."""
    entities: list[tuple[str, str]] | None = None
    """ner: (tag, phrase) pairs, phrases spelt as in the transcript; None on failure."""
    sentiment: str | None = None
    """sa: one of SENTIMENTS; None on failure."""
    invalid_tags: int = 0
    """ner: markup with a tag outside the 7, dropped (in the accepted answer, or the last)."""
    dropped_phrases: int = 0
    """ner: entity phrases not found in the transcript, dropped."""
    error: str | None = None
    """What was wrong with the last answer, where it was malformed."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (entities as lists)."""
        out = asdict(self)
        if self.entities is not None:
            out["entities"] = [[t, p] for t, p in self.entities]
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Annotation:
        """The inverse of `to_json`."""
        ents = obj.get("entities")
        fields = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        fields["entities"] = None if ents is None else [(t, p) for t, p in ents]
        return cls(**fields)


def _word_keys(text: str) -> list[str]:
    """Words compared between transcript and answer: lower case, edge punctuation stripped."""
    keys = (w.strip(_EDGE_PUNCT).lower() for w in text.split())
    return [k for k in keys if k]


def check_ner(answer: str, text: str) -> Annotation:
    """Validate an inline-markup NER answer against its transcript (see the module docstring).

    Never raises. The result is `ok` with the kept entities, or not `ok` with `error` saying why.
    """
    invalid = 0

    def canon(m: re.Match[str]) -> str:
        nonlocal invalid
        tag, phrase = m.group(1).upper(), m.group(2)
        if tag in SLUE_TAGS and phrase.strip():
            return f"[{tag} {phrase}]"
        invalid += 1
        return f" {phrase} "

    cleaned = _ANY_MARKUP.sub(canon, answer)
    parsed = parse_ner(cleaned)
    base = {"task": "ner", "answer": answer, "attempts": 1, "invalid_tags": invalid}
    if not parsed.ok:
        return Annotation(ok=False, error="unbalanced or empty brackets", **base)
    if _word_keys(parsed.text) != _word_keys(text):
        return Annotation(ok=False, error="the answer's words are not the transcript's", **base)
    entities: list[tuple[str, str]] = []
    dropped = 0
    for tag, phrase in parsed.entities:
        found = _find_phrase(phrase, text)
        if found is None:
            dropped += 1
        else:
            entities.append((tag, found))
    return Annotation(ok=True, entities=entities, dropped_phrases=dropped, **base)


def _find_phrase(phrase: str, text: str) -> str | None:
    """`phrase` as spelt in `text` (whole words, case-insensitive), or None if it is not there."""
    words = phrase.strip(_EDGE_PUNCT + " ").split()
    if not words:
        return None
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
    m = re.search(pattern, text, flags=re.IGNORECASE)
    return None if m is None else m.group(0)


def check_sentiment(answer: str) -> Annotation:
    """Validate a sentiment answer: it must name exactly one of the three classes."""
    label = parse_sentiment(answer)
    if label is None:
        return Annotation(
            task="sa",
            ok=False,
            answer=answer,
            attempts=1,
            error=f"names none (or several) of {', '.join(SENTIMENTS)}",
        )
    return Annotation(task="sa", ok=True, answer=answer, attempts=1, sentiment=label)


def check(task: str, answer: str, text: str) -> Annotation:
    """Validate an answer for `task` ("ner" or "sa")."""
    return check_ner(answer, text) if task == "ner" else check_sentiment(answer)


# ------------------------------------------------------------------------------ constrained decoding


class Alternative(NamedTuple):
    """One candidate where a grammar offers whole labels (`Grammar.alternatives`)."""

    scored: str
    """The text whose log-probability is compared (the candidate and the words after it)."""
    forced: str
    """The text then written if this candidate wins."""
    label: str
    """Its class (`Positive`) or entity tag (`PLACE`): what calibration corrects for."""


class Grammar:
    """The answers allowed for one item, read as a prefix language.

    `state(text)` is None when `text` can start no allowed answer; otherwise (the possible
    continuations up to the next choice point, whether the answer may end right here). One
    leading space is allowed (a completion prompt ends with `Answer:`).
    """

    def state(self, text: str) -> tuple[list[str], bool] | None:
        raise NotImplementedError

    task: str = ""
    """The annotation task whose answers this grammar allows (`ner`, `sa`)."""

    def alternatives(self, text: str) -> list[Alternative] | None:
        """Labels to choose between as wholes at this point; None: decode token by token.

        A label of several tokens (`Neutral` = `Ne` + `utral` for SmolLM2, `PLACE` = `PL` +
        `ACE`) would otherwise be judged by its first token alone, against labels of one token.
        """
        return None


NER_MAX_WORDS = 6
"""Longest entity the NER grammar lets a group hold (99.4% of SLUE-VoxPopuli fine-tune entities
are this short)."""

EDGE_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "but",
        "that",
        "which",
        "who",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "will",
        "would",
        "can",
        "could",
        "should",
        "has",
        "have",
        "had",
        "not",
        "i",
        "we",
        "you",
        "he",
        "she",
        "it",
        "they",
        "me",
        "them",
        "my",
        "our",
        "your",
        "his",
        "her",
        "its",
        "their",
        "this",
        "these",
        "those",
        "there",
        "as",
        "because",
        "than",
        "so",
        "if",
    ]
)
"""Function words an entity may not start with, nor (unless it must close) end with: SLUE's
labels leave them outside the brackets ("the [ORG council]", "[PLACE ireland] and ...").
`this` is an exception at the start in SLUE ("this year") but rare; it is kept out."""


class NerGrammar(Grammar):
    """The transcript's words, in order, single-spaced, some inside `[TAG ...]` groups: TAG one of
    the 7, a group holds 1 to `NER_MAX_WORDS` words, does not start with an `EDGE_WORDS` word
    nor end with one (unless the transcript ends there or the group is full), and groups do not
    nest."""

    def __init__(self, text: str) -> None:
        self.words = text.split()
        self.edge = [w.strip(_EDGE_PUNCT).lower() in EDGE_WORDS for w in self.words]

    def _options(
        self, k: int, n_in: int, first: bool
    ) -> tuple[list[tuple[str, tuple[int, int, bool]]], bool]:
        """(segment, state after it) choices before word k with `n_in` words in the open group
        (0: none open), and whether the answer may end here."""
        options: list[tuple[str, tuple[int, int, bool]]] = []
        sep = "" if first else " "
        n = len(self.words)
        if k < n:
            word = self.words[k]
            if n_in == 0:
                options.append((sep + word, (k + 1, 0, False)))
                if not self.edge[k]:
                    options += [(f"{sep}[{tag} {word}", (k + 1, 1, False)) for tag in SLUE_TAGS]
            elif n_in < NER_MAX_WORDS:
                options.append((sep + word, (k + 1, n_in + 1, False)))
        if n_in > 0 and (not self.edge[k - 1] or k == n or n_in == NER_MAX_WORDS):
            options.append(("]", (k, 0, False)))
        return options, k == n and n_in == 0

    def state(self, text: str) -> tuple[list[str], bool] | None:
        rest = text[1:] if text.startswith(" ") else text
        st = (0, 0, True)
        while True:
            options, can_end = self._options(*st)
            if not rest:
                return [seg for seg, _ in options], can_end
            # Segments are prefix-free (a word holds no "[" or "]"), so at most one matches whole.
            whole = [(seg, nxt) for seg, nxt in options if rest.startswith(seg)]
            if whole:
                seg, st = whole[0]
                rest = rest[len(seg) :]
                continue
            partial = [seg[len(rest) :] for seg, _ in options if seg.startswith(rest)]
            return (partial, False) if partial else None

    task = "ner"

    def alternatives(self, text: str) -> list[Alternative] | None:
        """Right after an opening `[`: every (tag, length) of the entity, chosen jointly.

        Each candidate is `TAG w1 .. wk]`, scored together with the words that follow it up to
        the longest candidate's end (`... wk] wk+1 .. wK`), so that all candidates cover the same
        words and differ only in the tag and where the bracket closes. A tag alone, chosen
        before its words are seen, is little more than the model's prior over tag names.
        """
        if not text.endswith("[") or self.state(text) is None:
            return None
        start = len(parse_ner(text[:-1]).text.split())  # the entity's first word
        longest = min(NER_MAX_WORDS, len(self.words) - start)
        out = []
        for tag in SLUE_TAGS:
            for k in range(1, longest + 1):
                forced = f"{tag} {' '.join(self.words[start : start + k])}]"
                if self.state(text + forced) is None:
                    continue  # e.g. a group may not end with a function word
                after = self.words[start + k : start + longest]
                out.append(Alternative(forced + "".join(" " + w for w in after), forced, tag))
        return out or None


class SentimentGrammar(Grammar):
    """Exactly one of the three class names."""

    def state(self, text: str) -> tuple[list[str], bool] | None:
        rest = text[1:] if text.startswith(" ") else text
        if rest in SENTIMENTS:
            return [], True
        partial = [s[len(rest) :] for s in SENTIMENTS if s.startswith(rest)]
        return (partial, False) if partial else None

    task = "sa"

    def alternatives(self, text: str) -> list[Alternative] | None:
        """At the start: the three classes."""
        return [Alternative(s, s, s) for s in SENTIMENTS] if text in ("", " ") else None


def grammar_for(task: str, text: str) -> Grammar:
    """The grammar of valid answers for `task` on `text`."""
    return NerGrammar(text) if task == "ner" else SentimentGrammar()


class GrammarProcessor:
    """Greedy decoding restricted to a grammar, one row at a time (a transformers logits
    processor: called with input ids (B, L) and next-token scores (B, V), returns the scores).

    Per row it takes the highest-scoring of the top `top_k` tokens whose text keeps the answer a
    valid prefix (a stop or newline token only where the answer may end), falling back to the
    first token of each allowed continuation; every other token's score becomes -inf, so greedy
    decoding picks it. Where the grammar offers whole labels (`Grammar.alternatives`: the
    sentiment classes; an entity's tag and length after `[`), the label with the highest
    log-probability as a whole is chosen (`Annotator.sequence_logprobs`, from the row's own prompt and answer so far, so
    batch-independent) and its tokens are forced. A row whose text has left the grammar (e.g. a
    byte-level token that is half a character) is left free; validation then judges its answer.
    """

    def __init__(
        self,
        annotator: Annotator,
        grammars: list[Grammar | None],
        prompt_width: int,
        prompts: list[list[int]],
        prefix: str = "",
        prefix_ids: list[int] | None = None,
        top_k: int = 32,
    ) -> None:
        self.annotator = annotator
        self.tokenizer = annotator.tokenizer
        self.stops = annotator._special_stop
        self.newlines = annotator._newline_ids
        self.grammars = grammars
        self.width = prompt_width
        self.prompts = prompts
        """Each row's prompt token ids (prefix included, no padding)."""
        self.prefix = prefix
        self.prefix_ids = prefix_ids or []
        self.top_k = top_k
        self.plans: dict[int, list[int]] = {}
        """Tokens still to force per row: the rest of a label chosen as a whole."""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _allowed(self, grammar: Grammar, ids: list[int], token: int, can_end: bool) -> bool:
        if token in self.stops:
            return can_end
        new = self._decode([*ids, token])
        if token in self.newlines or "\n" in new:
            state = grammar.state(new.split("\n", 1)[0])
            return state is not None and state[1]
        return grammar.state(new) is not None

    def choose(
        self, row: int, grammar: Grammar, ids: list[int], scores: torch.Tensor
    ) -> int | None:
        """The token row `ids` takes next under `grammar`, or None to leave the row free."""
        if self.plans.get(row):
            return self.plans[row].pop(0)
        text = self._decode(ids)
        state = grammar.state(text)
        if state is None:
            return None
        continuations, can_end = state
        label = self._choose_label(row, grammar, ids, text)
        if label is not None:
            self.plans[row] = label[1:]
            return label[0]
        k = min(self.top_k, scores.shape[-1])
        for token in torch.topk(scores, k).indices.tolist():  # best first
            if self._allowed(grammar, ids, token, can_end):
                return token
        # No top-k token fits: the first token of each allowed continuation, best-scoring first.
        firsts: set[int] = set()
        for cont in continuations:
            firsts.update(self.tokenizer(cont, add_special_tokens=False).input_ids[:1])
        for token in sorted(firsts, key=lambda t: -float(scores[t])):
            if self._allowed(grammar, ids, token, can_end):
                return token
        return min(self.stops) if can_end else None

    def _choose_label(
        self, row: int, grammar: Grammar, ids: list[int], text: str
    ) -> list[int] | None:
        """Token ids of the best whole label where the grammar offers labels, else None."""
        labels = grammar.alternatives(text)
        if not labels:
            return None
        lead = self.annotator.answer_lead(text)
        scored, forced, names = [], [], []
        for alt in labels:
            label_ids = self.tokenizer(lead + alt.forced, add_special_tokens=False).input_ids
            if label_ids and grammar.state(self._decode([*ids, *label_ids])) is not None:
                scored.append(self.tokenizer(lead + alt.scored, add_special_tokens=False).input_ids)
                forced.append(label_ids)
                names.append(alt.label)
        if len(forced) < 2:
            return forced[0] if forced else None
        logprobs = self.annotator.sequence_logprobs(
            self.prompts[row] + ids, scored, self.prefix, self.prefix_ids
        )
        if grammar.task in self.annotator.calibrate:
            prior = self.annotator.label_prior(grammar.task)
            logprobs = [lp - prior[name] for lp, name in zip(logprobs, names, strict=True)]
        return forced[max(range(len(forced)), key=lambda i: logprobs[i])]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, grammar in enumerate(self.grammars):
            if grammar is None:
                continue
            ids = input_ids[row, self.width :].tolist()
            if any(t in self.stops or t in self.newlines for t in ids):
                continue  # finished: generate only pads this row now
            token = self.choose(row, grammar, ids, scores[row])
            if token is not None:
                scores[row] = float("-inf")
                # Finite even where the model scored it -inf: greedy takes the only finite one.
                scores[row, token] = 0.0
        return scores


# ------------------------------------------------------------------------------ prompts and model


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
            probe = "0xanswer0"
            full = tok.apply_chat_template(
                [{"role": "user", "content": "x"}, {"role": "assistant", "content": probe}],
                tokenize=False,
            )
            after = tok(full.split(probe, 1)[1], add_special_tokens=False).input_ids
            stops.update(after[:1])
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
        """Load a packaged model name (`sources.py`), a local HF directory or a hub id."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from speechllm.hub.sources import resolve

        path = resolve(name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except OSError as exc:
            raise ModelSourceError(f"cannot load LLM {name!r} from {path}: {exc}") from exc
        return cls(model, tokenizer, name, style, constrained, tuple(calibrate))

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
        """The prompt for one item as (prefix, suffix): the prefix (instruction and few-shot
        examples, special tokens included, e.g. BOS) is the same for every text of a task, so
        its keys and values are computed once (`generate`); the suffix holds the text."""
        instruction = INSTRUCTIONS[task] + (STRICT_SUFFIX[task] if strict else "")
        examples = NER_EXAMPLES if task == "ner" else SA_EXAMPLES
        label = "Sentence" if task == "ner" else "Text"
        if self.style == "chat":
            turns = [{"role": "system", "content": instruction}]
            for x, y in examples:
                turns += [
                    {"role": "user", "content": f"{label}: {x}"},
                    {"role": "assistant", "content": y},
                ]
            marker = "\x00TEXT\x00"
            turns.append({"role": "user", "content": f"{label}: {marker}"})
            full = self.tokenizer.apply_chat_template(
                turns, add_generation_prompt=True, tokenize=False
            )
            # Split before the last user turn: the template's text for it starts after the
            # last assistant answer's end.
            head, _, tail = full.partition(marker)
            cut = head.rindex(examples[-1][1]) + len(examples[-1][1])
            end = head.find("\n", cut)
            cut = end + 1 if end >= 0 else cut
            return head[:cut], head[cut:] + text + tail
        shots = "".join(f"{label}: {x}\nAnswer: {y}\n\n" for x, y in examples)
        bos = self.tokenizer.bos_token or ""
        return f"{bos}{instruction}\n\n{shots}", f"{label}: {text}\nAnswer:"

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


# ------------------------------------------------------------------------------ cache


def _returned_cache(out: Any) -> Any:
    """The key/value cache a forward pass returned (`cache` in newer transformers)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def cache_key(text: str, model: str, task: str, prompt_version: int = PROMPT_VERSION) -> str:
    """sha256 (hex) of (text, model name, prompt version, task)."""
    payload = json.dumps([text, model, prompt_version, task], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class AnnotationCache:
    """A JSONL file of {key, annotation} lines; appended and flushed per batch.

    A killed run can leave a torn last line: lines that are not valid JSON are skipped on read
    (and counted in `skipped_lines`), so the next run regenerates only that batch.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.entries: dict[str, Annotation] = {}
        self.skipped_lines = 0
        # A torn last line left by a kill must not swallow the first entry appended after it.
        self._torn_end = False
        if self.path.is_file():
            raw = self.path.read_bytes()
            self._torn_end = bool(raw) and not raw.endswith(b"\n")
            for line in raw.decode("utf-8", errors="replace").split("\n"):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    self.entries[obj["key"]] = Annotation.from_json(obj["annotation"])
                except (ValueError, KeyError, TypeError):
                    self.skipped_lines += 1

    def get(self, key: str) -> Annotation | None:
        """The cached annotation of a key, if any."""
        return self.entries.get(key)

    def add(self, items: Iterable[tuple[str, Annotation]]) -> None:
        """Append entries and flush them to disk (fsync), so a kill loses at most a batch."""
        lines = []
        for key, ann in items:
            self.entries[key] = ann
            lines.append(json.dumps({"key": key, "annotation": ann.to_json()}, ensure_ascii=False))
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8", newline="\n") as f:
            if self._torn_end:
                f.write("\n")
                self._torn_end = False
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())


# ------------------------------------------------------------------------------ running


@dataclass
class RunStats:
    """What `annotate_texts` did: model calls made and answers taken from the cache."""

    generated: int = 0
    cached: int = 0


def annotate_texts(
    annotator: Annotator,
    task: str,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    cache: AnnotationCache | None = None,
    progress: Callable[[int], None] | None = None,
    stats: RunStats | None = None,
) -> list[Annotation]:
    """One annotation per text (same order). Distinct uncached texts are decoded in batches of
    similar length; each finished batch goes to the cache before the next starts."""
    if task not in ANNOTATION_TASKS:
        raise ValueError(f"unknown annotation task {task!r}; expected one of {ANNOTATION_TASKS}")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    keys = [cache_key(t, annotator.cache_name, task) for t in texts]
    found: dict[str, Annotation] = {}
    todo: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            found[key] = hit
        else:
            todo.setdefault(key, text)
    if stats is not None:
        stats.cached += sum(k in found for k in keys)
    if progress:
        progress(sum(k in found for k in keys))
    pending = sorted(todo.items(), key=lambda kv: len(kv[1]))
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        anns = annotator.annotate_batch(task, [t for _, t in chunk])
        new = list(zip([k for k, _ in chunk], anns, strict=True))
        found.update(new)
        if cache is not None:
            cache.add(new)
        if stats is not None:
            stats.generated += len(chunk)
        if progress:
            progress(sum(k in dict(new) for k in keys))
    return [found[k] for k in keys]


def parse_tasks(text: str, option: str = "--tasks") -> list[str]:
    """`ner,sa` (or `all`) -> tasks in ANNOTATION_TASKS order; ValueError (naming `option`) on
    anything else."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return list(ANNOTATION_TASKS)
    unknown = [t for t in names if t not in ANNOTATION_TASKS]
    if unknown or not names:
        raise ValueError(
            f"{option} must be a comma-separated subset of {','.join(ANNOTATION_TASKS)} or all, "
            f"got {text!r}"
        )
    return [t for t in ANNOTATION_TASKS if t in names]


def summary_path(out: str | os.PathLike[str]) -> Path:
    """`OUT.summary.json` beside the output manifest (its suffix replaced)."""
    return Path(out).with_suffix(".summary.json")


def cache_path(out: str | os.PathLike[str]) -> Path:
    """`OUT.cache.jsonl` beside the output manifest (its suffix replaced)."""
    return Path(out).with_suffix(".cache.jsonl")


def annotate_utterances(
    utts: Sequence[Utterance],
    annotator: Annotator,
    tasks: Sequence[str] = ANNOTATION_TASKS,
    *,
    batch_size: int = 8,
    cache: AnnotationCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Utterance], dict[str, Any]]:
    """Label each utterance's text; return (utterances with `entities` / `sentiment` replaced
    for the annotated tasks, summary dict).

    A failed annotation leaves that field None ("not labelled") and is listed in the summary's
    `failures`; fields of tasks not annotated are kept as they were.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    stats = RunStats()
    per_task: dict[str, list[Annotation]] = {}
    for task in tasks:
        per_task[task] = annotate_texts(
            annotator,
            task,
            [u.text for u in utts],
            batch_size=batch_size,
            cache=cache,
            progress=progress,
            stats=stats,
        )
    out = []
    for i, u in enumerate(utts):
        new = replace(u)
        if "ner" in per_task:
            new.entities = per_task["ner"][i].entities if per_task["ner"][i].ok else None
        if "sa" in per_task:
            new.sentiment = per_task["sa"][i].sentiment if per_task["sa"][i].ok else None
        out.append(new)
    summary = summarize(utts, per_task)
    summary.update(
        model=annotator.name,
        prompt_style=annotator.style,
        prompt_version=PROMPT_VERSION,
        batch_size=batch_size,
        generated=stats.generated,
        cached=stats.cached,
        wall_seconds=round(time.perf_counter() - t0, 3),
        # This process's CPU time: the cost of the labels on a machine shared with other work.
        cpu_seconds=round(time.process_time() - cpu0, 3),
    )
    return out, summary


def summarize(utts: Sequence[Utterance], per_task: dict[str, list[Annotation]]) -> dict[str, Any]:
    """Counts per task and the list of failures (id, task, error, last answer)."""
    summary: dict[str, Any] = {"n_utterances": len(utts), "tasks": list(per_task), "per_task": {}}
    failures = []
    for task, anns in per_task.items():
        counts: dict[str, Any] = {
            "n": len(anns),
            "ok": sum(a.ok for a in anns),
            "failed": sum(not a.ok for a in anns),
            "retried": sum(a.attempts > 1 for a in anns),
            "ok_after_retry": sum(a.ok and a.attempts > 1 for a in anns),
        }
        if task == "ner":
            counts["entities"] = sum(len(a.entities or []) for a in anns)
            counts["invalid_tags"] = sum(a.invalid_tags for a in anns if a.ok)
            counts["dropped_phrases"] = sum(a.dropped_phrases for a in anns if a.ok)
            counts["per_tag"] = {
                t: sum(e[0] == t for a in anns for e in a.entities or []) for t in SLUE_TAGS
            }
        else:
            counts["per_class"] = {s: sum(a.sentiment == s for a in anns) for s in SENTIMENTS}
        summary["per_task"][task] = counts
        failures += [
            {"id": u.id, "task": task, "error": a.error, "answer": a.answer}
            for u, a in zip(utts, anns, strict=True)
            if not a.ok
        ]
    summary["failures"] = failures
    return summary


def write_summary(path: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    """Write the summary JSON (atomically: temporary file + rename)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)
