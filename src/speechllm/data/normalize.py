"""Text normalisation to SLUE-VoxPopuli's `normalized_text` style.

Whisper writes "In 2014, 20% of..."; SLUE's references write "in two thousand and fourteen twenty
per cent of". Every transcript that is scored against SLUE, or read by an LLM trained on SLUE's
text, goes through `normalize_transcript` first (the cascade, the Whisper reader).
`speakable_transcript` goes the other way for text to be spoken by TTS (VADER snippets, WordNet
examples): it keeps only text whose spoken form is predictable, in the same style.
"""

from __future__ import annotations

import re

from num2words import num2words

_BILLION = 10**9
_TRILLION = 10**12


def _spell(n: int, to: str) -> str:
    """num2words' British English (`lang="en"`: "one hundred and twenty", "two thousand and
    fourteen") in SLUE's form: no commas ("two thousand, one hundred"), no hyphens
    ("twenty-one"). num2words goes on to "trillion"; SLUE-VoxPopuli's text has no such word, so
    from 10**12 on the count stays in billions ("one thousand billion"), with the "and" that
    num2words puts before a last part under a hundred."""
    if n < 0:
        raise ValueError(f"expected a non-negative integer, got {n}")
    if n >= _TRILLION:
        high, rest = divmod(n, _BILLION)
        if rest == 0:
            return number_words(high) + (" billion" if to == "cardinal" else " billionth")
        return number_words(high) + " billion" + (" and " if rest < 100 else " ") + _spell(rest, to)
    return num2words(n, lang="en", to=to).replace(",", "").replace("-", " ")


def number_words(n: int) -> str:
    """A non-negative integer in words as SLUE-VoxPopuli writes it (British "and"):
    2014 -> "two thousand and fourteen", 250 -> "two hundred and fifty"."""
    return _spell(n, "cardinal")


def ordinal_words(n: int) -> str:
    """21 -> "twenty first", 12 -> "twelfth", 100 -> "one hundredth"."""
    return _spell(n, "ordinal")


_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_INTEGER = re.compile(r"\d+")
_THOUSANDS = re.compile(r"\b(\d{1,3})((?:,\d{3})+)\b")
_NOT_KEPT = re.compile(r"[^a-z' .?;!]")
_SPACES = re.compile(r"\s+")


def normalize_transcript(text: str) -> str:
    """Whisper's text -> SLUE-VoxPopuli's `normalized_text` style.

    Lower case; `%` -> "per cent"; `1,000` -> 1000; ordinals ("13th"), decimals ("2.5" -> "two
    point five") and integers spelt out; hyphens and other punctuation become spaces except
    `' . ? ; !` (SLUE keeps those; its WER removes `. ? ; !`); whitespace collapsed.
    """
    t = text.lower().replace("%", " per cent ").replace("€", " euro ")
    t = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), t)
    t = _ORDINAL.sub(lambda m: ordinal_words(int(m.group(1))), t)
    t = _DECIMAL.sub(
        lambda m: (
            number_words(int(m.group(1)))
            + " point "
            + " ".join(number_words(int(d)) for d in m.group(2))
        ),
        t,
    )
    t = _INTEGER.sub(lambda m: " " + number_words(int(m.group(0))) + " ", t)
    t = _NOT_KEPT.sub(" ", t)
    # A full stop left alone between spaces (e.g. from "...") is no word.
    words = [w for w in _SPACES.sub(" ", t).strip().split(" ") if w.strip(".?;!'")]
    return " ".join(words)


# Characters a text may hold to be spoken as written. Digits, symbols (&, /, @, #, $), brackets
# and emoticons are said in ways a transcript cannot predict.
_SPEAKABLE = re.compile(r"[A-Za-z'’‘\"“” ,.!?;:-]+")
_SHOUTED = re.compile(r"[A-Z]{2,}")  # "USA", "LOVE": piper may spell them out letter by letter
WORD_PATTERN = re.compile(r"[a-z]+(?:'[a-z]+)*")
"""A word of a speakable transcript: letters with inner apostrophes ("don't")."""


def speakable_transcript(text: str, min_words: int = 1, max_words: int | None = None) -> str | None:
    """The transcript of `text` as a speaker says it, or None if its spoken form is unpredictable.

    Kept: only letters, apostrophes, quotes, spaces and `,.!?;:-`, no run of two capitals,
    `min_words`..`max_words` words. The transcript is in SLUE's normalized style without its
    punctuation: lower case, words of letters with inner apostrophes, single spaces; quotes and
    trailing apostrophes are dropped, hyphens split words.
    """
    if not _SPEAKABLE.fullmatch(text) or _SHOUTED.search(text):
        return None
    words = WORD_PATTERN.findall(text.replace("’", "'").replace("‘", "'").lower())
    if len(words) < min_words or (max_words is not None and len(words) > max_words):
        return None
    return " ".join(words)
