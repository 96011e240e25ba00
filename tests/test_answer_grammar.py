"""Answers that copy the reading (`model/answer_grammar.py`): the grammar of each task's answer,
and decoding under it gives answers whose transcript is the reading, whatever the LLM."""

from __future__ import annotations

import pytest

from speechllm.model.answer_grammar import ReadingGrammar
from speechllm.model.answers import parse_answers

READING = "the european commission met in brussels."


@pytest.mark.parametrize(
    ("text", "accepted", "complete"),
    [
        ("", True, False),
        ("Neu", True, False),
        ("Neutral |", True, False),
        ("Neutral | the [OR", True, False),  # a tag being written
        ("Neutral | the [ORG europe", True, False),  # a word being written
        ("Neutral | the [ORG european commission] met in [PLACE brussels].", True, True),
        ("Neutral | the european commission met in brussels.", True, True),
        ("Neutral | the european commission met in brussels", True, False),  # "." missing
        ("Neutral | the commission", False, False),  # a word dropped
        ("Neutral | the european commission met in brussels. and", False, False),  # added
        ("Neutral | the [ORG ]", False, False),  # an empty entity
        ("Neutral | the [ORG europe]", False, False),  # closed inside a word
        ("Neutral | the[ORG european]", False, False),  # opened inside a word
        ("Neutral | the [XX european]", False, False),  # not a SLUE tag
        ("Neutral | the [ORG [ORG european]]", False, False),  # nested
        ("Neutral | the [ORG european commission met in brussels.", True, False),  # still open
        ("Hopeful | the", False, False),  # not a sentiment
    ],
)
def test_all_answers(text: str, accepted: bool, complete: bool) -> None:
    grammar = ReadingGrammar("all", READING)
    assert grammar.accepts(text) is accepted
    assert grammar.complete(text) is complete


def test_other_tasks_and_what_comes_next() -> None:
    sa, asr, ner = (ReadingGrammar(t, READING) for t in ("sa", "asr", "ner"))
    assert sa.accepts("Pos") and sa.complete(" Positive") and not sa.accepts("Positive |")
    assert asr.complete(READING) and not asr.accepts("the [ORG european")
    assert ner.complete("the [ORG european commission] met in brussels.")
    # What the fallback writes when none of the LLM's best tokens fits.
    assert ner.next_text("the [ORG europe") == "an commission met in brussels."
    assert ner.next_text("the [OR") == "G "
    assert ner.next_text("the [ORG european commission met in brussels.") == "]"
    assert ReadingGrammar("all", READING).next_text("Neutral") == " |"
    assert ReadingGrammar("all", "").complete("Negative |")  # nothing was said


def test_decoded_answers_copy_the_reading(model, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The tiny random LLM writes noise when free; under the grammar every answer parses and its
    # transcript is the reading, for every task, with and without drafts.
    monkeypatch.setattr(model.config, "repetition_guard", 0)
    readings = ["the commission met in brussels", "a short one", "and a third transcript here", ""]
    tasks = ["all", "ner", "asr", "all"]
    speech, lengths = model.text_speech(readings)
    monkeypatch.setattr(model.config, "copy_reading", False)
    free = model.generate_from(speech, lengths, tasks, 64, readings)
    assert any(
        parse_answers({t: a}).transcript != r for t, a, r in zip(tasks, free, readings, strict=True)
    )
    monkeypatch.setattr(model.config, "copy_reading", True)
    for drafts in (True, False):
        answers = model.generate_from(speech, lengths, tasks, 64, readings, drafts)
        for task, text, reading in zip(tasks, answers, readings, strict=True):
            parsed = parse_answers({task: text})
            assert parsed.transcript == reading and not parsed.parse_failures, (task, text)
            if task == "all":
                assert parsed.sentiment is not None
