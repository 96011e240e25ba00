"""An annotation run: texts labelled in batches through the cache (`annotate_texts`), a
manifest's utterances relabelled (`annotate_utterances`) and the run's summary.

A recorded failure (`Annotation.ok` False after the retry) leaves the output row's `entities` /
`sentiment` null ("not labelled") and the summary lists its id, task, problem and the model's
last answer. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from speechllm.annotate.annotator import Annotator
from speechllm.annotate.cache import AnnotationCache, cache_key
from speechllm.annotate.prompts import ANNOTATION_PROMPT_VERSION, ANNOTATION_TASKS
from speechllm.annotate.validation import Annotation
from speechllm.data.manifest import Utterance
from speechllm.labels import SENTIMENTS, SLUE_TAGS


@dataclass
class RunStats:
    """What `annotate_texts` did: model calls made and answers taken from the cache."""

    generated: int = 0
    cached: int = 0


def annotate_texts(
    annotator: Annotator,
    task: str,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    cache: AnnotationCache | None = None,
    progress: Callable[[int], None] | None = None,
    stats: RunStats | None = None,
) -> list[Annotation]:
    """One annotation per text (same order). Distinct uncached texts are decoded in batches of
    similar length; each finished batch goes to the cache before the next starts."""
    if task not in ANNOTATION_TASKS:
        raise ValueError(f"unknown annotation task {task!r}; expected one of {ANNOTATION_TASKS}")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    keys = [cache_key(t, annotator.cache_name, task) for t in texts]
    found: dict[str, Annotation] = {}
    todo: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            found[key] = hit
        else:
            todo.setdefault(key, text)
    if stats is not None:
        stats.cached += sum(k in found for k in keys)
    if progress:
        progress(sum(k in found for k in keys))
    pending = sorted(todo.items(), key=lambda kv: len(kv[1]))
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        anns = annotator.annotate_batch(task, [t for _, t in chunk])
        new = list(zip([k for k, _ in chunk], anns, strict=True))
        found.update(new)
        if cache is not None:
            cache.add(new)
        if stats is not None:
            stats.generated += len(chunk)
        if progress:
            progress(sum(k in dict(new) for k in keys))
    return [found[k] for k in keys]


def summary_path(out: str | os.PathLike[str]) -> Path:
    """`OUT.summary.json` beside the output manifest (its suffix replaced)."""
    return Path(out).with_suffix(".summary.json")


def annotate_utterances(
    utts: Sequence[Utterance],
    annotator: Annotator,
    tasks: Sequence[str] = ANNOTATION_TASKS,
    *,
    batch_size: int = 8,
    cache: AnnotationCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Utterance], dict[str, Any]]:
    """Label each utterance's text; return (utterances with `entities` / `sentiment` replaced
    for the annotated tasks and named in their `synthetic` list, summary dict).

    A failed annotation leaves that field None ("not labelled") and is listed in the summary's
    `failures`; fields of tasks not annotated are kept as they were.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    stats = RunStats()
    per_task: dict[str, list[Annotation]] = {}
    for task in tasks:
        per_task[task] = annotate_texts(
            annotator,
            task,
            [u.text for u in utts],
            batch_size=batch_size,
            cache=cache,
            progress=progress,
            stats=stats,
        )
    out = []
    for i, u in enumerate(utts):
        new = replace(u)
        made = set(u.synthetic)
        if "ner" in per_task:
            new.entities = per_task["ner"][i].entities if per_task["ner"][i].ok else None
            made.add("entities")
        if "sa" in per_task:
            new.sentiment = per_task["sa"][i].sentiment if per_task["sa"][i].ok else None
            made.add("sentiment")
        new.synthetic = tuple(sorted(made))
        out.append(new)
    summary = summarize(utts, per_task)
    summary.update(
        model=annotator.name,
        prompt_style=annotator.style,
        prompt_version=ANNOTATION_PROMPT_VERSION,
        batch_size=batch_size,
        generated=stats.generated,
        cached=stats.cached,
        wall_seconds=round(time.perf_counter() - t0, 3),
        # This process's CPU time: the cost of the labels on a machine shared with other work.
        cpu_seconds=round(time.process_time() - cpu0, 3),
    )
    return out, summary


def summarize(utts: Sequence[Utterance], per_task: dict[str, list[Annotation]]) -> dict[str, Any]:
    """Counts per task and the list of failures (id, task, error, last answer)."""
    summary: dict[str, Any] = {"n_utterances": len(utts), "tasks": list(per_task), "per_task": {}}
    failures = []
    for task, anns in per_task.items():
        counts: dict[str, Any] = {
            "n": len(anns),
            "ok": sum(a.ok for a in anns),
            "failed": sum(not a.ok for a in anns),
            "retried": sum(a.attempts > 1 for a in anns),
            "ok_after_retry": sum(a.ok and a.attempts > 1 for a in anns),
        }
        if task == "ner":
            counts["entities"] = sum(len(a.entities or []) for a in anns)
            counts["invalid_tags"] = sum(a.invalid_tags for a in anns if a.ok)
            counts["dropped_phrases"] = sum(a.dropped_phrases for a in anns if a.ok)
            counts["per_tag"] = {
                t: sum(e[0] == t for a in anns for e in a.entities or []) for t in SLUE_TAGS
            }
        else:
            counts["per_class"] = {s: sum(a.sentiment == s for a in anns) for s in SENTIMENTS}
        summary["per_task"][task] = counts
        failures += [
            {"id": u.id, "task": task, "error": a.error, "answer": a.answer}
            for u, a in zip(utts, anns, strict=True)
            if not a.ok
        ]
    summary["failures"] = failures
    return summary


def write_summary(path: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    """Write the summary JSON (atomically: temporary file + rename)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)
