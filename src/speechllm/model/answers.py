"""`Prediction`: what the system says about one clip, whoever said it.

The model's raw answers (`parse_answers`), the cascade baseline, the server and a predictions file
(`Prediction.from_utterance`) all give one, and scoring (`evaluation.metrics`) takes them, so the
shape of an answer is written down once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from speechllm.model.prompts import parse_all, parse_asr, parse_ner, parse_sentiment

if TYPE_CHECKING:
    from speechllm.data.manifest import Utterance

PARSED_TASKS = ("ner", "sa")
"""The outputs whose answer can be malformed (a transcript always parses)."""


@dataclass
class Prediction:
    """One clip's transcript, entities and sentiment, with the answers they were read from.

    A field is None where no answer gave it: `transcript` without an asr / ner / all answer,
    `entities` without a ner / all answer. `sentiment` is None also where the answer named no
    class (then `"sa"` is in `parse_failures`).
    """

    transcript: str | None = None
    entities: list[tuple[str, str]] | None = None
    """(tag, phrase) pairs in order."""
    sentiment: str | None = None
    parse_failures: list[str] = field(default_factory=list)
    """The outputs (`ner`, `sa`) whose answer was malformed or missing, once each."""
    raw: dict[str, str] = field(default_factory=dict)
    """The answer text per task asked (empty for predictions read from a file)."""
    id: str = ""
    """The utterance's id where the prediction is scored against a reference."""

    @property
    def has_sentiment(self) -> bool:
        """Whether a sentiment was asked for (it may still be None: an unparsed answer)."""
        return self.sentiment is not None or "sa" in self.raw or "all" in self.raw

    def failed(self, task: str) -> bool:
        """Whether the output of `task` (`ner` or `sa`) did not parse."""
        return task in self.parse_failures

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of `speechllm infer` and the server: raw, parse_failures and the
        fields of the tasks answered (entities as [tag, phrase] lists)."""
        out: dict[str, Any] = {"raw": dict(self.raw), "parse_failures": list(self.parse_failures)}
        if self.transcript is not None:
            out["transcript"] = self.transcript
        if self.entities is not None:
            out["entities"] = [list(e) for e in self.entities]
        if self.has_sentiment:
            out["sentiment"] = self.sentiment
        return out

    @classmethod
    def from_utterance(cls, u: Utterance) -> Prediction:
        """A prediction written in manifest format (`speechllm score`'s input): a missing entity
        list or sentiment counts as an answer that did not parse."""
        failures = [t for t, v in (("ner", u.entities), ("sa", u.sentiment)) if v is None]
        entities = None if u.entities is None else list(u.entities)
        return cls(u.text, entities, u.sentiment, failures, id=u.id)

    def to_utterance(self, reference: Utterance) -> Utterance:
        """This prediction as a manifest line beside `reference` (its id, audio, duration and
        split). Entities whose phrase is only whitespace are dropped (no manifest line may hold
        one; SLUE scoring drops them too, so the scores do not change)."""
        from speechllm.data.manifest import Utterance

        entities = (
            None
            if self.entities is None
            else [(t, " ".join(ph.split())) for t, ph in self.entities if ph.strip()]
        )
        return Utterance(
            reference.id,
            reference.audio,
            reference.duration,
            self.transcript or "",
            entities,
            self.sentiment,
            reference.split,
        )


def parse_answers(raw: Mapping[str, str], id: str = "") -> Prediction:
    """The prediction of one clip's raw answers per task (`asr`, `ner`, `sa`, `all`).

    An `all` answer carries all three; answers of separate tasks, if also asked, win over its
    parts. Parse failures are counted per output, the `all` answer's as the separate ones'.
    """
    p = Prediction(raw=dict(raw), id=id)
    if "all" in raw:
        joint = parse_all(raw["all"])
        p.transcript, p.entities, p.sentiment = joint.ner.text, joint.ner.entities, joint.sentiment
        p.parse_failures += [
            t for t, ok in (("ner", joint.ner.ok), ("sa", joint.sentiment is not None)) if not ok
        ]
    if "ner" in raw:
        ner = parse_ner(raw["ner"])
        p.transcript, p.entities = ner.text, ner.entities
        if not ner.ok:
            p.parse_failures.append("ner")
    if "asr" in raw:
        p.transcript = parse_asr(raw["asr"])
    if "sa" in raw:
        p.sentiment = parse_sentiment(raw["sa"])
        if p.sentiment is None:
            p.parse_failures.append("sa")
    # An output flagged by both the `all` answer and its own answer is counted once.
    p.parse_failures = list(dict.fromkeys(p.parse_failures))
    return p
