"""Answers that copy the reading: the grammar of each task's answer on the `whisper` route, and
greedy choice under it.

Why: on the `whisper` route the LLM reads Whisper's transcript and its answer rewrites it with
entity markup. Left free, the 135M LLM's rewrite lost words: on the benchmark's 164 clips the
answers' transcripts scored 8.87% WER where Whisper's readings scored 5.96%; of the 39 clips whose
words it changed, 34 got worse (a clause dropped, "ireland" written "iraq", a long sentence
looping) and 5 better. Decoding under this grammar leaves the LLM every choice the tasks need
(the sentiment word, where each entity opens and closes, its tag) and makes the transcript
Whisper's reading word for word, so every answer also parses.

The grammar per task (the formats of `prompts.py`):
- `sa`: one of SENTIMENTS;
- `asr`: the reading;
- `ner`: the reading with `[TAG ` ... `]` around non-empty, non-nested runs of whole words;
- `all`: a sentiment word, `|`, then the `ner` answer.

Blanks are single spaces, as trained (no run of blanks to the length limit); around markup
they may be there or not, the parsers normalise them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from speechllm.labels import SENTIMENTS, SLUE_TAGS
from speechllm.model.prompts import ALL_SEPARATOR

CANDIDATES = 8
"""Highest-scoring tokens checked against the grammar before forcing the reading's next piece."""

_SEPARATOR = ALL_SEPARATOR.strip()
_UPPER = re.compile(r"[A-Z]*")
_WORD_CHAR = re.compile(r"\w")


class ReadingGrammar:
    """Which partial answers of one (task, reading) row are well formed."""

    def __init__(self, task: str, reading: str) -> None:
        self.task = task
        self.reading = " ".join(reading.split())

    def accepts(self, text: str) -> bool:
        """Whether `text` (an answer so far) can still become a well-formed answer."""
        return self._state(text) is not None

    def complete(self, text: str) -> bool:
        """Whether `text` is a whole well-formed answer (the answer may stop here)."""
        return self._state(text) == ""

    def next_text(self, text: str) -> str:
        """What a well-formed answer writes next after `text` (accepted): the rest of the reading,
        a markup close, the rest of a sentiment word and the separator; "" when complete."""
        return self._state(text) or ""

    def _state(self, text: str) -> str | None:
        """None when `text` breaks the grammar, else what is still to write ("": complete)."""
        cut = text.rstrip("\ufffd")
        if cut != text:
            # A character split between byte tokens decodes as U+FFFD until its last byte: allowed
            # where the reading goes on with a non-ASCII character (a wrong byte is caught when
            # the character is whole).
            rest = self._state(cut)
            return rest if rest.strip() and ord(rest.lstrip()[0]) > 127 else None
        if "  " in text or any(c.isspace() and c != " " for c in text):
            return None  # one space between words, as trained: no run of blanks to the limit
        if self.task == "sa":
            return _sentiment(text, "")
        if self.task == "all":
            head, sep, tail = text.partition(_SEPARATOR)
            if not sep:
                return _sentiment(head, " " + _SEPARATOR)
            if head.strip() not in SENTIMENTS:
                return None
            return self._tagged(tail, markup=True)
        return self._tagged(text, markup=self.task == "ner")

    def _tagged(self, text: str, markup: bool) -> str | None:
        """The transcript part: with its markup removed it must begin the reading."""
        plain: list[str] = []
        inside = content = False
        tag_rest = None  # a tag name still being written after "["
        i = 0
        while i < len(text):
            c = text[i]
            if i > 0 and text[i - 1] == "]" and _WORD_CHAR.match(c):
                return None  # "]" inside a word
            if c == "[":
                if not markup or inside or (i > 0 and _WORD_CHAR.match(text[i - 1])):
                    return None
                tag = _UPPER.match(text, i + 1)
                assert tag is not None  # [A-Z]* always matches
                if tag.end() == len(text):
                    tag_rest = _rest_of_tag(tag.group(0))
                    if tag_rest is None:
                        return None
                    break
                if tag.group(0) not in SLUE_TAGS or text[tag.end()] != " ":
                    return None
                inside, content = True, False
                i = tag.end() + 1
                continue
            if c == "]":
                if not inside or not content or self._mid_word("".join(plain)):
                    return None
                inside = False
            else:
                content = content or (inside and not c.isspace())
                plain.append(c)
            i += 1
        joined = "".join(plain)
        said = " ".join(joined.split())
        if said and joined[-1].isspace():
            said += " "
        if not (self.reading.startswith(said) or said.rstrip() == self.reading):
            return None
        rest = self.reading[len(said.rstrip()) :] if said else " " + self.reading
        if tag_rest is not None:
            return tag_rest
        if inside and not rest.strip():
            return "]"
        if text.endswith(" "):
            rest = rest.lstrip(" ")  # the blank before the next word is written
        return rest if rest.strip() else ""

    def _mid_word(self, plain: str) -> bool:
        """Whether `plain` ends inside a word of the reading (an entity cannot close there)."""
        said = " ".join(plain.split())
        return len(said) < len(self.reading) and bool(_WORD_CHAR.match(self.reading[len(said)]))


def _sentiment(text: str, after: str) -> str | None:
    """A sentiment word (then `after`) being written: what is left of it, or None."""
    word = text.strip()
    for name in SENTIMENTS:
        whole = name + after
        if word == name and text.rstrip() != text and after:
            return after.strip()  # "Neutral " then the separator
        if whole.startswith(word) and (text.rstrip() == text or not word):
            return whole[len(word) :]
    return None


def _rest_of_tag(prefix: str) -> str | None:
    """A tag name being written after `[`: the rest of the first tag it begins, or None."""
    for tag in SLUE_TAGS:
        if tag.startswith(prefix):
            return tag[len(prefix) :] + " "
    return None


class GrammarChooser:
    """Greedy choice under a row's grammar: the highest-scoring token that keeps the answer well
    formed (a stop token only where it is complete)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_ids: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = set(int(s) for s in stop_ids)
        self.stop = min(self.stop_ids)

    def text(self, ids: Sequence[int]) -> str:
        """The answer text of generated ids (as `PromptLayout.answers` decodes it)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def pick(self, grammar: ReadingGrammar, ids: list[int], top: Sequence[int]) -> int:
        """The token after `ids` (an accepted answer so far): the first of `top` (token ids,
        best score first) the grammar allows, else the first piece of what it requires next."""
        text = self.text(ids)
        for t in top:
            if t in self.stop_ids:
                if grammar.complete(text):
                    return t
            elif grammar.accepts(self.text([*ids, t])):
                return t
        need = grammar.next_text(text)
        if not need:
            return self.stop
        # The piece the tokenizer starts the required text with; among tokens of equal fit the
        # LLM's own score decides (" european" vs " europe" + "an" are both right).
        forced = self.tokenizer(need, add_special_tokens=False).input_ids[:1]
        return forced[0] if forced else self.stop
