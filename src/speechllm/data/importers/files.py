"""What the corpus importers share: where the project's shared data lives (`shared_dir`),
reading a corpus's tab-separated files, and finding each utterance's audio file and duration.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import soundfile as sf

from speechllm.data.manifest import Utterance, problems_error
from speechllm.errors import AudioError, ConfigError, ManifestError


def shared_dir() -> Path:
    """../shared beside the repo, or $SPEECHLLM_SHARED."""
    env = os.environ.get("SPEECHLLM_SHARED")
    candidates = (
        [Path(env)]
        if env
        else [Path.cwd().parent / "shared", Path(__file__).resolve().parents[5] / "shared"]
    )
    for c in candidates:
        if (c / "data").is_dir():
            return c
    raise ConfigError(
        "the project data folder ../shared was not found; set SPEECHLLM_SHARED to its path"
    )


AUDIO_EXTENSIONS: tuple[str, ...] = (".flac", ".wav", ".ogg")
"""Looked for, in this order, as `<audio_dir>/<id><ext>` (SLUE ships .ogg; many users convert)."""


def read_table(
    tsv: Path, what: str, required: tuple[str, ...] | list[str]
) -> tuple[list[list[str]], dict[str, int]]:
    """Rows of a tsv (header first) and its column index; ManifestError if a column is missing."""
    rows = read_tsv(tsv, what)
    header = rows[0]
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(
            f"{tsv}:1: not a {what} tsv: no column(s) {', '.join(missing)} "
            f"(header: {', '.join(header)})"
        )
    return rows, {name: i for i, name in enumerate(header)}


def read_tsv(tsv: Path, what: str) -> list[list[str]]:
    """The rows of a tab-separated file with a header row; ManifestError if unreadable or empty."""
    try:
        # QUOTE_NONE: SLUE text is not CSV-quoted, so a '"' in a transcript is just a character.
        with open(tsv, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except FileNotFoundError:
        raise ManifestError(f"{tsv}: {what} tsv not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{tsv}: is a folder, not a {what} tsv") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{tsv}: cannot be read ({exc})") from exc
    if not rows:
        raise ManifestError(f"{tsv}: empty file (expected a {what} tsv with a header)")
    return rows


def attach_audio(utts: list[Utterance], audio_dir: Path) -> None:
    """Set each utterance's audio (`<dir>/<id>.<ext>`) and duration; all must be present."""
    if not audio_dir.is_dir():
        raise AudioError(audio_dir, "audio folder not found")
    missing: list[str] = []
    for u in utts:
        candidates = (audio_dir / f"{u.id}{ext}" for ext in AUDIO_EXTENSIONS)
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            missing.append(u.id)
            continue
        u.audio = str(found.absolute())
        u.duration = audio_duration(found)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise AudioError(
            audio_dir,
            f"no audio for {len(missing)} of {len(utts)} utterances (looked for <id>"
            f"{'|'.join(AUDIO_EXTENSIONS)}): {shown}",
        )


def audio_duration(path: Path) -> float:
    """Seconds, from the header only (cheap: no decoding)."""
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioError(path, f"not a readable audio file ({exc})") from exc
    return round(info.frames / info.samplerate, 4)


def table_rows(
    tsv: Path, rows: list[list[str]], col: dict[str, int], problems: list[str]
) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, `file:line`, cells) of each non-blank data row of a `read_table` table;
    a row whose cell count is not the header's is added to `problems` instead."""
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{tsv}:{lineno}"
        if len(row) != len(col):
            problems.append(f"{where}: {len(row)} columns, the header has {len(col)}")
            continue
        yield lineno, where, row


def id_problem(uid: str, lineno: int, first_line: dict[str, int]) -> str | None:
    """What is wrong with a row's id (empty, or already on an earlier line), else None; a good
    id is recorded in `first_line` (id -> line number)."""
    if not uid:
        return "empty id"
    if uid in first_line:
        return f"duplicate id {uid!r} (first on line {first_line[uid]})"
    first_line[uid] = lineno
    return None


def finish_import(
    utts: list[Utterance], problems: list[str], audio_dir: str | os.PathLike[str] | None
) -> list[Utterance]:
    """`utts` once read: one ManifestError listing every problem found, else the utterances with
    their audio attached (`attach_audio`) where an audio folder is given."""
    if problems:
        raise problems_error(problems)
    if audio_dir is not None:
        attach_audio(utts, Path(audio_dir))
    return utts
