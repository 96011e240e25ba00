"""WordNet importer: the usage examples in WordNet 3.0's glosses -> text-only utterances of
general English (no labels), to be spoken by TTS for acoustic training.

SLUE-VoxPopuli is parliament speech and VADER snippets are reviews and tweets; WordNet's ~48,000
usage examples ("she choked with emotion when she spoke about her deceased husband") are short
everyday sentences and phrases across the whole vocabulary, written by lexicographers, under a
licence that allows use and redistribution with its notice (WordNet 3.0, Princeton University;
Debian's `wordnet-base` installs the database in `/usr/share/wordnet`). No Python package ships
them: nltk and `wn` download the database at run time, so the files are read directly.

Database format (wndb(5WN)): in `data.noun|verb|adj|adv`, each synset is one line whose gloss
follows ` | `; the usage examples are the gloss's double-quoted parts. Lines starting with two
spaces are the licence header.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from speechllm.data.manifest import Utterance
from speechllm.data.normalize import speakable_transcript
from speechllm.errors import ManifestError

WORDNET_DIR = Path("/usr/share/wordnet")
"""Where Debian's `wordnet-base` puts the database."""

WORDNET_POS = ("noun", "verb", "adj", "adv")
"""The four `data.<pos>` files."""

MIN_WORDS = 5
"""Shorter examples ("a big house") are mostly noun phrases: little speech per clip."""

MAX_WORDS = 30
"""About 12 s of speech, as for the VADER snippets."""

_EXAMPLE = re.compile(r'"([^"]+)"')


def wordnet_examples(
    folder: str | os.PathLike[str] = WORDNET_DIR,
    limit: int | None = None,
    seed: int = 0,
) -> list[Utterance]:
    """The usage examples a speaker can say as written (`normalize.speakable_transcript`: letters
    and plain punctuation, MIN_WORDS to MAX_WORDS words; digits, abbreviations in capitals and symbols
    are left out), each once, as utterances `wordnet-<pos>-<synset offset>-<n>` whose text is
    the transcript in SLUE's normalised style. With `limit`, a sample of that many drawn with
    `seed` (in file order). Raises ManifestError if the folder holds none of the data files."""
    base = Path(folder)
    files = [(pos, base / f"data.{pos}") for pos in WORDNET_POS if (base / f"data.{pos}").is_file()]
    if not files:
        raise ManifestError(
            f"{base}: no WordNet data files (data.noun, data.verb, ...): install Debian's "
            "wordnet-base (apt-get install wordnet-base) or pass the folder of WordNet 3.0's dict/"
        )
    seen: set[str] = set()
    utts: list[Utterance] = []
    for pos, path in files:
        # The database is ASCII apart from a few Latin-1 letters in glosses.
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue
            offset = line.split(" ", 1)[0]
            gloss = line.split(" | ", 1)[1]
            for n, example in enumerate(_EXAMPLE.findall(gloss)):
                text = speakable_transcript(example.strip(), MIN_WORDS, MAX_WORDS)
                if text is None or text in seen:
                    continue
                seen.add(text)
                utts.append(Utterance(f"wordnet-{pos}-{offset}-{n}", None, None, text))
    if limit is not None and limit < len(utts):
        keep = set(random.Random(seed).sample(range(len(utts)), limit))
        utts = [u for i, u in enumerate(utts) if i in keep]
    return utts
