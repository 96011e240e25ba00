"""Task prompts, the answer formats the model is trained to produce, and their parsers.

Answer formats (what the LLM writes after the prompt):
- `asr`: the transcript, lower case, as SLUE's normalized text.
- `ner`: the transcript with each entity wrapped inline as `[TAG phrase]`, TAG one of the 7 SLUE
  tags, e.g. `the [ORG european commission] met in [PLACE brussels] on [WHEN monday]`.
  Inline markup (rather than a separate entity list) makes the model transcribe and tag in one
  pass, as SLUE's E2E NER systems do, and keeps every phrase anchored in the transcript.
- `sa`: one word, `Negative`, `Neutral` or `Positive`.
- `all`: the three in one generation: the sentiment word, ` | `, then the `ner` answer, e.g.
  `Neutral | the [ORG european commission] met in [PLACE brussels]`. Sentiment comes first
  because the whole utterance is already in the prompt (the model reads it before answering), so
  nothing is lost by judging first, and an answer cut short by the length limit keeps it.

Instructions are short on purpose: every prompt token is paid on every training example and
every generation, and a model trained on these prompts needs no explanation of the format
(v1's instructions, which listed the tags, cost 25 to 61 tokens; these cost 3 to 8).

Parsers never raise on malformed model output: they return what they can and say whether the
answer was well formed, so callers can count failures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from speechllm.labels import SENTIMENTS, SLUE_TAGS

TASKS: tuple[str, ...] = ("asr", "ner", "sa", "all")

# Version of the prompt texts and answer formats below; bump when they change (saved models
# record it, and loading a model trained on another version is refused).
PROMPT_VERSION = 2

INSTRUCTIONS: dict[str, str] = {
    "asr": "Transcribe.",
    "ner": "Transcribe with entities.",
    "sa": "Sentiment?",
    "all": "Sentiment, then transcribe with entities.",
}


def parse_tasks(text: str, choices: Sequence[str] = TASKS, option: str = "--tasks") -> list[str]:
    """A comma-separated task list (`asr,ner,sa`, `all`, ...) -> the tasks named, in `choices`
    order; ValueError naming `option` on an unknown or empty list.

    Where `all` is not itself a choice (annotation: `ner,sa`) it stands for every choice; among
    the model's `TASKS` it is the one-generation answer that carries all three outputs.
    """
    names = [t.strip() for t in text.split(",") if t.strip()]
    every = "all" not in choices
    if every and names == ["all"]:
        return list(choices)
    unknown = [t for t in names if t not in choices]
    if unknown or not names:
        raise ValueError(
            f"{option} must be a comma-separated subset of {','.join(choices)}"
            f"{' or all' if every else ''}, got {text!r}"
        )
    return [t for t in choices if t in names]


ALL_SEPARATOR = " | "
"""Between the sentiment word and the tagged transcript in an `all` answer."""

# The phrase starts with a non-space: "[PLACE  ]" is malformed, not an entity with no words.
_TAG_RE = re.compile(r"\[(" + "|".join(SLUE_TAGS) + r")\s+([^\[\]\s][^\[\]]*?)\s*\]")
_BRACKET_RE = re.compile(r"\[[^\[\]]*\]?|\]")
_SPACES = re.compile(r"\s+")


def phrase_pattern(phrase: str) -> re.Pattern[str]:
    """`phrase` as whole words: not preceded or followed by a word character (punctuation may
    follow it, as in "by the eu.")."""
    return re.compile(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)")


def format_ner(text: str, entities: list[tuple[str, str]]) -> str:
    """Insert `[TAG phrase]` markup into `text` at each entity's place in the transcript.

    The entity list may come in any order (SLUE's tsv lists them right to left): each phrase
    claims its first whole-word occurrence (punctuation may follow it, as in "by the eu.") that
    no earlier entity claimed, and the markup is then written left to right. A phrase that
    cannot be placed (labels made elsewhere may not match the transcript, or overlap another
    entity) is appended at the end so the label is not lost.
    """
    spans: list[tuple[int, int, str]] = []
    missing: list[str] = []
    for tag, phrase in entities:
        pattern = phrase_pattern(phrase)
        # Every occurrence, overlapping ones too (finditer skips those): in "the the the" the
        # phrase "the the" must still find words 2-3 when word 1 is taken.
        pos = 0
        while m := pattern.search(text, pos):
            if all(m.end() <= s or m.start() >= e for s, e, _ in spans):
                spans.append((m.start(), m.end(), tag))
                break
            pos = m.start() + 1
        else:
            missing.append(f"[{tag} {phrase}]")
    out: list[str] = []
    pos = 0
    for start, end, tag in sorted(spans):
        out.append(text[pos:start])
        out.append(f"[{tag} {text[start:end]}]")
        pos = end
    out.append(text[pos:])
    result = "".join(out)
    if missing:
        result = result.rstrip() + " " + " ".join(missing)
    return _SPACES.sub(" ", result).strip()


def target_text(
    task: str, text: str, entities: list[tuple[str, str]] | None, sentiment: str | None
) -> str:
    """The answer the model is trained to produce for `task` on an utterance."""
    if task == "asr":
        return text
    if task == "ner":
        if entities is None:
            raise ValueError("ner target needs entity labels")
        return format_ner(text, entities)
    if task in ("sa", "all") and sentiment not in SENTIMENTS:
        raise ValueError(f"{task} target needs a sentiment in {SENTIMENTS}, got {sentiment!r}")
    if task == "sa":
        return sentiment
    if task == "all":
        if entities is None:
            raise ValueError("all target needs entity labels")
        return f"{sentiment}{ALL_SEPARATOR}{format_ner(text, entities)}"
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


@dataclass
class NerParse:
    """A parsed NER answer."""

    text: str
    """The transcript with markup removed."""
    entities: list[tuple[str, str]] = field(default_factory=list)
    """(tag, phrase) pairs in order."""
    ok: bool = True
    """False when the answer held malformed markup (unknown tag, unbalanced brackets)."""


def parse_ner(answer: str) -> NerParse:
    """Parse an inline-markup NER answer. Never raises."""
    entities = [
        (m.group(1), _SPACES.sub(" ", m.group(2)).strip()) for m in _TAG_RE.finditer(answer)
    ]
    plain = _TAG_RE.sub(lambda m: m.group(2), answer)
    # Anything bracket-like left over is malformed markup: drop the brackets and any tag-like
    # first word so the transcript stays usable, and flag the answer.
    ok = _BRACKET_RE.search(plain) is None
    if not ok:
        plain = _BRACKET_RE.sub(lambda m: " " + _strip_tag(m.group(0)) + " ", plain)
    return NerParse(text=_SPACES.sub(" ", plain).strip(), entities=entities, ok=ok)


def _strip_tag(fragment: str) -> str:
    inner = fragment.strip("[]").strip()
    first, _, rest = inner.partition(" ")
    return rest if first.isupper() and rest else ("" if first.isupper() else inner)


def parse_sentiment(answer: str) -> str | None:
    """The sentiment class named by an answer, or None if it names none (or several)."""
    found = {s for s in SENTIMENTS if re.search(rf"\b{s}\b", answer, flags=re.IGNORECASE)}
    return found.pop() if len(found) == 1 else None


@dataclass
class AllParse:
    """A parsed `all` answer: the sentiment and the NER parse of the tagged transcript."""

    sentiment: str | None
    """The sentiment class, or None when the answer names none."""
    ner: NerParse
    """Transcript and entities."""

    @property
    def ok(self) -> bool:
        return self.sentiment is not None and self.ner.ok


def parse_all(answer: str) -> AllParse:
    """Parse an `all` answer (`Sentiment | tagged transcript`). Never raises: without the
    separator the whole answer is read as the tagged transcript and the sentiment is None."""
    head, sep, tail = answer.partition(ALL_SEPARATOR.strip())
    if not sep:
        return AllParse(None, parse_ner(answer))
    return AllParse(parse_sentiment(head), parse_ner(tail))


def parse_asr(answer: str) -> str:
    """A transcript answer, whitespace-normalised (markup, if the model emitted any, removed)."""
    return parse_ner(answer).text
