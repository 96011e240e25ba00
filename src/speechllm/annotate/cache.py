"""The annotation cache: one JSONL file beside the output, keyed per (text, model, prompt, task).

Results are cached by sha256(text, model name, ANNOTATION_PROMPT_VERSION, task), the model name
including the prompt style, the decoding mode and the versions of the grammar and calibration
(`Annotator.cache_name`), appended and flushed after every batch, so a killed run resumes where
it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from speechllm.annotate.prompts import ANNOTATION_PROMPT_VERSION
from speechllm.annotate.validation import Annotation


def cache_key(
    text: str, model: str, task: str, prompt_version: int = ANNOTATION_PROMPT_VERSION
) -> str:
    """sha256 (hex) of (text, model name, prompt version, task)."""
    payload = json.dumps([text, model, prompt_version, task], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class AnnotationCache:
    """A JSONL file of {key, annotation} lines; appended and flushed per batch.

    A killed run can leave a torn last line: lines that are not valid JSON are skipped on read
    (and counted in `skipped_lines`), so the next run regenerates only that batch.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.entries: dict[str, Annotation] = {}
        self.skipped_lines = 0
        # A torn last line left by a kill must not swallow the first entry appended after it.
        self._torn_end = False
        if self.path.is_file():
            raw = self.path.read_bytes()
            self._torn_end = bool(raw) and not raw.endswith(b"\n")
            for line in raw.decode("utf-8", errors="replace").split("\n"):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    self.entries[obj["key"]] = Annotation.from_json(obj["annotation"])
                except (ValueError, KeyError, TypeError):
                    self.skipped_lines += 1

    def get(self, key: str) -> Annotation | None:
        """The cached annotation of a key, if any."""
        return self.entries.get(key)

    def add(self, items: Iterable[tuple[str, Annotation]]) -> None:
        """Append entries and flush them to disk (fsync), so a kill loses at most a batch."""
        lines = []
        for key, ann in items:
            self.entries[key] = ann
            lines.append(json.dumps({"key": key, "annotation": ann.to_json()}, ensure_ascii=False))
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8", newline="\n") as f:
            if self._torn_end:
                f.write("\n")
                self._torn_end = False
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())


def cache_path(out: str | os.PathLike[str]) -> Path:
    """`OUT.cache.jsonl` beside the output manifest (its suffix replaced)."""
    return Path(out).with_suffix(".cache.jsonl")
