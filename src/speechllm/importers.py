"""Corpora -> utterances: SLUE-VoxPopuli (text + NER labels) and LibriSpeech (audio + text)."""

from __future__ import annotations

import ast
import csv
import os
from pathlib import Path

import soundfile as sf

from speechllm.errors import AudioError, ManifestError
from speechllm.labels import ONTONOTES_TO_SLUE
from speechllm.manifest import Utterance, problems_error

AUDIO_EXTENSIONS: tuple[str, ...] = (".flac", ".wav", ".ogg")
"""Looked for, in this order, as `<audio_dir>/<id><ext>` (SLUE ships .ogg; many users convert)."""

SLUE_SPLITS: dict[str, str] = {"fine-tune": "train", "dev": "dev", "test": "test"}
"""SLUE's split names -> ours (other names are kept as they are)."""

_SLUE_COLUMNS = ("id", "normalized_text")


def import_slue_voxpopuli(
    tsv_path: str | os.PathLike[str],
    *,
    audio_dir: str | os.PathLike[str] | None = None,
    split: str | None = None,
) -> list[Utterance]:
    """Utterances of a SLUE-VoxPopuli tsv (`id, raw_text, normalized_text, ..., normalized_ner`).

    `text` is `normalized_text`; `entities` are the `normalized_ner` spans mapped to SLUE's 7
    combined tags as (tag, phrase), with the tags SLUE drops (FAC, EVENT, ...) left out. A row with
    `normalized_ner` None is labelled and has no entities ([]); only a tsv without the
    `normalized_ner` column (SLUE's blind test set) gives unlabelled utterances (None).
    `split` overrides the tsv's split column (fine-tune -> train). With `audio_dir`, each
    utterance's audio is `<audio_dir>/<id>.flac|.wav|.ogg` and must exist; without, `audio` is
    None (a text-only manifest, for `speechllm data synth`).
    """
    tsv = Path(tsv_path)
    try:
        # QUOTE_NONE: SLUE text is not CSV-quoted, so a '"' in a transcript is just a character.
        with open(tsv, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except FileNotFoundError:
        raise ManifestError(f"{tsv}: SLUE tsv not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{tsv}: cannot be read ({exc})") from exc
    if not rows:
        raise ManifestError(f"{tsv}: empty file (expected a SLUE-VoxPopuli tsv with a header)")
    header = rows[0]
    missing = [c for c in _SLUE_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            f"{tsv}:1: not a SLUE-VoxPopuli tsv: no column(s) {', '.join(missing)} "
            f"(header: {', '.join(header)})"
        )
    col = {name: i for i, name in enumerate(header)}
    labelled = "normalized_ner" in col

    utts: list[Utterance] = []
    problems: list[str] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{tsv}:{lineno}"
        if len(row) != len(header):
            problems.append(f"{where}: {len(row)} columns, the header has {len(header)}")
            continue
        uid, text = row[col["id"]].strip(), row[col["normalized_text"]]
        entities: list[tuple[str, str]] | None = None
        if labelled:
            try:
                entities = _slue_entities(row[col["normalized_ner"]], text)
            except ValueError as exc:
                problems.append(f"{where}: normalized_ner: {exc}")
                continue
        row_split = row[col["split"]].strip() if "split" in col else "train"
        utts.append(
            Utterance(
                id=uid,
                audio=None,
                duration=None,
                text=text.strip(),
                entities=entities,
                split=split or SLUE_SPLITS.get(row_split, row_split),
            )
        )
    if problems:
        raise problems_error(problems)
    if audio_dir is not None:
        _attach_audio(utts, Path(audio_dir))
    return utts


def _slue_entities(field: str, text: str) -> list[tuple[str, str]]:
    """`[[TAG, char_start, char_len], ...]` or `None` -> [(combined tag, phrase)], in order."""
    field = field.strip()
    if field in ("", "None", "[]"):
        return []
    try:
        # literal_eval, never eval: the field is data and must not be able to run code.
        spans = ast.literal_eval(field)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not a Python literal list ({type(exc).__name__})") from None
    if not isinstance(spans, list | tuple):
        raise ValueError(f"expected a list of [TAG, start, length], got {type(spans).__name__}")
    out: list[tuple[str, str]] = []
    for span in spans:
        if not (
            isinstance(span, list | tuple)
            and len(span) == 3
            and isinstance(span[0], str)
            and all(isinstance(x, int) and not isinstance(x, bool) for x in span[1:])
        ):
            raise ValueError(f"expected [TAG, start, length], got {span!r}")
        tag, start, length = span
        if tag not in ONTONOTES_TO_SLUE:
            raise ValueError(f"unknown OntoNotes tag {tag!r} in {span!r}")
        if start < 0 or length <= 0 or start + length > len(text):
            raise ValueError(f"span {span!r} lies outside the {len(text)}-character text")
        combined = ONTONOTES_TO_SLUE[tag]
        if combined is None:
            continue  # SLUE drops this tag from reference and hypothesis alike
        phrase = text[start : start + length].strip()
        if not phrase:
            raise ValueError(f"span {span!r} covers only whitespace")
        out.append((combined, phrase))
    return out


def _attach_audio(utts: list[Utterance], audio_dir: Path) -> None:
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
        u.duration = _duration(found)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise AudioError(
            audio_dir,
            f"no audio for {len(missing)} of {len(utts)} utterances (looked for <id>"
            f"{'|'.join(AUDIO_EXTENSIONS)}): {shown}",
        )


def _duration(path: Path) -> float:
    """Seconds, from the header only (cheap: no decoding)."""
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioError(path, f"not a readable audio file ({exc})") from exc
    return round(info.frames / info.samplerate, 4)


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
                    duration=_duration(flac),
                    text=" ".join(text.lower().split()),
                    split=split,
                )
            )
    if problems:
        raise problems_error(problems)
    utts.sort(key=lambda u: u.id)
    return utts
