"""Manifests: JSONL files with one utterance (audio path, transcript, labels, split) per line.

A line looks like::

    {"id": "u1", "audio": "wav/u1.wav", "duration": 3.2, "text": "in strasbourg today",
     "entities": [["PLACE", "strasbourg"], ["WHEN", "today"]], "sentiment": null, "split": "train"}

`audio` is null in a text-only manifest (one still to be spoken by `speechllm data synth`);
relative audio paths are relative to the manifest's own folder, so a dataset folder can be moved
as a whole. `entities` null means "not labelled for NER", [] means "labelled: no entities". An optional
`"synthetic": ["sentiment"]` names the labels a tool or an LLM made rather than a person (the
paper's synthetic labels), so training can weigh them apart (`train.synthetic_sentiment_loss`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechllm.errors import ManifestError
from speechllm.labels import SENTIMENTS, SLUE_TAGS

MAX_REPORTED = 10
"""At most this many problems are listed in one ManifestError (the rest are counted)."""

REQUIRED_KEYS: tuple[str, ...] = ("id", "audio", "duration", "text")
OPTIONAL_KEYS: tuple[str, ...] = ("entities", "sentiment", "split", "synthetic")
LABEL_FIELDS: tuple[str, ...] = ("entities", "sentiment")
"""The label fields a row's `synthetic` list may name."""


@dataclass
class Utterance:
    """One clip (or, with `audio` None, one text still to be spoken) and its labels."""

    id: str
    audio: str | None  # path; None = text-only manifest (to be synthesized)
    duration: float | None  # seconds
    text: str  # normalized transcript (lower case, as SLUE's normalized_text)
    # [(SLUE combined tag, phrase)]; None = not labelled, [] = labelled with no entities
    entities: list[tuple[str, str]] | None = None
    sentiment: str | None = None  # one of SENTIMENTS, or None
    split: str = "train"
    # Which of LABEL_FIELDS a tool or an LLM made (not a person); () = all as given.
    synthetic: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of one manifest line (audio path as stored in the object). `synthetic`
        is written only where a label is synthetic, so manifests without any stay as they were."""
        out: dict[str, Any] = {
            "id": self.id,
            "audio": self.audio,
            "duration": self.duration,
            "text": self.text,
            "entities": None if self.entities is None else [[t, p] for t, p in self.entities],
            "sentiment": self.sentiment,
            "split": self.split,
        }
        if self.synthetic:
            out["synthetic"] = list(self.synthetic)
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> Utterance:
        """Build from one manifest line's object; raises ManifestError listing what is wrong."""
        problems = validate_dict(obj)
        if problems:
            where = f"utterance {obj.get('id')!r}" if isinstance(obj, dict) else "utterance"
            raise ManifestError(f"{where}: " + "; ".join(problems))
        return cls._from_valid(obj)

    @classmethod
    def _from_valid(cls, obj: dict[str, Any]) -> Utterance:
        ents = obj.get("entities")
        duration = obj["duration"]
        return cls(
            id=obj["id"],
            audio=obj["audio"],
            duration=None if duration is None else float(duration),
            text=obj["text"],
            entities=None if ents is None else [(t, p) for t, p in ents],
            sentiment=obj.get("sentiment"),
            split=obj.get("split", "train"),
            synthetic=tuple(obj.get("synthetic") or ()),
        )


def validate_dict(obj: Any) -> list[str]:
    """Every problem with one manifest line's object (empty when it is valid)."""
    if not isinstance(obj, dict):
        return [f"expected a JSON object, got {_json_type(obj)}"]
    problems: list[str] = []
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        problems.append(f"missing key(s) {', '.join(repr(k) for k in missing)}")
    # An unknown key is most often a misspelt one ("sentimnet"), whose label would silently vanish.
    unknown = [k for k in obj if k not in REQUIRED_KEYS + OPTIONAL_KEYS]
    if unknown:
        problems.append(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)} "
            f"(known: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})"
        )

    if "id" in obj and (not isinstance(obj["id"], str) or not obj["id"].strip()):
        problems.append(f"'id' must be a non-empty string, got {obj['id']!r}")
    audio = obj.get("audio")
    if audio is not None and (not isinstance(audio, str) or not audio.strip()):
        problems.append(f"'audio' must be a non-empty string or null, got {audio!r}")
    duration = obj.get("duration")
    if duration is not None and not _is_seconds(duration):
        problems.append(f"'duration' must be a number of seconds >= 0 or null, got {duration!r}")
    if "text" in obj and not isinstance(obj["text"], str):
        problems.append(f"'text' must be a string, got {_json_type(obj['text'])}")
    problems.extend(_entity_problems(obj.get("entities")))
    sentiment = obj.get("sentiment")
    if sentiment is not None and sentiment not in SENTIMENTS:
        problems.append(
            f"'sentiment' must be one of {', '.join(SENTIMENTS)} or null, got {sentiment!r}"
        )
    split = obj.get("split", "train")
    if not isinstance(split, str) or not split.strip():
        problems.append(f"'split' must be a non-empty string, got {split!r}")
    synthetic = obj.get("synthetic", [])
    if not isinstance(synthetic, list) or any(f not in LABEL_FIELDS for f in synthetic):
        problems.append(
            f"'synthetic' must be a list of label fields ({', '.join(LABEL_FIELDS)}), "
            f"got {synthetic!r}"
        )
    return problems


def _is_seconds(value: Any) -> bool:
    """A finite number >= 0 (not a bool); an integer too large for a float is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # math.isfinite(10**400)
        return False


def _entity_problems(ents: Any) -> list[str]:
    if ents is None:
        return []
    if not isinstance(ents, list):
        return [f"'entities' must be a list of [TAG, phrase] pairs or null, got {_json_type(ents)}"]
    problems = []
    for i, e in enumerate(ents):
        if not (isinstance(e, list | tuple) and len(e) == 2 and all(isinstance(x, str) for x in e)):
            problems.append(f"entities[{i}] must be a [TAG, phrase] pair of strings, got {e!r}")
        elif e[0] not in SLUE_TAGS:
            problems.append(
                f"entities[{i}] has tag {e[0]!r}, not one of the SLUE tags {', '.join(SLUE_TAGS)}"
            )
        elif not e[1].strip():
            problems.append(f"entities[{i}] has an empty phrase")
    return problems


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def problems_error(problems: list[str], limit: int = MAX_REPORTED) -> ManifestError:
    """One ManifestError listing the first `limit` problems (one per line) and counting the rest."""
    shown = problems[:limit]
    text = "\n".join(shown)
    if len(problems) > limit:
        text += f"\n... and {len(problems) - limit} more problems ({len(problems)} in all)"
    err = ManifestError(text)
    err.problems = list(problems)  # type: ignore[attr-defined]  # the full list, for callers/tests
    return err


def read_manifest(
    path: str | os.PathLike[str],
    *,
    require_audio: bool = False,
    defaults: dict[str, Any] | None = None,
    what: str = "manifest",
) -> list[Utterance]:
    """Read and validate a JSONL manifest; relative audio paths become absolute.

    Every line is checked (JSON object, keys, types, tags in SLUE_TAGS, sentiment in SENTIMENTS,
    unique ids and, with `require_audio`, an existing audio file) and all problems found are
    reported together in one ManifestError, "file:line: what is wrong" per line. `defaults` fill
    keys a line leaves out (predictions need no `audio`/`duration`); `what` names the file kind
    in errors.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{p}: is a folder, not a {what} (.jsonl) file") from None
    except OSError as exc:
        raise ManifestError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    try:
        # utf-8-sig: editors on Windows add a byte-order mark that json.loads would refuse.
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(f"{p}:{line}: not UTF-8 text ({exc.reason})") from None

    base = Path(os.path.normpath(p.parent.absolute()))
    utts: list[Utterance] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    # Only "\n" ends a JSONL line: splitlines() would also split at U+2028, U+0085 and others,
    # which write_manifest (ensure_ascii=False) leaves unescaped inside strings.
    for lineno, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (e.g. a trailing one) are harmless
        where = f"{p}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:
            # Python's own limits: an integer of over 4300 digits, nesting beyond the stack.
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            problems.append(f"{where}: not usable JSON ({reason})")
            continue
        if defaults and isinstance(obj, dict):
            obj = {**defaults, **obj}
        line_problems = validate_dict(obj)
        uid = obj.get("id") if isinstance(obj, dict) else None
        # Ids are checked on invalid lines too, so fixing one problem does not reveal another.
        if isinstance(uid, str) and uid in first_line:
            line_problems.append(f"duplicate id {uid!r} (first on line {first_line[uid]})")
        elif isinstance(uid, str):
            first_line[uid] = lineno
        if line_problems:
            problems.extend(f"{where}: {msg}" for msg in line_problems)
            continue
        utt = Utterance._from_valid(obj)
        if utt.audio is not None:
            utt.audio = _resolve(utt.audio, base)
        if require_audio:
            if utt.audio is None:
                problems.append(
                    f"{where}: utterance {utt.id!r} has no audio (a text-only manifest; "
                    "speak it first with `speechllm data synth`)"
                )
            elif not Path(utt.audio).is_file():
                problems.append(f"{where}: audio file not found: {utt.audio}")
        utts.append(utt)
    if problems:
        raise problems_error(problems)
    if not utts:
        raise ManifestError(f"{p}: the {what} holds no utterances")
    return utts


def _resolve(audio: str, base: Path) -> str:
    """An absolute, normalised path; relative ones are taken against the manifest's folder."""
    path = Path(os.path.expanduser(audio))
    if not path.is_absolute():
        path = base / path
    # normpath, not resolve(): keep symlinked dataset folders as the user named them.
    return os.path.normpath(path)


def write_manifest(path: str | os.PathLike[str], utts: Iterable[Utterance]) -> None:
    """Write utterances as JSONL, atomically (temporary file + rename).

    Audio paths inside the manifest's folder are written relative to it (so the folder can be
    moved); others are written absolute. Relative paths held in memory are taken against the
    current directory, as open() would. Invalid utterances raise ManifestError before anything is
    written.
    """
    p = Path(path)
    base = Path(os.path.normpath(p.parent.absolute()))
    lines: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, utt in enumerate(utts):
        obj = utt.to_dict()
        where = f"{p}: utterance {i} ({utt.id!r})"
        bad = validate_dict(obj)
        if utt.id in seen:
            bad.append("duplicate id")
        seen.add(utt.id)
        if bad:
            problems.extend(f"{where}: {msg}" for msg in bad)
            continue
        if utt.audio is not None:
            obj["audio"] = _relative_if_inside(utt.audio, base)
        lines.append(json.dumps(obj, ensure_ascii=False))
    if problems:
        raise problems_error(problems)

    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(line + "\n" for line in lines))
        # mkstemp makes the file owner-only; a manifest gets the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _relative_if_inside(audio: str, base: Path) -> str:
    absolute = Path(os.path.normpath(Path(audio).absolute()))
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return str(absolute)
