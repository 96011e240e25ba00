"""Constrained decoding: the grammars of valid answers and the logits processor that keeps a
greedy answer inside them.

At each step the model's best-scoring token among those that keep the answer valid is taken, so a
NER answer is always the transcript, word for word, with `[TAG ...]` groups (one of the 7 tags, at
most `NER_MAX_WORDS` words, not starting or ending with a function word: SLUE's convention), and
a sentiment answer one of the three classes. Where a label starts the candidates are compared as
wholes, by their summed token log-probabilities: the three classes (`Neutral` = `Ne` + `utral`
for SmolLM2 must not be judged by `Ne` alone), and after `[` every (tag, length) of the entity
(`PLACE brussels]`, `ORG european commission]`, ...), each scored over the same words, so that
the tag is chosen with its words in view. Small models (135M, 270M) rarely copy a sentence
faithfully on their own; the grammar leaves them only the choices that matter (where an entity
starts and ends, which tag).

The processor uses only the annotator's public interface: its tokenizer, `stop_ids`,
`newline_ids`, `answer_lead` and `score_labels`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from speechllm.annotate.validation import EDGE_PUNCT
from speechllm.labels import SENTIMENTS, SLUE_TAGS
from speechllm.model.prompts import parse_ner

if TYPE_CHECKING:
    from speechllm.annotate.annotator import Annotator

GRAMMAR_VERSION = 3
"""Version of the constrained decoding (part of the cache key of constrained answers). 3: the
sentiment class, and an entity's tag and length, are chosen as wholes by log-probability."""


class Alternative(NamedTuple):
    """One candidate where a grammar offers whole labels (`Grammar.alternatives`)."""

    scored: str
    """The text whose log-probability is compared (the candidate and the words after it)."""
    forced: str
    """The text then written if this candidate wins."""
    label: str
    """Its class (`Positive`) or entity tag (`PLACE`): what calibration corrects for."""


class Grammar:
    """The answers allowed for one item, read as a prefix language.

    `state(text)` is None when `text` can start no allowed answer; otherwise (the possible
    continuations up to the next choice point, whether the answer may end right here). One
    leading space is allowed (a completion prompt ends with `Answer:`).
    """

    def state(self, text: str) -> tuple[list[str], bool] | None:
        raise NotImplementedError

    task: str = ""
    """The annotation task whose answers this grammar allows (`ner`, `sa`)."""

    def alternatives(self, text: str) -> list[Alternative] | None:
        """Labels to choose between as wholes at this point; None: decode token by token.

        A label of several tokens (`Neutral` = `Ne` + `utral` for SmolLM2, `PLACE` = `PL` +
        `ACE`) would otherwise be judged by its first token alone, against labels of one token.
        """
        return None


NER_MAX_WORDS = 6
"""Longest entity the NER grammar lets a group hold (99.4% of SLUE-VoxPopuli fine-tune entities
are this short)."""

EDGE_WORDS = frozenset(
    """the a an of in on at to for from by with and or but that which who is are was were be been
    will would can could should has have had not i we you he she it they me them my our your his
    her its their this these those there as because than so if""".split()  # noqa: SIM905 (60 words)
)
"""Function words an entity may not start with, nor (unless it must close) end with: SLUE's
labels leave them outside the brackets ("the [ORG council]", "[PLACE ireland] and ...").
`this` is an exception at the start in SLUE ("this year") but rare; it is kept out."""


class NerGrammar(Grammar):
    """The transcript's words, in order, single-spaced, some inside `[TAG ...]` groups: TAG one of
    the 7, a group holds 1 to `NER_MAX_WORDS` words, does not start with an `EDGE_WORDS` word
    nor end with one (unless the transcript ends there or the group is full), and groups do not
    nest."""

    def __init__(self, text: str) -> None:
        self.words = text.split()
        self.edge = [w.strip(EDGE_PUNCT).lower() in EDGE_WORDS for w in self.words]

    def _options(
        self, k: int, n_in: int, first: bool
    ) -> tuple[list[tuple[str, tuple[int, int, bool]]], bool]:
        """(segment, state after it) choices before word k with `n_in` words in the open group
        (0: none open), and whether the answer may end here."""
        options: list[tuple[str, tuple[int, int, bool]]] = []
        sep = "" if first else " "
        n = len(self.words)
        if k < n:
            word = self.words[k]
            if n_in == 0:
                options.append((sep + word, (k + 1, 0, False)))
                if not self.edge[k]:
                    options += [(f"{sep}[{tag} {word}", (k + 1, 1, False)) for tag in SLUE_TAGS]
            elif n_in < NER_MAX_WORDS:
                options.append((sep + word, (k + 1, n_in + 1, False)))
        if n_in > 0 and (not self.edge[k - 1] or k == n or n_in == NER_MAX_WORDS):
            options.append(("]", (k, 0, False)))
        return options, k == n and n_in == 0

    def state(self, text: str) -> tuple[list[str], bool] | None:
        rest = text[1:] if text.startswith(" ") else text
        st = (0, 0, True)
        while True:
            options, can_end = self._options(*st)
            if not rest:
                return [seg for seg, _ in options], can_end
            # Segments are prefix-free (a word holds no "[" or "]"), so at most one matches whole.
            whole = [(seg, nxt) for seg, nxt in options if rest.startswith(seg)]
            if whole:
                seg, st = whole[0]
                rest = rest[len(seg) :]
                continue
            partial = [seg[len(rest) :] for seg, _ in options if seg.startswith(rest)]
            return (partial, False) if partial else None

    task = "ner"

    def alternatives(self, text: str) -> list[Alternative] | None:
        """Right after an opening `[`: every (tag, length) of the entity, chosen jointly.

        Each candidate is `TAG w1 .. wk]`, scored together with the words that follow it up to
        the longest candidate's end (`... wk] wk+1 .. wK`), so that all candidates cover the same
        words and differ only in the tag and where the bracket closes. A tag alone, chosen
        before its words are seen, is little more than the model's prior over tag names.
        """
        if not text.endswith("[") or self.state(text) is None:
            return None
        start = len(parse_ner(text[:-1]).text.split())  # the entity's first word
        longest = min(NER_MAX_WORDS, len(self.words) - start)
        out = []
        for tag in SLUE_TAGS:
            for k in range(1, longest + 1):
                forced = f"{tag} {' '.join(self.words[start : start + k])}]"
                if self.state(text + forced) is None:
                    continue  # e.g. a group may not end with a function word
                after = self.words[start + k : start + longest]
                out.append(Alternative(forced + "".join(" " + w for w in after), forced, tag))
        return out or None


class SentimentGrammar(Grammar):
    """Exactly one of the three class names."""

    def state(self, text: str) -> tuple[list[str], bool] | None:
        rest = text[1:] if text.startswith(" ") else text
        if rest in SENTIMENTS:
            return [], True
        partial = [s[len(rest) :] for s in SENTIMENTS if s.startswith(rest)]
        return (partial, False) if partial else None

    task = "sa"

    def alternatives(self, text: str) -> list[Alternative] | None:
        """At the start: the three classes."""
        return [Alternative(s, s, s) for s in SENTIMENTS] if text in ("", " ") else None


def grammar_for(task: str, text: str) -> Grammar:
    """The grammar of valid answers for `task` on `text`."""
    return NerGrammar(text) if task == "ner" else SentimentGrammar()


class GrammarProcessor:
    """Greedy decoding restricted to a grammar, one row at a time (a transformers logits
    processor: called with input ids (B, L) and next-token scores (B, V), returns the scores).

    Per row it takes the highest-scoring of the top `top_k` tokens whose text keeps the answer a
    valid prefix (a stop or newline token only where the answer may end), falling back to the
    first token of each allowed continuation; every other token's score becomes -inf, so greedy
    decoding picks it. Where the grammar offers whole labels (`Grammar.alternatives`: the
    sentiment classes; an entity's tag and length after `[`), the label with the highest
    log-probability as a whole is chosen (`Annotator.score_labels`, from the row's own prompt
    and answer so far, so batch-independent) and its tokens are forced. A row whose text has left
    the grammar (e.g. a byte-level token that is half a character) is left free; validation then
    judges its answer.
    """

    def __init__(
        self,
        scorer: Annotator,
        grammars: list[Grammar | None],
        prompt_width: int,
        prompts: list[list[int]],
        prefix: str = "",
        prefix_ids: list[int] | None = None,
        top_k: int = 32,
    ) -> None:
        self.scorer = scorer
        self.tokenizer = scorer.tokenizer
        self.stops = scorer.stop_ids
        self.newlines = scorer.newline_ids
        self.grammars = grammars
        self.width = prompt_width
        self.prompts = prompts
        """Each row's prompt token ids (prefix included, no padding)."""
        self.prefix = prefix
        self.prefix_ids = prefix_ids or []
        self.top_k = top_k
        self.plans: dict[int, list[int]] = {}
        """Tokens still to force per row: the rest of a label chosen as a whole."""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _allowed(self, grammar: Grammar, ids: list[int], token: int, can_end: bool) -> bool:
        if token in self.stops:
            return can_end
        new = self._decode([*ids, token])
        if token in self.newlines or "\n" in new:
            state = grammar.state(new.split("\n", 1)[0])
            return state is not None and state[1]
        return grammar.state(new) is not None

    def choose(
        self, row: int, grammar: Grammar, ids: list[int], scores: torch.Tensor
    ) -> int | None:
        """The token row `ids` takes next under `grammar`, or None to leave the row free."""
        if self.plans.get(row):
            return self.plans[row].pop(0)
        text = self._decode(ids)
        state = grammar.state(text)
        if state is None:
            return None
        continuations, can_end = state
        label = self._choose_label(row, grammar, ids, text)
        if label is not None:
            self.plans[row] = label[1:]
            return label[0]
        k = min(self.top_k, scores.shape[-1])
        for token in torch.topk(scores, k).indices.tolist():  # best first
            if self._allowed(grammar, ids, token, can_end):
                return token
        # No top-k token fits: the first token of each allowed continuation, best-scoring first.
        firsts: set[int] = set()
        for cont in continuations:
            firsts.update(self.tokenizer(cont, add_special_tokens=False).input_ids[:1])
        for token in sorted(firsts, key=lambda t: -float(scores[t])):
            if self._allowed(grammar, ids, token, can_end):
                return token
        return min(self.stops) if can_end else None

    def _choose_label(
        self, row: int, grammar: Grammar, ids: list[int], text: str
    ) -> list[int] | None:
        """Token ids of the best whole label where the grammar offers labels, else None."""
        labels = grammar.alternatives(text)
        if not labels:
            return None
        lead = self.scorer.answer_lead(text)
        scored, forced, names = [], [], []
        for alt in labels:
            label_ids = self.tokenizer(lead + alt.forced, add_special_tokens=False).input_ids
            if label_ids and grammar.state(self._decode([*ids, *label_ids])) is not None:
                scored.append(self.tokenizer(lead + alt.scored, add_special_tokens=False).input_ids)
                forced.append(label_ids)
                names.append(alt.label)
        if len(forced) < 2:
            return forced[0] if forced else None
        logprobs = self.scorer.score_labels(
            grammar.task, self.prompts[row] + ids, scored, names, self.prefix, self.prefix_ids
        )
        return forced[max(range(len(forced)), key=lambda i: logprobs[i])]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, grammar in enumerate(self.grammars):
            if grammar is None:
                continue
            ids = input_ids[row, self.width :].tolist()
            if any(t in self.stops or t in self.newlines for t in ids):
                continue  # finished: generate only pads this row now
            token = self.choose(row, grammar, ids, scores[row])
            if token is not None:
                scores[row] = float("-inf")
                # Finite even where the model scored it -inf: greedy takes the only finite one.
                scores[row, token] = 0.0
        return scores
