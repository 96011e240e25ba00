"""SLUE importers: SLUE-VoxPopuli tsv -> utterances with NER labels, SLUE-VoxCeleb tsv ->
utterances with sentiment labels (with their audio where a folder of clips is given)."""

from __future__ import annotations

import ast
import math
import os
from pathlib import Path

from speechllm.data.importers.files import finish_import, id_problem, read_table, table_rows
from speechllm.data.manifest import Utterance
from speechllm.errors import AudioError
from speechllm.labels import ONTONOTES_TO_SLUE, SENTIMENTS

SLUE_SPLITS: dict[str, str] = {"fine-tune": "train", "dev": "dev", "test": "test"}
"""SLUE's split names -> ours (other names are kept as they are)."""

SLUE_DEV = Path("data/slue-voxpopuli/slue-voxpopuli_dev.tsv")
SLUE_TRAIN = Path("data/slue-voxpopuli/slue-voxpopuli_fine-tune.tsv")
"""SLUE-VoxPopuli's dev (reserved for evaluation) and fine-tune splits, relative to ../shared."""

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
    rows, col = read_table(tsv, "SLUE-VoxPopuli", _SLUE_COLUMNS)
    labelled = "normalized_ner" in col

    utts: list[Utterance] = []
    problems: list[str] = []
    for _, where, row in table_rows(tsv, rows, col, problems):
        text = row[col["normalized_text"]]
        entities: list[tuple[str, str]] | None = None
        if labelled:
            try:
                entities = _slue_entities(row[col["normalized_ner"]], text)
            except ValueError as exc:
                problems.append(f"{where}: normalized_ner: {exc}")
                continue
        utts.append(_utterance(row, col, split, entities=entities))
    return finish_import(utts, problems, audio_dir)


def _utterance(
    row: list[str],
    col: dict[str, int],
    split: str | None,
    *,
    entities: list[tuple[str, str]] | None = None,
    sentiment: str | None = None,
) -> Utterance:
    """The utterance of one SLUE row (no audio yet): its id, `normalized_text`, labels, and
    `split` or else the row's split column in our names (no column: train)."""
    row_split = row[col["split"]].strip() if "split" in col else "train"
    return Utterance(
        id=row[col["id"]].strip(),
        audio=None,
        duration=None,
        text=row[col["normalized_text"]].strip(),
        entities=entities,
        sentiment=sentiment,
        split=split or SLUE_SPLITS.get(row_split, row_split),
    )


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


SLUE_VOXCELEB_DROPPED: tuple[str, ...] = ("<mixed>", "Disagreement")
"""Sentiment labels of SLUE-VoxCeleb rows that SLUE leaves out of every split it scores."""

_VOXCELEB_COLUMNS = ("id", "normalized_text")

SEGMENT_TOLERANCE_S = 0.5
"""How much longer than its `end_second - start_second` segment an audio file may be."""


def import_slue_voxceleb(
    tsv_path: str | os.PathLike[str],
    *,
    audio_dir: str | os.PathLike[str] | None = None,
    split: str | None = None,
    skipped: list[str] | None = None,
) -> list[Utterance]:
    """Utterances of a SLUE-VoxCeleb tsv (`id, normalized_text, speaker_id, split, sentiment,
    start_second, end_second`).

    `text` is `normalized_text` and `sentiment` the row's label. Rows labelled `<mixed>` or
    `Disagreement` are left out, as slue-toolkit's `prepare_voxceleb.create_manifest` keeps only
    rows whose sentiment is Negative, Neutral or Positive; their ids are appended to `skipped`
    when it is given. Any other label, an empty one included, is an error rather than a silent
    drop, so a damaged file cannot shrink the evaluation set unnoticed. A tsv without the
    `sentiment` column (a blind test set) gives unlabelled utterances (None). `entities` are None
    (VoxCeleb has no NER labels). `split` overrides the tsv's split column (fine-tune -> train).

    With `audio_dir`, each utterance's audio is `<audio_dir>/<id>.flac|.wav|.ogg` and must exist;
    the files must be the segmented clips (slue-toolkit cuts `start_second..end_second` out of
    each `<split>_raw/` recording into `<split>/`): a file longer than its segment by more than
    `SEGMENT_TOLERANCE_S` is an error. Malformed rows raise one ManifestError listing
    "file:line: what is wrong" for each.
    """
    tsv = Path(tsv_path)
    rows, col = read_table(tsv, "SLUE-VoxCeleb", _VOXCELEB_COLUMNS)
    labelled = "sentiment" in col
    has_segment = "start_second" in col and "end_second" in col

    utts: list[Utterance] = []
    segments: dict[str, float] = {}
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, where, row in table_rows(tsv, rows, col, problems):
        uid = row[col["id"]].strip()
        problem = id_problem(uid, lineno, first_line)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        sentiment: str | None = None
        if labelled:
            sentiment = row[col["sentiment"]].strip()
            if sentiment in SLUE_VOXCELEB_DROPPED:
                if skipped is not None:
                    skipped.append(uid)
                continue
            if sentiment not in SENTIMENTS:
                problems.append(
                    f"{where}: sentiment must be one of {', '.join(SENTIMENTS)} (or "
                    f"{' / '.join(SLUE_VOXCELEB_DROPPED)}, rows SLUE leaves out), got {sentiment!r}"
                )
                continue
        if has_segment:
            try:
                segments[uid] = _segment_seconds(row[col["start_second"]], row[col["end_second"]])
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
        utts.append(_utterance(row, col, split, sentiment=sentiment))
    finish_import(utts, problems, audio_dir)
    if audio_dir is not None:
        _check_segments(utts, segments, Path(audio_dir))
    return utts


def _segment_seconds(start: str, end: str) -> float:
    """end - start of a `start_second`, `end_second` pair; ValueError saying what is wrong."""
    try:
        a, b = float(start), float(end)
    except ValueError:
        raise ValueError(
            f"start_second/end_second must be numbers, got {start.strip()!r}, {end.strip()!r}"
        ) from None
    if not (math.isfinite(a) and math.isfinite(b) and 0 <= a < b):
        raise ValueError(f"expected 0 <= start_second < end_second, got {a}, {b}")
    return b - a


def _check_segments(utts: list[Utterance], segments: dict[str, float], audio_dir: Path) -> None:
    # A clip much longer than its segment is the unsegmented recording: training or scoring on it
    # would silently use speech that SLUE does not.
    long = [
        u
        for u in utts
        if u.id in segments and (u.duration or 0.0) > segments[u.id] + SEGMENT_TOLERANCE_S
    ]
    if long:
        u = long[0]
        raise AudioError(
            audio_dir,
            f"{len(long)} of {len(utts)} clips are longer than their segment (end_second - "
            f"start_second), e.g. {u.id}: {u.duration:.2f} s of audio for a "
            f"{segments[u.id]:.2f} s segment. This looks like the unsegmented recordings "
            "(SLUE's <split>_raw/); use the segmented clips (slue-toolkit's create_manifest "
            "writes them to <split>/)",
        )
