from pathlib import Path

import pytest

from speechllm.data.importers.slue import import_slue_voxpopuli
from speechllm.model.prompts import format_ner, parse_ner, parse_sentiment, target_text


def test_format_then_parse_round_trip():
    text = "the european commission met in brussels on monday"
    ents = [("ORG", "european commission"), ("PLACE", "brussels"), ("WHEN", "monday")]
    answer = format_ner(text, ents)
    assert answer == "the [ORG european commission] met in [PLACE brussels] on [WHEN monday]"
    parsed = parse_ner(answer)
    assert parsed.ok and parsed.text == text and parsed.entities == ents


def test_repeated_entity_is_marked_each_time_in_order():
    answer = format_ner("france and france", [("PLACE", "france"), ("PLACE", "france")])
    assert answer == "[PLACE france] and [PLACE france]"


def test_entities_listed_right_to_left_are_placed_inline():
    # SLUE's tsv lists entities right to left; every one must land at its place, none appended.
    text = "as for energy the eu heads decided on two thousand and fourteen as the deadline."
    ents = [("WHEN", "two thousand and fourteen"), ("PLACE", "eu")]
    answer = format_ner(text, ents)
    assert answer == (
        "as for energy the [PLACE eu] heads decided on [WHEN two thousand and fourteen] "
        "as the deadline."
    )
    assert sorted(parse_ner(answer).entities) == sorted(ents)


def test_phrase_before_punctuation_is_placed_inline():
    assert format_ner("framework dictated by the eu.", [("PLACE", "eu")]) == (
        "framework dictated by the [PLACE eu]."
    )


def test_phrase_inside_a_longer_word_is_not_matched():
    answer = format_ner("europeans and europe", [("PLACE", "europe")])
    assert answer == "europeans and [PLACE europe]"


def test_slue_dev_targets_keep_the_transcript_and_every_entity(shared: Path) -> None:
    """On all of SLUE-VoxPopuli dev, markup only wraps words: stripping it gives the transcript back
    (nothing appended), and every gold entity is recovered."""
    utts = import_slue_voxpopuli(shared / "data/slue-voxpopuli/slue-voxpopuli_dev.tsv")
    displaced = 0
    for utt in utts:
        parsed = parse_ner(format_ner(utt.text, utt.entities or []))
        assert sorted(parsed.entities) == sorted(utt.entities or [])
        displaced += parsed.text != utt.text
    assert displaced <= len(utts) // 100, (
        f"{displaced} of {len(utts)} targets had entities appended"
    )


def test_phrase_not_in_text_is_kept_not_lost():
    answer = format_ner("hello world", [("PERSON", "bob")])
    assert parse_ner(answer).entities == [("PERSON", "bob")]


@pytest.mark.parametrize(
    "answer",
    ["[ORG unclosed", "stray ] bracket", "[FOO bar] baz", "[]", "[[ORG x]]", "", "[ORG ]"],
)
def test_malformed_ner_never_raises_and_is_flagged(answer):
    parsed = parse_ner(answer)
    assert isinstance(parsed.text, str)
    assert "[" not in parsed.text and "]" not in parsed.text
    if answer:
        assert not parsed.ok or parsed.entities


def test_malformed_keeps_words():
    assert parse_ner("[FOO bar] baz").text == "bar baz"


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Positive", "Positive"),
        ("negative.", "Negative"),
        (" Neutral\n", "Neutral"),
        ("Positive or Negative", None),
        ("great", None),
    ],
)
def test_parse_sentiment(answer, label):
    assert parse_sentiment(answer) == label


def test_target_text_requires_labels():
    with pytest.raises(ValueError):
        target_text("ner", "x", None, None)
    with pytest.raises(ValueError):
        target_text("sa", "x", None, "happy")
    assert target_text("sa", "x", None, "Neutral") == "Neutral"
