"""VADER importer: the VADER human sentiment ratings -> text-only utterances with a 3-class
sentiment (to be spoken by TTS), the ids reserved for evaluation, and which snippets a speaker
can say as written (`sa_reference`: the snippet -> its transcript in SLUE's style)."""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

from speechllm.data.importers.files import id_problem
from speechllm.data.manifest import Utterance, problems_error
from speechllm.data.normalize import speakable_transcript
from speechllm.errors import ManifestError

VADER_CORPORA: dict[str, str] = {
    "movieReviewSnippets": "movie",
    "amazonReviewSnippets": "amazon",
    "nytEditorialSnippets": "nyt",
    "tweets": "tweets",
}
"""File-name stems of the VADER ground-truth files -> the short names used in utterance ids."""

VADER_SUFFIX = "_GroundTruth.txt"

VADER_POSITIVE = 1.0
VADER_NEGATIVE = -1.0
VADER_NEUTRAL = 0.5
"""The 3-class mapping of a mean rating in [-4, 4] (../shared/README.md): Positive at >= 1.0,
Negative at <= -1.0, Neutral within +-0.5; ratings in between are left out, the way SLUE leaves
out rows its annotators disagree on."""

VADER_RATING_RANGE = (-4.0, 4.0)

VADER_DIR = Path("data/vader-ratings")
"""The rating files, relative to the shared data folder (../shared)."""

VADER_TEST_IDS = "test-ids.tsv"
"""Beside the rating files: the snippets reserved for evaluation (columns `corpus`, `id`)."""


def vader_reserved_ids(folder: str | os.PathLike[str]) -> set[str] | None:
    """Utterance ids (`vader-<corpus>-<id>`) listed in `folder`/test-ids.tsv, or None if the
    folder has no such file. Malformed lines raise one ManifestError listing each."""
    path = Path(folder) / VADER_TEST_IDS
    if not path.is_file():
        return None
    ids: set[str] = set()
    problems: list[str] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = line.strip().split("\t")
        if (lineno == 1 and fields == ["corpus", "id"]) or not line.strip():
            continue
        if len(fields) != 2 or not all(fields):
            problems.append(f"{path}:{lineno}: expected 'corpus<TAB>id', got {line!r}")
            continue
        ids.add(f"vader-{VADER_CORPORA.get(fields[0], fields[0])}-{fields[1]}")
    if problems:
        raise problems_error(problems)
    return ids


def vader_sentiment(rating: float) -> str | None:
    """The sentiment class of a VADER mean rating, or None where the mapping leaves it out."""
    if rating >= VADER_POSITIVE:
        return "Positive"
    if rating <= VADER_NEGATIVE:
        return "Negative"
    if abs(rating) <= VADER_NEUTRAL:
        return "Neutral"
    return None


def import_vader(
    path: str | os.PathLike[str],
    *,
    split: str = "train",
    skipped: list[str] | None = None,
) -> list[Utterance]:
    """Text-only utterances with a sentiment from VADER's human ratings (Hutto & Gilbert 2014).

    `path` is one `<corpus>_GroundTruth.txt` file (tab-separated `id, mean rating, text`, no
    header) or a folder of them (read in name order). Each rating becomes a class by
    `vader_sentiment`; the ids of rows it leaves out are appended to `skipped` when given. Ids are
    `vader-<corpus>-<id>` (corpus: movie, amazon, nyt, tweets, or the file's stem), since the
    files' own ids repeat across files. The text is kept as the raters read it (case and
    punctuation, which the speech synthesizer uses for prosody), with HTML entities (`&amp;` in
    the scraped snippets, `&amp;amp;` in the NYT file) decoded and whitespace collapsed; audio
    is None (speak it with `speechllm data synth`) and entities None. Malformed rows raise one ManifestError listing
    "file:line: what is wrong" for each.

    Where the folder holds `test-ids.tsv` (../shared's does), `split="test"` returns only the
    snippets it reserves for evaluation and any other split only the rest: training data built
    by this importer never holds a reserved snippet.
    """
    base = Path(path)
    reserved = vader_reserved_ids(base if base.is_dir() else base.parent)
    if base.is_dir():
        files = sorted(base.glob(f"*{VADER_SUFFIX}"))
        if not files:
            raise ManifestError(f"{base}: no *{VADER_SUFFIX} VADER rating files in this folder")
    elif base.is_file():
        files = [base]
    else:
        raise ManifestError(f"{base}: VADER rating file or folder not found")

    utts: list[Utterance] = []
    problems: list[str] = []
    for file in files:
        stem = file.name.removesuffix(VADER_SUFFIX).removesuffix(".txt")
        corpus = VADER_CORPORA.get(stem, stem)
        try:
            # utf-8-sig: tolerate a byte-order mark; splitlines() takes the files' CRLF ends.
            lines = file.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{file}: cannot be read ({exc})")
            continue
        first_line: dict[str, int] = {}
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{file}:{lineno}"
            fields = line.split("\t", 2)
            if len(fields) != 3:
                problems.append(
                    f"{where}: expected 3 tab-separated fields (id, rating, text), got {len(fields)}"
                )
                continue
            rid, raw_rating, raw_text = (f.strip() for f in fields)
            problem = id_problem(rid, lineno, first_line)
            if problem:
                problems.append(f"{where}: {problem}")
                continue
            try:
                rating = float(raw_rating)
            except ValueError:
                problems.append(f"{where}: rating must be a number, got {raw_rating!r}")
                continue
            low, high = VADER_RATING_RANGE
            if not (math.isfinite(rating) and low <= rating <= high):
                problems.append(f"{where}: rating must lie in [{low:g}, {high:g}], got {rating}")
                continue
            text = " ".join(_unescape(raw_text).split())
            if not text:
                problems.append(f"{where}: empty text")
                continue
            uid = f"vader-{corpus}-{rid}"
            if reserved is not None and (uid in reserved) != (split == "test"):
                continue  # the other side of the reserved split
            sentiment = vader_sentiment(rating)
            if sentiment is None:
                if skipped is not None:
                    skipped.append(uid)
                continue
            utts.append(Utterance(uid, None, None, text, None, sentiment, split))
    if problems:
        raise problems_error(problems)
    return utts


def _unescape(text: str, rounds: int = 3) -> str:
    """HTML entities decoded, repeatedly: some snippets were escaped twice (`&amp;amp;`)."""
    for _ in range(rounds):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text


SA_MIN_WORDS = 3
SA_MAX_WORDS = 30
"""Eligible VADER snippets have this many words: a rating needs some text, and 30 words is
about 12 s of speech, which keeps the SA set's decoding time close to the NER set's."""


def sa_reference(snippet: str) -> str | None:
    """The transcript of a VADER snippet as the bench stores it, or None if it is not eligible:
    `normalize.speakable_transcript` with SA_MIN_WORDS..SA_MAX_WORDS words."""
    return speakable_transcript(snippet, SA_MIN_WORDS, SA_MAX_WORDS)
