"""Validation of annotation answers (`check_ner`, `check_sentiment`) and the `Annotation` record.

- NER: markup with a tag outside the 7 (any case variant of the 7 is accepted) is dropped, the
  words kept, and counted (`invalid_tags`); an entity phrase that does not occur in the transcript
  is dropped and counted (`dropped_phrases`); kept phrases are spelt as the transcript spells
  them. The answer is malformed when its words (markup removed, case and edge punctuation
  ignored) are not the transcript's words, or when brackets are left unbalanced.
- SA: malformed when the answer names none (or several) of the three classes.

A malformed answer is asked again once with a stricter instruction (`Annotator.annotate_batch`);
if that fails too the annotation is a recorded failure (`ok` False, `error` saying why).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from speechllm.labels import SENTIMENTS, SLUE_TAGS
from speechllm.model.prompts import parse_ner, parse_sentiment

# `[WORD phrase]` with any first word: markup whose tag is one of the 7 (in any case) is kept,
# other tags are dropped.
_ANY_MARKUP = re.compile(r"\[\s*([A-Za-z_]+)\s+([^\[\]]*?)\s*\]")
EDGE_PUNCT = '.,;:?!"()'
"""Punctuation ignored at the edges of words when answer and transcript are compared."""


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
    keys = (w.strip(EDGE_PUNCT).lower() for w in text.split())
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
    words = phrase.strip(EDGE_PUNCT + " ").split()
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
