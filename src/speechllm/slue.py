"""Scoring as SLUE does: corpus WER, NER micro F1 over (tag, phrase) with repeats numbered, sentiment
macro F1, and the SLUE score.

WER: total word edits / total reference words x 100 after SLUE-VoxPopuli's normalisation (lower case,
`.;?!` removed, spaces collapsed). NER: per utterance an unordered multiset of (tag, phrase); repeats
are numbered (tag, phrase, k) so a repeated entity must be found as often as it occurs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import jiwer

_PUNCT = re.compile(r"[.;?!]")
_PHRASE_PUNCT = re.compile(r"[.,!?;]")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """SLUE-VoxPopuli WER normalisation: lower case, `.;?!` removed, whitespace collapsed."""
    return _SPACES.sub(" ", _PUNCT.sub("", text.lower())).strip()


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER in percent (total edits / total reference words x 100)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize_text(r) for r in references]
    hyps = [normalize_text(h) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not pairs:
        return 0.0
    out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
    edits = out.substitutions + out.deletions + out.insertions
    n_ref = out.substitutions + out.deletions + out.hits
    return 100.0 * edits / n_ref


def _normalize_phrase(phrase: str) -> str:
    phrase = _PHRASE_PUNCT.sub("", phrase.lower())
    phrase = re.sub(r"(\w)'s\b", r"\1 's", phrase)
    return _SPACES.sub(" ", phrase).strip()


def _numbered(entities: Sequence[tuple[str, str]]) -> Counter:
    seen: Counter = Counter()
    out: Counter = Counter()
    for tag, phrase in entities:
        key = (tag, _normalize_phrase(phrase))
        seen[key] += 1
        out[(*key, seen[key])] += 1
    return out


def ner_scores(
    gold: Sequence[Sequence[tuple[str, str]]], pred: Sequence[Sequence[tuple[str, str]]]
) -> dict[str, float]:
    """Micro precision/recall/F1 (x100) and label-only F1 over utterances."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold but {len(pred)} predicted utterances")

    def micro(g_list, p_list) -> tuple[float, float, float]:
        tp = n_gold = n_pred = 0
        for g, p in zip(g_list, p_list, strict=True):
            gc, pc = _numbered(g), _numbered(p)
            tp += sum((gc & pc).values())
            n_gold += sum(gc.values())
            n_pred += sum(pc.values())
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_gold if n_gold else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        return 100 * prec, 100 * rec, 100 * f1

    p, r, f = micro(gold, pred)
    label_only = [[(t, "x") for t, _ in u] for u in gold], [[(t, "x") for t, _ in u] for u in pred]
    _, _, lf = micro(*label_only)
    return {"precision": p, "recall": r, "f1": f, "label_f1": lf}


def sentiment_macro_f1(gold: Sequence[str], pred: Sequence[str | None]) -> float:
    """Macro F1 x100 as scikit-learn computes it (an unknown predicted label adds a zero class)."""
    from sklearn.metrics import f1_score

    labels = [p if p is not None else "<unparsed>" for p in pred]
    return 100.0 * float(f1_score(list(gold), labels, average="macro", zero_division=0))


def slue_score(wer_value: float, ner_f1: float, sa_f1: float) -> float:
    """((100 - WER) + SA macro F1 + NER micro F1) / 3."""
    return ((100.0 - wer_value) + sa_f1 + ner_f1) / 3.0
