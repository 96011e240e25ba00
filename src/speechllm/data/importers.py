"""Corpora -> utterances: SLUE-VoxPopuli (text + NER labels), SLUE-VoxCeleb (text + sentiment),
LibriSpeech (audio + text) and the VADER human sentiment ratings (text + sentiment, to be spoken).
"""

from __future__ import annotations

import ast
import csv
import html
import math
import os
from pathlib import Path

import soundfile as sf

from speechllm.data.manifest import Utterance, problems_error
from speechllm.errors import AudioError, ConfigError, ManifestError
from speechllm.labels import ONTONOTES_TO_SLUE, SENTIMENTS


def shared_dir() -> Path:
    """../shared beside the repo, or $SPEECHLLM_SHARED."""
    env = os.environ.get("SPEECHLLM_SHARED")
    candidates = (
        [Path(env)]
        if env
        else [Path.cwd().parent / "shared", Path(__file__).resolve().parents[4] / "shared"]
    )
    for c in candidates:
        if (c / "data").is_dir():
            return c
    raise ConfigError(
        "the project data folder ../shared was not found; set SPEECHLLM_SHARED to its path"
    )


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
    rows, col = _read_table(tsv, "SLUE-VoxPopuli", _SLUE_COLUMNS)
    labelled = "normalized_ner" in col

    utts: list[Utterance] = []
    problems: list[str] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{tsv}:{lineno}"
        if len(row) != len(col):
            problems.append(f"{where}: {len(row)} columns, the header has {len(col)}")
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
    rows, col = _read_table(tsv, "SLUE-VoxCeleb", _VOXCELEB_COLUMNS)
    labelled = "sentiment" in col
    has_segment = "start_second" in col and "end_second" in col

    utts: list[Utterance] = []
    segments: dict[str, float] = {}
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{tsv}:{lineno}"
        if len(row) != len(col):
            problems.append(f"{where}: {len(row)} columns, the header has {len(col)}")
            continue
        uid = row[col["id"]].strip()
        if not uid:
            problems.append(f"{where}: empty id")
            continue
        if uid in first_line:
            problems.append(f"{where}: duplicate id {uid!r} (first on line {first_line[uid]})")
            continue
        first_line[uid] = lineno
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
        row_split = row[col["split"]].strip() if "split" in col else "train"
        utts.append(
            Utterance(
                id=uid,
                audio=None,
                duration=None,
                text=row[col["normalized_text"]].strip(),
                entities=None,
                sentiment=sentiment,
                split=split or SLUE_SPLITS.get(row_split, row_split),
            )
        )
    if problems:
        raise problems_error(problems)
    if audio_dir is not None:
        _attach_audio(utts, Path(audio_dir))
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


def _read_table(
    tsv: Path, what: str, required: tuple[str, ...] | list[str]
) -> tuple[list[list[str]], dict[str, int]]:
    """Rows of a tsv (header first) and its column index; ManifestError if a column is missing."""
    rows = _read_tsv(tsv, what)
    header = rows[0]
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(
            f"{tsv}:1: not a {what} tsv: no column(s) {', '.join(missing)} "
            f"(header: {', '.join(header)})"
        )
    return rows, {name: i for i, name in enumerate(header)}


def _read_tsv(tsv: Path, what: str) -> list[list[str]]:
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
            if not rid:
                problems.append(f"{where}: empty id")
                continue
            if rid in first_line:
                problems.append(f"{where}: duplicate id {rid!r} (first on line {first_line[rid]})")
                continue
            first_line[rid] = lineno
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
