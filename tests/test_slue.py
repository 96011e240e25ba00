"""speechllm.evaluation.slue against the SLUE toolkit's own scoring code.

The oracle is PyPI `slue-evaluator==0.8` (a dev dependency): it ships slue-toolkit's
`eval/eval_utils.py` (`get_ner_scores`, `get_wer`) as `slue_toolkit_eval_utils`, its
`eval_w2v_ner.py` reader (`get_gt_pred`, `make_distinct`) as `eval`, and the toolkit's
SLUE-VoxPopuli NER references (`data/{dev,fine-tune}.raw.wrd`, one utterance a line, entities as
`<tag char> words ]`). The NER tests write hypotheses in that format and score them with the
toolkit's reader and scorer, exactly as `eval_ner` does.

It ships nothing for sentiment or for the ASR reference normalisation, so those oracles are the
toolkit's lines reproduced verbatim below (`_toolkit_wrd`, `_toolkit_sentiment_f1`).
"""

from __future__ import annotations

import ast
import csv
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from speechllm.data.importers.slue import import_slue_voxpopuli
from speechllm.evaluation.slue import (
    ner_scores,
    normalize_phrase,
    normalize_text,
    numbered_entities,
    sentiment_macro_f1,
    slue_score,
    wer,
)
from speechllm.labels import ONTONOTES_TO_SLUE
from tiny import require

TOL = 1e-9

RAW_TAGS = sorted(ONTONOTES_TO_SLUE)


# --- the oracle ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toolkit():
    require("slue_evaluator", "the dev extra of pyproject.toml")
    import slue_evaluator
    import slue_evaluator.eval as reader
    import slue_evaluator.slue_toolkit_eval_utils as utils
    from slue_evaluator.slue_toolkit_generic_utils import raw_entity_to_spl_char

    class Toolkit:
        data = Path(slue_evaluator.__file__).parent / "data"
        eval_utils = utils
        get_gt_pred = staticmethod(reader.get_gt_pred)
        char = raw_entity_to_spl_char

    return Toolkit


def _line(toolkit, items: list[tuple[str, str]]) -> str:
    """A toolkit `.wrd` line holding (raw tag, tokens) entities, with filler words between."""
    return " ".join(f"and {toolkit.char[tag]} {tokens} ]" for tag, tokens in items)


def _toolkit_ner(toolkit, ref: Path, hyp_lines: list[str], tmp_path: Path) -> dict:
    """`eval_ner(hyp, ref, eval_label="combined")` of the toolkit, returning its two metrics."""
    hyp = tmp_path / "hyp.wrd"
    hyp.write_text("".join(line + "\n" for line in hyp_lines), encoding="utf-8")
    out = {}
    for score_type in ("standard", "label"):
        labels, _ = toolkit.get_gt_pred(score_type, str(hyp), str(ref), "combined")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # np.mean([]) with no tags at all
            out[score_type] = toolkit.eval_utils.get_ner_scores(labels["ref"], labels["hypo"])
    return out


def _assert_same_ner(ours: dict, theirs: dict) -> None:
    for prefix, score_type in (("", "standard"), ("label_", "label")):
        m = theirs[score_type]
        for key, name in (("precision", "precision"), ("recall", "recall"), ("f1", "fscore")):
            assert ours[prefix + key] == pytest.approx(100 * m["overall_micro"][name], abs=TOL), (
                prefix + key
            )
            assert ours[prefix + "macro_" + key] == pytest.approx(
                100 * m["overall_macro"][name], abs=TOL
            ), prefix + "macro_" + key
        tags = {k for k in m if not k.startswith("overall_")}
        assert set(ours[prefix + "per_tag"]) == tags
        for tag in tags:
            for key, name in (("precision", "precision"), ("recall", "recall"), ("f1", "fscore")):
                assert ours[prefix + "per_tag"][tag][key] == pytest.approx(
                    100 * m[tag][name], abs=TOL
                ), (prefix, tag, key)


def _toolkit_wrd(text: str) -> str:
    # slue_toolkit/prepare/prepare_voxpopuli.py, create_manifest, verbatim: how the toolkit
    # writes each ASR reference (`{split}.wrd`).
    text = re.sub(r"[\.;?!]", "", text)
    text = re.sub(r"\s+", " ", text)
    return text


def _toolkit_sentiment_f1(gt: list[str], preds: list[str]) -> float:
    # slue_toolkit/eval/eval_w2v_sentiment.py and eval_nlp_sentiment.py, verbatim.
    from sklearn.metrics import f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning for a class never in gold
        return f1_score(gt, preds, average="macro") * 100


# --- SLUE-VoxPopuli dev ----------------------------------------------------------------------


@dataclass
class Dev:
    gold: list[list[tuple[str, str]]]
    spans: list[list[tuple[str, str, str]]]
    ref: Path
    texts: list[str]


@pytest.fixture(scope="module")
def dev(shared: Path, toolkit):
    """Dev utterances: our importer's gold, and every raw entity with both phrase forms.

    `spans[i]` lists utterance i's entities in text order as (raw tag, tsv phrase, toolkit
    tokens): the tsv substring our importer sees and the tokens of the toolkit's reference, read
    by the toolkit's own reader (eval_label="raw" keeps raw tags, DISCARD ones included).
    """
    tsv = shared / "data/slue-voxpopuli/slue-voxpopuli_dev.tsv"
    utts = import_slue_voxpopuli(tsv)
    gold = [u.entities for u in utts]
    ref = toolkit.data / "dev.raw.wrd"
    raw, _ = toolkit.get_gt_pred("standard", str(ref), str(ref), "raw")
    with open(tsv, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(rows) == len(gold) == len(raw["ref"]) == 1753
    spans = []
    for row, theirs in zip(rows, raw["ref"], strict=True):
        field = row["normalized_ner"]
        text = row["normalized_text"]
        # The toolkit writes entities in text order.
        mine = sorted(ast.literal_eval(field), key=lambda s: s[1]) if field != "None" else []
        assert [t for t, _, _ in mine] == [t for t, _, _ in theirs]
        spans.append(
            [
                (tag, text[s : s + n].strip(), tokens)
                for (tag, s, n), (_, tokens, _) in zip(mine, theirs, strict=True)
            ]
        )
    return Dev(gold=gold, spans=spans, ref=ref, texts=[row["normalized_text"] for row in rows])


def test_phrase_tokenisation_is_the_toolkits(shared: Path, toolkit) -> None:
    # Whole transcripts, tokenised by normalize_phrase, are the toolkit's references with the
    # entity markers taken out, on dev and fine-tune alike (6753 lines, every apostrophe case).
    marks = set(toolkit.char.values()) | {"]"}
    for split in ("dev", "fine-tune"):
        tsv = shared / f"data/slue-voxpopuli/slue-voxpopuli_{split}.tsv"
        with open(tsv, encoding="utf-8", newline="") as f:
            texts = [
                r["normalized_text"]
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            ]
        refs = (toolkit.data / f"{split}.raw.wrd").read_text(encoding="utf-8").splitlines()
        assert len(refs) == len(texts)
        for text, ref in zip(texts, refs, strict=True):
            assert normalize_phrase(text) == " ".join(w for w in ref.split(" ") if w not in marks)


def test_gold_entities_are_the_toolkits(dev, toolkit) -> None:
    gold, ref = dev.gold, dev.ref
    for score_type in ("standard", "label"):
        labels, _ = toolkit.get_gt_pred(score_type, str(ref), str(ref), "combined")
        ours = [sorted(numbered_entities(g, label_only=score_type == "label")) for g in gold]
        theirs = [sorted(u) for u in labels["ref"]]
        assert ours == theirs
    assert sum(map(len, gold)) == 1819
    # 946 rows carry spans, 3 of them only tags SLUE discards.
    assert sum(bool(g) for g in gold) == 943


def _perturb(kind: str, spans: list, rng: random.Random) -> tuple[list, list]:
    """Predictions for every utterance: (ours [(tag, phrase)], toolkit [(raw tag, tokens)])."""
    pool = [e for u in spans for e in u]
    mixed = kind == "mixed"
    ours_all, theirs_all = [], []
    for utt in spans:
        items: list[tuple[str, str, str]] = []  # (raw tag, our phrase, toolkit tokens)
        if kind == "empty_lines" and rng.random() < 0.3:
            utt = []
        for raw, phrase, tokens in utt:
            if (kind == "drop" or mixed) and rng.random() < 0.25:
                continue
            if (kind == "retag" or mixed) and rng.random() < 0.3:
                raw = rng.choice(RAW_TAGS)  # sometimes a DISCARD tag, sometimes the same tag
            if (kind == "apostrophe" or mixed) and "'" not in phrase and rng.random() < 0.5:
                # What the toolkit's tokeniser makes of each variant (data_utils.reformat_wrd,
                # remove_punc): "x's" -> "x 's"; "x'" -> "x"; "x." / "x," / "x?" -> "x".
                phrase, tokens = rng.choice(
                    [
                        (phrase + "'s", tokens + " 's"),
                        (phrase + "'", tokens),
                        (phrase + ".", tokens),
                        (phrase.replace(" ", ", ", 1) + "?", tokens),
                        (phrase + " 's", tokens + " 's"),
                        (phrase.replace(" ", "  "), tokens),
                        (phrase.upper(), tokens.upper()),  # case is kept on both sides
                    ]
                )
            items.append((raw, phrase, tokens))
            if (kind == "repeat" or mixed) and rng.random() < 0.3:
                items.append((raw, phrase, tokens))
        if (kind == "add" or mixed) and rng.random() < 0.4:
            raw, phrase, tokens = rng.choice(pool)
            items.append((rng.choice([raw, *RAW_TAGS]), phrase, tokens))
            items.append(("PERSON", "nobody's here", "nobody 's here"))
        # Our scorer takes OntoNotes or combined tags: use either at random.
        ours_all.append(
            [
                (c if (c := ONTONOTES_TO_SLUE[raw]) and rng.random() < 0.5 else raw, phrase)
                for raw, phrase, _ in items
            ]
        )
        theirs_all.append([(raw, tokens) for raw, _, tokens in items])
    return ours_all, theirs_all


@pytest.mark.parametrize(
    ("kind", "seed"),
    [
        ("gold", 0),
        ("drop", 1),
        ("add", 2),
        ("retag", 3),
        ("repeat", 4),
        ("apostrophe", 5),
        ("empty_lines", 6),
        ("mixed", 7),
        ("mixed", 8),
    ],
)
def test_ner_equals_toolkit_on_dev(dev, toolkit, tmp_path: Path, kind: str, seed: int) -> None:
    gold, spans, ref = dev.gold, dev.spans, dev.ref
    ours_pred, theirs_pred = _perturb(kind, spans, random.Random(seed))
    ours = ner_scores(gold, ours_pred)
    theirs = _toolkit_ner(toolkit, ref, [_line(toolkit, u) for u in theirs_pred], tmp_path)
    _assert_same_ner(ours, theirs)
    if kind == "gold":
        assert ours["f1"] == ours["label_f1"] == 100.0
        assert set(ours["per_tag"]) == {"PLACE", "QUANT", "ORG", "WHEN", "NORP", "PERSON", "LAW"}
    else:
        assert ours["f1"] < 100.0


def test_ner_hand_cases_equal_toolkit(toolkit, tmp_path: Path) -> None:
    # (raw tag for the toolkit, our tag, our phrase, toolkit tokens)
    gold = [
        [("GPE", "GPE", "paris", "paris"), ("GPE", "PLACE", "paris", "paris")],
        [("ORG", "ORG", "the eu's", "the eu 's"), ("FAC", "FAC", "the tower", "the tower")],
        [("DATE", "DATE", "today", "today"), ("CARDINAL", "QUANT", "two", "two")],
        [],
        [("PERSON", "PERSON", "o'brien", "o 'brien")],
    ]
    pred = [
        # A repeated entity counts as often as it is predicted, and is right as often as gold has it.
        [("GPE", "PLACE", "paris", "paris")] * 3,
        # DISCARD tags leave the prediction too; "eu's" and "eu 's" are one phrase.
        [("ORG", "ORG", "the eu 's", "the eu 's"), ("EVENT", "EVENT", "a war", "a war")],
        # TIME is WHEN; "two" with the wrong tag is a miss, in label-F1 too.
        [("TIME", "WHEN", "today", "today"), ("GPE", "PLACE", "two", "two")],
        [("LAW", "LAW", "the treaty", "the treaty")],
        [("PERSON", "PERSON", "o 'brien.", "o 'brien")],
    ]
    ref = tmp_path / "ref.wrd"
    ref.write_text("".join(_line(toolkit, [(r, t) for r, _, _, t in u]) + "\n" for u in gold))
    theirs = _toolkit_ner(
        toolkit, ref, [_line(toolkit, [(r, t) for r, _, _, t in u]) for u in pred], tmp_path
    )
    ours = ner_scores(
        [[(tag, p) for _, tag, p, _ in u] for u in gold],
        [[(tag, p) for _, tag, p, _ in u] for u in pred],
    )
    _assert_same_ner(ours, theirs)
    assert (ours["tp"], ours["n_gold"], ours["n_pred"]) == (5, 6, 8)
    assert ours["f1"] == pytest.approx(100 * 2 * 5 / (6 + 8), abs=TOL)
    assert ours["per_tag"]["LAW"]["f1"] == 0.0  # predicted only: enters the macro average


def test_ner_no_entities_anywhere(toolkit, tmp_path: Path) -> None:
    ref = tmp_path / "ref.wrd"
    ref.write_text("a b\n\n")
    theirs = _toolkit_ner(toolkit, ref, ["c", ""], tmp_path)
    ours = ner_scores([[], []], [[], []])
    assert ours["f1"] == ours["label_f1"] == 100 * theirs["standard"]["overall_micro"]["fscore"]
    assert ours["per_tag"] == {}
    # The toolkit's macro figures are np.mean([]) = nan here; ours are 0.
    assert ours["macro_f1"] == 0.0


def test_ner_rejects_misaligned_input() -> None:
    with pytest.raises(ValueError, match="1 gold but 2 predicted"):
        ner_scores([[]], [[], []])


def test_normalize_phrase_apostrophes_and_punctuation() -> None:
    assert normalize_phrase("the people's party.") == "the people 's party"
    assert normalize_phrase("members'") == "members"
    assert normalize_phrase("it's  o'brien, jr!") == "it 's o 'brien jr"
    assert normalize_phrase("rock'n'roll") == "rock n 'roll"
    assert normalize_phrase("'s") == "'s"
    assert normalize_phrase(" . ; ") == ""
    assert numbered_entities([("GPE", "'"), ("FAC", "x"), ("GPE", "eu"), ("LOC", "eu")]) == [
        ("PLACE", "eu", 1),
        ("PLACE", "eu", 2),
    ]


# --- WER -------------------------------------------------------------------------------------

WER_CASES: list[tuple[list[str], list[str]]] = [
    (["the cat sat on the mat."], ["the cat sat on mat"]),
    (["mr president; i agree!", "what now?"], ["mr  president i agree", "what now now"]),
    (["hello world"], ["Hello world."]),  # case is kept, as the toolkit keeps it
    (["hello world", ""], ["hello world", "um uh"]),  # an empty reference: insertions count
    (["a b c", "d e"], ["", "d x e"]),
    (["...", "a"], ["x y", "a"]),  # a reference that normalises to nothing
    ([""], ["a b"]),  # no reference words at all: the toolkit divides by 1
    ([""], [""]),
    (["it's the e.u.'s view, isn't it"], ["its the eu's view isnt it"]),
]


@pytest.mark.parametrize(("refs", "hyps"), WER_CASES)
def test_wer_equals_toolkit(toolkit, refs: list[str], hyps: list[str]) -> None:
    theirs = 100 * toolkit.eval_utils.get_wer(
        [_toolkit_wrd(r) for r in refs], [_toolkit_wrd(h) for h in hyps]
    )
    assert wer(refs, hyps) == pytest.approx(float(theirs), abs=TOL)


def test_wer_values() -> None:
    assert wer(["the cat sat on the mat."], ["the cat sat on mat"]) == pytest.approx(100 / 6)
    assert wer(["hello world", ""], ["hello world", "um uh"]) == 100.0
    assert wer([""], ["a b"]) == 200.0
    assert wer([""], [""]) == 0.0
    assert normalize_text("  Mr. President;  I agree!\t") == "Mr President I agree"
    with pytest.raises(ValueError, match="1 references but 2 hypotheses"):
        wer(["a"], ["a", "b"])


def test_wer_equals_toolkit_on_dev(dev, toolkit) -> None:
    rng = random.Random(11)
    refs = list(dev.texts)
    hyps = []
    for ref in refs:
        words = []
        for w in ref.split():
            x = rng.random()
            if x < 0.05:
                continue
            if x < 0.10:
                w = "zz"
            elif x < 0.13:
                words.append("um")
            elif x < 0.16:
                w += rng.choice([".", "?", ";", "!", ","])
            words.append(w)
        hyps.append(rng.choice(["  ", " "]).join(words) if rng.random() > 0.02 else "")
    refs += ["", "?"]
    hyps += ["extra words", ""]
    theirs = 100 * toolkit.eval_utils.get_wer(
        [_toolkit_wrd(r) for r in refs], [_toolkit_wrd(h) for h in hyps]
    )
    ours = wer(refs, hyps)
    assert ours == pytest.approx(float(theirs), abs=TOL)
    assert 5 < ours < 30


# --- sentiment and the SLUE score ------------------------------------------------------------

SENTIMENT_CASES: list[tuple[list[str], list[str]]] = [
    (
        ["Positive", "Negative", "Neutral", "Positive"],
        ["Positive", "Negative", "Neutral", "Positive"],
    ),
    (
        ["Positive", "Negative", "Neutral", "Positive"],
        ["Positive", "Negative", "Mixed", "Positive"],
    ),
    (
        ["Neutral", "Neutral", "Positive", "Negative"],
        ["Neutral", "Positive", "Positive", "Neutral"],
    ),
    (["Neutral", "Neutral", "Neutral"], ["Neutral", "Negative", "positive"]),
]


@pytest.mark.parametrize(("gold", "pred"), SENTIMENT_CASES)
def test_sentiment_equals_toolkit(gold: list[str], pred: list[str]) -> None:
    assert sentiment_macro_f1(gold, pred) == pytest.approx(
        _toolkit_sentiment_f1(gold, pred), abs=TOL
    )


def test_sentiment_out_of_class_label_adds_a_zero_class() -> None:
    gold = ["Positive", "Negative", "Neutral", "Positive"]
    # Positive and Negative F1 1, Neutral 0, and the predicted-only class "Mixed" 0: 2 / 4.
    assert sentiment_macro_f1(gold, ["Positive", "Negative", "Mixed", "Positive"]) == 50.0
    # An unparsed answer (None) is such a class too.
    assert sentiment_macro_f1(gold, ["Positive", "Negative", None, "Positive"]) == 50.0
    assert sentiment_macro_f1(gold, gold) == 100.0


def test_slue_score() -> None:
    assert slue_score(20.0, 70.0, 60.0) == pytest.approx((80.0 + 60.0 + 70.0) / 3)
