"""LibriSpeech importer: a LibriSpeech-layout folder -> utterances with audio and text."""

from __future__ import annotations

import os
from pathlib import Path

from speechllm.data.importers.files import audio_duration
from speechllm.data.manifest import Utterance, problems_error
from speechllm.errors import ManifestError


def import_librispeech(root: str | os.PathLike[str], *, split: str = "test") -> list[Utterance]:
    """Utterances of a LibriSpeech-layout folder (`speaker/chapter/*.trans.txt` + `<id>.flac`).

    Found at any depth below `root` (so both `LibriSpeech/` and `test-clean/` work), sorted by id.
    Text is lower-cased (LibriSpeech is upper case, our transcripts lower); labels are None.
    """
    base = Path(root)
    if not base.is_dir():
        raise ManifestError(f"{base}: LibriSpeech folder not found")
    transcripts = sorted(base.rglob("*.trans.txt"))
    if not transcripts:
        raise ManifestError(f"{base}: no *.trans.txt transcripts below this folder")
    utts: list[Utterance] = []
    problems: list[str] = []
    for trans in transcripts:
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{trans}: cannot be read ({exc})")
            continue
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            uid, _, text = line.strip().partition(" ")
            if not text.strip():
                problems.append(f"{trans}:{lineno}: expected '<utterance id> <TRANSCRIPT>'")
                continue
            flac = trans.parent / f"{uid}.flac"
            if not flac.is_file():
                problems.append(f"{trans}:{lineno}: audio file not found: {flac}")
                continue
            utts.append(
                Utterance(
                    id=uid,
                    audio=str(flac.absolute()),
                    duration=audio_duration(flac),
                    text=" ".join(text.lower().split()),
                    split=split,
                )
            )
    if problems:
        raise problems_error(problems)
    utts.sort(key=lambda u: u.id)
    return utts
