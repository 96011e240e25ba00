"""Property-based tests (hypothesis): manifests, answer parsers and SLUE scorers on arbitrary input.

Each property runs a modest number of examples so the file stays a few seconds long; hypothesis
shrinks any failure to a minimal example.
"""

from __future__ import annotations

import json
import math
import random
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from speechllm.data.manifest import REQUIRED_KEYS, Utterance, read_manifest, write_manifest
from speechllm.errors import ManifestError
from speechllm.evaluation.metrics import compute_metrics
from speechllm.evaluation.slue import (
    ner_scores,
    normalize_text,
    sentiment_macro_f1,
    slue_score,
    wer,
    word_errors,
)
from speechllm.labels import ONTONOTES_TO_SLUE, SENTIMENTS, SLUE_TAGS
from speechllm.model.answers import Prediction
from speechllm.model.prompts import format_ner, parse_asr, parse_ner, parse_sentiment

# deadline=None: a training run shares this machine's CPUs, so per-example times vary widely.
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies

json_scalars = (
    st.none()
    | st.booleans()
    # Beyond float range too: json.loads turns a 400-digit integer into an int that
    # math.isfinite cannot take.
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
words = st.sampled_from(["the", "eu", "paris", "monday", "vote", "a", "of", "x"]) | st.text(
    "abcdefghijklmnopqrstuvwxyz'", min_size=1, max_size=6
)
# Values close to valid ones, so that many generated lines are valid and the others fail in
# one field at a time.
near_valid: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(["u1", "u2", "u3"]) | st.text(max_size=3) | json_values,
    "audio": st.none() | st.sampled_from(["a.wav", "wav/b.flac", " "]) | json_values,
    "duration": st.none()
    | st.floats(min_value=0, max_value=1e4)
    | st.sampled_from([-1, math.inf, math.nan, 10**400, True])
    | json_values,
    "text": st.text(max_size=12) | json_values,
    "entities": st.none()
    | st.lists(
        st.tuples(st.sampled_from([*SLUE_TAGS, "GPE", "tag"]), st.text(max_size=6)).map(list),
        max_size=3,
    )
    | json_values,
    "sentiment": st.sampled_from([*SENTIMENTS, None, "happy", "positive"]) | json_values,
    "split": st.sampled_from(["train", "dev", ""]) | json_values,
    "sentimnet": json_values,  # a misspelt key
}
manifest_objects = st.fixed_dictionaries(
    {k: near_valid[k] for k in REQUIRED_KEYS},
    optional={k: v for k, v in near_valid.items() if k not in REQUIRED_KEYS},
) | st.fixed_dictionaries({}, optional=near_valid)
# Text lines hold anything but "\n" (the line end): U+2028, U+0085, "\r", a BOM, ...
raw_lines = st.text(max_size=30).map(lambda s: s.replace("\n", " ")) | st.sampled_from(
    [
        "",
        "   ",
        "{",
        "NaN",
        "1" * 5000,  # over Python's 4300-digit int limit: ValueError, not JSONDecodeError
        "[" * 50_000,  # deeper than the recursion limit: RecursionError
        '{"id": "u1", "audio": null, "duration": 1e400, "text": "x"}',
    ]
)
manifest_lines = manifest_objects.map(json.dumps) | json_values.map(json.dumps) | raw_lines


def parse_line(line: str) -> Any:
    """json.loads, or a marker for a line that is not JSON (whatever json raises)."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return ...


# ------------------------------------------------------------------ manifests


def lines_mentioned(err: ManifestError, path: Path) -> set[int]:
    """The line numbers a ManifestError names; every problem must name one."""
    problems = getattr(err, "problems", None)
    assert problems, f"a line's problem reported without its line: {err}"
    found = set()
    for problem in problems:
        m = re.match(re.escape(str(path)) + r":(\d+): \S", problem)
        assert m, problem
        found.add(int(m.group(1)))
    return found


@FEW
@given(st.lists(manifest_lines, max_size=6))
# Each of these once escaped read_manifest as OverflowError, ValueError or RecursionError.
@example(['{"id": "u1", "audio": null, "duration": 1' + "0" * 400 + ', "text": "x"}'])
@example(["1" * 5000, "[" * 50_000])
def test_manifest_lines_are_read_or_reported_by_line(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            utts = read_manifest(path)  # anything but ManifestError fails the test
        except ManifestError as exc:
            err: ManifestError | None = exc
        else:
            err = None

        nonblank = [i for i, line in enumerate(lines, start=1) if line.strip()]
        if not nonblank:
            assert err is not None and "holds no utterances" in str(err)
            return

        # Oracle: which lines fail on their own (at the same line number, so a byte-order mark
        # is only stripped where it is stripped in the whole file) ...
        def fails_alone(i: int) -> bool:
            alone = Path(tmp) / f"alone{i}.jsonl"
            alone.write_text("\n" * (i - 1) + lines[i - 1] + "\n", encoding="utf-8")
            try:
                read_manifest(alone)
            except ManifestError:
                return True
            return False

        bad_alone = {i for i in nonblank if fails_alone(i)}
        # ... and which repeat the id of an earlier line.
        seen: set[str] = set()
        duplicates = set()
        for i in nonblank:
            obj = parse_line(lines[i - 1].lstrip("\ufeff") if i == 1 else lines[i - 1])
            uid = obj.get("id") if isinstance(obj, dict) else None
            if isinstance(uid, str):
                if uid in seen:
                    duplicates.add(i)
                seen.add(uid)

        if err is None:
            assert not bad_alone and not duplicates
            assert len(utts) == len(nonblank)
            assert all(isinstance(u, Utterance) for u in utts)
        else:
            mentioned = lines_mentioned(err, path)
            assert bad_alone <= mentioned
            assert mentioned <= bad_alone | duplicates
            assert mentioned, str(err)


@FEW
@given(st.binary(max_size=200))
def test_manifest_of_arbitrary_bytes_is_read_or_a_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.jsonl"
        path.write_bytes(data)
        try:
            read_manifest(path)
        except ManifestError as exc:
            assert str(exc).startswith(f"{path}:"), str(exc)  # names the file (and line)


safe_name = st.text("abcdefghij0123456789_-. ", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)
nonblank_text = st.text(min_size=1, max_size=10).filter(str.strip)


@st.composite
def utterances(draw: st.DrawFn, root: str) -> list[Utterance]:
    ids = draw(st.lists(nonblank_text, min_size=1, max_size=5, unique=True))
    out = []
    for uid in ids:
        where = draw(st.sampled_from(["none", "inside", "outside"]))
        audio = {
            "none": None,
            "inside": f"{root}/wav/{draw(safe_name)}",
            "outside": f"/elsewhere/{draw(safe_name)}",
        }[where]
        out.append(
            Utterance(
                id=uid,
                audio=audio,
                duration=draw(
                    st.none()
                    | st.floats(min_value=0, allow_nan=False, allow_infinity=False)
                    | st.integers(min_value=0, max_value=10**6)
                ),
                text=draw(st.text(max_size=20)),  # U+2028, U+0085, quotes, backslashes, ...
                entities=draw(
                    st.none()
                    | st.lists(st.tuples(st.sampled_from(SLUE_TAGS), nonblank_text), max_size=3)
                ),
                sentiment=draw(st.sampled_from([None, *SENTIMENTS])),
                split=draw(nonblank_text),
            )
        )
    return out


@FEW
@given(st.data())
def test_valid_rows_round_trip(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        utts = data.draw(utterances(tmp))
        path = Path(tmp) / "m.jsonl"
        write_manifest(path, utts)
        assert read_manifest(path) == utts
        # And again, through a second write of what was read.
        write_manifest(path, read_manifest(path))
        assert read_manifest(path) == utts


def test_line_separators_inside_strings_round_trip(tmp_path: Path) -> None:
    # write_manifest leaves U+2028, U+2029 and U+0085 unescaped (ensure_ascii=False); reading
    # once split lines at them as str.splitlines() does, and refused its own file.
    utts = [Utterance("a\u2029", None, 1.0, "x\u2028y\x85z", [("PLACE", "y\u2028")], None)]
    write_manifest(tmp_path / "m.jsonl", utts)
    assert read_manifest(tmp_path / "m.jsonl") == utts


# ------------------------------------------------------------------ answer parsers

TOKENS = ["[", "]", " ", "  ", "\t", *SLUE_TAGS, "GPE", "place", "a", "b c", "Positive", "\u2028"]
answers = st.text(max_size=60) | st.lists(st.sampled_from(TOKENS), max_size=20).map("".join)


@SOME
@given(answers)
@example("[PLACE  ]")  # once parsed as the entity ("PLACE", "")
@example("[PLACE [ORG a] b]] [")
def test_parsers_never_raise_and_return_clean_parts(answer: str) -> None:
    parsed = parse_ner(answer)
    assert "[" not in parsed.text and "]" not in parsed.text
    assert parsed.text == " ".join(parsed.text.split())  # whitespace normalised
    assert parse_asr(answer) == parsed.text
    for tag, phrase in parsed.entities:
        assert tag in SLUE_TAGS
        assert phrase and phrase == " ".join(phrase.split()), (tag, phrase)
        assert "[" not in phrase and "]" not in phrase
        if parsed.ok:
            assert phrase in parsed.text
    if "[" not in answer and "]" not in answer:
        assert parsed.ok and not parsed.entities
    assert parse_sentiment(answer) in (None, *SENTIMENTS)


@SOME
@given(
    st.sampled_from(SENTIMENTS),
    st.sampled_from([str.lower, str.upper, str.title, str]),
    st.sampled_from(["", " ", "answer: ", "\n"]),
    st.sampled_from(["", ".", "!", " \n"]),
)
def test_a_sentiment_answer_is_read_whatever_its_case(
    s: str, case: Any, pre: str, post: str
) -> None:
    assert parse_sentiment(pre + case(s) + post) == s


@st.composite
def marked_transcripts(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    """(transcript, entities in left-to-right order): entities are non-overlapping word spans
    of the transcript, so repeats of a phrase elsewhere in it are common (few distinct words)."""
    vocab = draw(st.lists(words, min_size=1, max_size=4, unique=True))
    tokens = draw(st.lists(st.sampled_from(vocab), min_size=1, max_size=12))
    entities = []
    i = 0
    while i < len(tokens):
        if draw(st.booleans()):
            n = draw(st.integers(1, min(3, len(tokens) - i)))
            entities.append((draw(st.sampled_from(SLUE_TAGS)), " ".join(tokens[i : i + n])))
            i += n
        else:
            i += 1
    return " ".join(tokens), entities


@SOME
@given(marked_transcripts(), st.randoms(use_true_random=False))
# finditer skipped overlapping occurrences: "the the" was appended at the end instead of
# taking words 2-3.
@example(("the the the", [("PLACE", "the"), ("PLACE", "the the")]), random.Random(0))
def test_format_then_parse_round_trips_the_entities(
    case: tuple[str, list[tuple[str, str]]], rnd: random.Random
) -> None:
    text, entities = case
    parsed = parse_ner(format_ner(text, entities))
    assert parsed.ok
    # In reading order every entity finds its own place: the transcript comes back exactly.
    assert parsed.text == text
    assert Counter(parsed.entities) == Counter(entities)
    # In any order (SLUE lists them right to left) no entity is lost, though one may land on
    # another occurrence of its phrase, or at the end if its place was taken.
    shuffled = entities[:]
    rnd.shuffle(shuffled)
    again = parse_ner(format_ner(text, shuffled))
    assert again.ok
    assert Counter(again.entities) == Counter(entities)


# ------------------------------------------------------------------ scorers


def levenshtein(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


sentences = st.lists(words | st.sampled_from(["eu.", "vote?", "!", ";", "A"]), max_size=8).map(
    " ".join
) | st.text(max_size=20)


@SOME
@given(st.lists(st.tuples(sentences, sentences), max_size=5))
def test_wer_counts_word_edits(pairs: list[tuple[str, str]]) -> None:
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    edits, n_ref = word_errors(refs, hyps)
    ref_words = [normalize_text(r).split() for r in refs]
    hyp_words = [normalize_text(h).split() for h in hyps]
    assert n_ref == sum(map(len, ref_words))
    assert edits == sum(levenshtein(r, h) for r, h in zip(ref_words, hyp_words, strict=True))
    value = wer(refs, hyps)
    assert value >= 0 and math.isfinite(value)
    assert wer(refs, refs) == 0


tags = st.sampled_from([*SLUE_TAGS, *ONTONOTES_TO_SLUE])  # DISCARD tags (FAC, ...) included
phrases = st.lists(words | st.sampled_from(["eu.", "parliament's", "!"]), min_size=1, max_size=3)
utterance_entities = st.lists(st.tuples(tags, phrases.map(" ".join)), max_size=4)


def shuffled_within(utts: list[list[tuple[str, str]]], rnd: random.Random) -> list[list[Any]]:
    out = []
    for ents in utts:
        copy = ents[:]
        rnd.shuffle(copy)
        out.append(copy)
    return out


@SOME
@given(
    st.lists(st.tuples(utterance_entities, utterance_entities), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_ner_scores_are_bounded_and_order_free(
    pairs: list[tuple[list[Any], list[Any]]], rnd: random.Random
) -> None:
    gold, pred = [g for g, _ in pairs], [p for _, p in pairs]
    s = ner_scores(gold, pred)
    for key in ("f1", "precision", "recall", "macro_f1", "label_f1", "label_macro_f1"):
        assert 0 <= s[key] <= 100, (key, s[key])
    assert 0 <= s["tp"] <= min(s["n_gold"], s["n_pred"])
    assert ner_scores(shuffled_within(gold, rnd), shuffled_within(pred, rnd)) == s
    # Perfect predictions score 100 wherever gold holds a scored entity (not a discarded tag).
    perfect = ner_scores(gold, gold)
    if perfect["n_gold"]:
        assert perfect["f1"] == perfect["label_f1"] == perfect["macro_f1"] == 100
    else:
        assert perfect["f1"] == 0  # nothing to find: the toolkit's safe_divide gives 0


@SOME
@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from(SLUE_TAGS), st.text("abcxyz", min_size=1)), min_size=1),
        min_size=1,
        max_size=4,
    )
)
def test_gold_equal_to_pred_is_100(gold: list[list[tuple[str, str]]]) -> None:
    assert ner_scores(gold, gold)["f1"] == 100


@FEW  # scikit-learn's f1_score takes milliseconds per call
@given(
    st.lists(st.sampled_from(SENTIMENTS), min_size=1, max_size=12),
    st.lists(st.sampled_from([*SENTIMENTS, None, "Mixed"]), min_size=12, max_size=12),
)
def test_sentiment_macro_f1(gold: list[str], noise: list[str | None]) -> None:
    assert sentiment_macro_f1(gold, gold) == 100
    value = sentiment_macro_f1(gold, noise[: len(gold)])
    assert 0 <= value <= 100


scores = st.floats(min_value=0, max_value=100)


@SOME
@given(st.floats(min_value=0, max_value=500), scores, scores)
def test_slue_score_formula(w: float, ner: float, sa: float) -> None:
    assert slue_score(w, ner, sa) == pytest.approx(((100 - w) + sa + ner) / 3)
    assert slue_score(0, 100, 100) == 100


@FEW
@given(
    st.lists(
        st.tuples(
            sentences,
            sentences,
            utterance_entities,
            utterance_entities,
            st.sampled_from(SENTIMENTS),
            st.sampled_from([*SENTIMENTS, None]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_report_slue_score_is_the_formula_over_its_own_figures(rows: list[Any]) -> None:
    refs, preds = [], []
    for i, (ref_text, hyp_text, gold, pred, gold_sa, pred_sa) in enumerate(rows):
        refs.append(Utterance(f"u{i}", None, None, ref_text, gold, gold_sa))
        preds.append(Prediction(hyp_text, pred, pred_sa, id=f"u{i}"))
    assume(any(r.text.strip() for r in refs))  # WER needs some reference text
    m = compute_metrics(refs, preds)
    assert m["wer"] == wer([r.text for r in refs], [p.transcript for p in preds])
    assert m["ner_f1"] == ner_scores([r.entities for r in refs], [p.entities for p in preds])["f1"]
    assert m["slue_score"] == pytest.approx(((100 - m["wer"]) + m["sa_macro_f1"] + m["ner_f1"]) / 3)
