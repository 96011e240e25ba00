"""Scoring exactly as the SLUE toolkit (asappresearch/slue-toolkit) does for SLUE-VoxPopuli.

- WER: total word edits / total reference words x 100 over the corpus (the toolkit's
  `eval_utils.get_wer`), on text normalised as the toolkit writes its `.wrd` references
  (`prepare_voxpopuli.create_manifest`: `.;?!` removed, whitespace collapsed).
- NER: per utterance an unordered list of (combined tag, phrase); repeats are numbered
  (tag, phrase, k) (`make_distinct`), and per sentence and tag TP = |gold ∩ pred|; micro, macro and
  per-tag precision/recall/F1 as `eval_utils.get_ner_scores`, plus label-F1 (the same with every
  phrase replaced by a constant). Tags are mapped OntoNotes -> SLUE (`raw_to_combined_tag_map`);
  DISCARD tags leave both sides. Phrases are tokenised as the toolkit tokenises its references
  (`data_utils.remove_punc` and `reformat_wrd`).
- Sentiment: scikit-learn macro F1 x 100, as the toolkit's `eval_*_sentiment.py` calls it.
- SLUE score: ((100 - WER) + SA macro F1 + NER micro F1) / 3.

tests/test_slue.py checks all of this against the toolkit's own code (PyPI `slue-evaluator`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import jiwer

from speechllm.labels import ONTONOTES_TO_SLUE

# slue_toolkit/prepare/prepare_voxpopuli.py writes each reference as
# re.sub(r"\s+", " ", re.sub(r"[\.;?!]", "", normalized_text)). It does not lower-case (the
# normalized_text column is lower case already) and neither do we: a hypothesis in the wrong case
# is an error in SLUE too.
_WER_PUNCT = re.compile(r"[.;?!]")
_SPACES = re.compile(r"\s+")

# slue_toolkit/prepare/data_utils.py `remove_punc`: the characters taken out of entity phrases.
_PHRASE_PUNCT = re.compile(r"[.,!?;]")

LABEL_PHRASE = "phrase"
"""The constant every phrase becomes for label-F1 (the toolkit's score_type="label")."""


def normalize_text(text: str) -> str:
    """SLUE-VoxPopuli WER normalisation: `.;?!` removed, whitespace collapsed, ends stripped.

    Case is kept, as in the toolkit. Stripping the ends changes nothing the toolkit counts, since
    it splits on whitespace before scoring.
    """
    return _SPACES.sub(" ", _WER_PUNCT.sub("", text)).strip()


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[int, int]:
    """(total word edits, total reference words) after `normalize_text`, summed over utterances."""
    if len(references) != len(hypotheses):
        # The toolkit zips and would silently score only the shorter prefix.
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize_text(r) for r in references]
    hyps = [normalize_text(h) for h in hypotheses]
    # An empty reference still counts: every hypothesis word is an insertion (the toolkit sums
    # editdistance over all pairs). jiwer 3 refuses empty references, so count those here.
    edits = sum(len(h.split()) for r, h in zip(refs, hyps, strict=True) if not r)
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    n_ref = 0
    if pairs:
        out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        edits += out.substitutions + out.deletions + out.insertions
        n_ref = out.substitutions + out.deletions + out.hits
    return edits, n_ref


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER in percent: total word edits / total reference words x 100.

    With no reference words at all the toolkit's `safe_divide` divides by 1, so the result is
    100 x the number of inserted words (0 when the hypotheses are empty too); kept for exactness.
    """
    edits, n_ref = word_errors(references, hypotheses)
    return 100.0 * edits / (n_ref or 1)


def slue_tag(tag: str) -> str | None:
    """The combined SLUE tag of an OntoNotes or SLUE tag; None for a tag SLUE discards.

    The mapping is idempotent on the 7 SLUE tags, so gold and predictions may use either set. A tag
    in neither set is kept as it is: `get_ner_scores` scores any tag, so it is a false positive
    (and, being a tag of its own, enters the macro average).
    """
    return ONTONOTES_TO_SLUE.get(tag, tag)


def _reformat_word(word: str) -> list[str]:
    # slue_toolkit/prepare/data_utils.py `reformat_wrd`, verbatim in effect: one trailing
    # apostrophe is dropped ("members'" -> "members"); any other apostrophe splits the word, the
    # last piece keeping it ("parliament's" -> "parliament 's", "o'brien" -> "o 'brien",
    # "rock'n'roll" -> "rock n 'roll"); a bare "'s" stays one token.
    if word.endswith("'"):
        word = word[:-1]
    if "'" in word and word != "'s":
        parts = word.split("'")
        parts[-1] = "'" + parts[-1]
        return parts
    return [word]


def normalize_phrase(phrase: str) -> str:
    """An entity phrase tokenised as the toolkit tokenises its references.

    `.,!?;` are removed and each word goes through the toolkit's apostrophe rule (see
    `_reformat_word`). Case is kept (the toolkit compares phrases exactly). Words are split on any
    whitespace and empty tokens dropped: the toolkit splits on single spaces, and would either
    crash (`reformat_wrd("")`) or, after its own "  " -> " " read-back, drop the empty token; on
    every SLUE-VoxPopuli phrase the result is token for token the toolkit's `.wrd` reference.
    """
    tokens = [t for w in _PHRASE_PUNCT.sub("", phrase).split() for t in _reformat_word(w)]
    return " ".join(t for t in tokens if t)


def numbered_entities(
    entities: Iterable[tuple[str, str]], *, label_only: bool = False
) -> list[tuple[str, str, int]]:
    """One utterance's entities as the toolkit scores them: [(combined tag, phrase, k)].

    Tags are mapped to SLUE's combined tags and DISCARD tags dropped; phrases are normalised
    (`normalize_phrase`), or all replaced by `LABEL_PHRASE` for label-F1; the k-th repeat of a
    (tag, phrase) pair gets k = 1, 2, ... (the toolkit's `make_distinct`). An entity whose phrase
    normalises to nothing is dropped, as the toolkit drops an entity with no words.
    """
    seen: Counter[tuple[str, str]] = Counter()
    out: list[tuple[str, str, int]] = []
    for tag, phrase in entities:
        combined = slue_tag(tag)
        norm = normalize_phrase(phrase)
        if combined is None or not norm:
            continue
        key = (combined, LABEL_PHRASE if label_only else norm)
        seen[key] += 1
        out.append((*key, seen[key]))
    return out


def _prf(tp: int, n_gold: int, n_pred: int) -> tuple[float, float, float]:
    # The toolkit's `get_metrics`: each ratio is 0 where its denominator is 0 (`safe_divide`).
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def _scores(
    gold: Sequence[Sequence[tuple[str, str]]],
    pred: Sequence[Sequence[tuple[str, str]]],
    label_only: bool,
) -> dict[str, Any]:
    counts: dict[str, list[int]] = {}  # tag -> [tp, n_gold, n_pred]
    for g, p in zip(gold, pred, strict=True):
        # Numbered entries are unique, so |gold ∩ pred| per tag is the multiset intersection.
        gc = Counter(numbered_entities(g, label_only=label_only))
        pc = Counter(numbered_entities(p, label_only=label_only))
        for key in gc.keys() | pc.keys():
            c = counts.setdefault(key[0], [0, 0, 0])
            c[0] += min(gc[key], pc[key])
            c[1] += gc[key]
            c[2] += pc[key]
    per_tag: dict[str, dict[str, float]] = {}
    for tag in sorted(counts):
        tp, n_gold, n_pred = counts[tag]
        p, r, f = _prf(tp, n_gold, n_pred)
        per_tag[tag] = {
            "precision": 100 * p,
            "recall": 100 * r,
            "f1": 100 * f,
            "tp": tp,
            "n_gold": n_gold,
            "n_pred": n_pred,
        }
    tp, n_gold, n_pred = (sum(c[i] for c in counts.values()) for i in range(3))
    p, r, f = _prf(tp, n_gold, n_pred)

    def macro(key: str) -> float:
        # Mean over the tags seen in gold or predictions (the toolkit's stats keys), not over a
        # fixed tag list. With no tag at all the toolkit's np.mean([]) is nan; we say 0.
        vals = [t[key] for t in per_tag.values()]
        return sum(vals) / len(vals) if vals else 0.0

    return {
        "precision": 100 * p,
        "recall": 100 * r,
        "f1": 100 * f,
        "macro_precision": macro("precision"),
        "macro_recall": macro("recall"),
        "macro_f1": macro("f1"),
        "tp": tp,
        "n_gold": n_gold,
        "n_pred": n_pred,
        "per_tag": per_tag,
    }


def ner_scores(
    gold: Sequence[Sequence[tuple[str, str]]], pred: Sequence[Sequence[tuple[str, str]]]
) -> dict[str, Any]:
    """SLUE NER scores (x100) of predicted against gold (tag, phrase) lists, one list per utterance.

    Keys: `precision`, `recall`, `f1` (micro; `f1` is SLUE's headline NER figure), `macro_*`,
    `tp`, `n_gold`, `n_pred`, `per_tag` ({tag: {precision, recall, f1, tp, n_gold, n_pred}}), and
    the same for label-F1 prefixed `label_` (`label_f1`, `label_precision`, `label_per_tag`, ...).
    Tags may be OntoNotes or SLUE tags (see `slue_tag`).
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold but {len(pred)} predicted utterances")
    out = _scores(gold, pred, label_only=False)
    out.update({f"label_{k}": v for k, v in _scores(gold, pred, label_only=True).items()})
    return out


def sentiment_macro_f1(gold: Sequence[str], pred: Sequence[str | None]) -> float:
    """Macro F1 x100 as the toolkit computes it: `f1_score(gold, pred, average="macro") * 100`.

    scikit-learn averages over every label seen in gold or predictions, so a predicted label
    outside the three classes adds a class whose F1 is 0 and lowers the score; an unparsed answer
    (None) does the same, as one such class (callers count those separately as well).
    `zero_division=0` gives the toolkit's numbers (its default "warn" also yields 0) without the
    warning.
    """
    from sklearn.metrics import f1_score

    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold but {len(pred)} predicted labels")
    labels = [p if p is not None else "<unparsed>" for p in pred]
    return 100.0 * float(f1_score(list(gold), labels, average="macro", zero_division=0))


def slue_score(wer_value: float, ner_f1: float, sa_f1: float) -> float:
    """SLUE score: ((100 - WER) + SA macro F1 + NER micro F1) / 3, all in percent."""
    return ((100.0 - wer_value) + sa_f1 + ner_f1) / 3.0
