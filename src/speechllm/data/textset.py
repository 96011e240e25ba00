"""The text corpus of `kind: text` stages: labelled text, no audio.

`speechllm data text-corpus --out DIR` writes, from ../shared:
- `slue-train.jsonl`: the SLUE-VoxPopuli fine-tune sentences of at most `MAX_WORDS` words
  (4,9xx of the 5,000; normalised text, gold entities);
- `vader-train.jsonl`: the VADER-rated snippets that are not reserved for evaluation
  (`test-ids.tsv`) and that a speaker can say as written (`importers.vader.sa_reference`: the transcript is
  the snippet in SLUE's normalised style), with their gold 3-class sentiment;
- `joint-text.jsonl`: a seeded sample of `joint` rows of each of the two, to be spoken by
  `speechllm data synth` for the short end-to-end (`kind: joint`) stage;
- `textset.json`: counts, and where each label came from.

The paper's synthetic labels fill what a source lacks (`synthetic=True`, the default), so that
every row can train the one-generation `all` answer: SLUE sentences get a sentiment from VADER's
lexicon, VADER snippets get entities from spaCy's en_core_web_sm (tagged on the snippet as
written, where case helps, then kept where the phrase occurs in the transcript). How good those
labellers are against human labels is measured in docs/annotation.md (spaCy NER F1 55 on SLUE dev
text, VADER sentiment macro F1 58 on the rated snippets). A model-made (LLM) labelling can replace
them with `speechllm annotate` on the same manifests.

Never read: SLUE-VoxPopuli dev and the reserved VADER snippets (tests check it).
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

from speechllm.data.manifest import write_manifest
from speechllm.data.normalize import WORD_PATTERN

MAX_WORDS = 60
"""Longer SLUE sentences (about 2% of them, up to 166 words) are left out: a batch is padded to
its longest example, and one such sentence makes a text step several times slower. The bench's
NER sentences have at most 60 words too."""


def build_text_corpus(
    out: str | Path,
    shared: Path | None = None,
    synthetic: bool = True,
    joint: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the text corpus into `out` (see the module docstring); returns its summary."""
    from speechllm.data.importers.files import shared_dir
    from speechllm.data.importers.slue import SLUE_TRAIN, import_slue_voxpopuli
    from speechllm.data.importers.vader import VADER_DIR, import_vader, sa_reference

    shared = shared if shared is not None else shared_dir()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    slue = [
        u
        for u in import_slue_voxpopuli(shared / SLUE_TRAIN, split="train")
        if len(u.text.split()) <= MAX_WORDS
    ]
    rated = import_vader(shared / VADER_DIR, split="train")
    snippets = [u for u in rated if sa_reference(u.text) is not None]
    vader = [dataclasses.replace(u, text=sa_reference(u.text) or "") for u in snippets]
    summary: dict[str, Any] = {
        "slue-train.jsonl": {"rows": len(slue), "entities": "gold (SLUE)", "sentiment": None},
        "vader-train.jsonl": {
            "rows": len(vader),
            "of_rated_train_snippets": len(rated),
            "sentiment": "gold (VADER human ratings, 3 classes)",
            "entities": None,
        },
    }
    if synthetic:
        from speechllm.data.cheap_labels import SpacyTagger, VaderScorer, package_versions

        scorer = VaderScorer()
        slue = [
            dataclasses.replace(u, sentiment=s, synthetic=(*u.synthetic, "sentiment"))
            for u, s in zip(slue, scorer.sentiments([u.text for u in slue]), strict=True)
        ]
        tagged = SpacyTagger().tag([u.text for u in snippets])
        vader = [
            dataclasses.replace(
                v, entities=_placed(ents, v.text), synthetic=(*v.synthetic, "entities")
            )
            for v, ents in zip(vader, tagged, strict=True)
        ]
        summary["slue-train.jsonl"]["sentiment"] = "synthetic (VADER lexicon, compound +-0.05)"
        summary["vader-train.jsonl"]["entities"] = "synthetic (spaCy en_core_web_sm)"
        summary["labellers"] = package_versions()
    for name, utts in (("slue-train.jsonl", slue), ("vader-train.jsonl", vader)):
        write_manifest(out / name, utts)
        summary[name]["sentiment_counts"] = _counts(u.sentiment for u in utts)
        summary[name]["with_entities"] = sum(bool(u.entities) for u in utts)
    # A SLUE sentence of at most 40 words: piper's clips stay well inside Whisper's 30 s window.
    spoken = []
    for name, utts in (("slue", [u for u in slue if len(u.text.split()) <= 40]), ("vader", vader)):
        rows = sorted(utts, key=lambda u: u.id)
        random.Random(f"speechllm-joint:{seed}:{name}").shuffle(rows)
        spoken += rows[:joint]
    write_manifest(out / "joint-text.jsonl", spoken)
    summary["joint-text.jsonl"] = {"rows": len(spoken), "seed": seed}
    (out / "textset.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _placed(entities: list[tuple[str, str]], transcript: str) -> list[tuple[str, str]]:
    """Entities tagged on a snippet as written, in the transcript's normalised words; those whose
    phrase is not a whole-word part of the transcript are dropped."""
    out = []
    padded = f" {transcript} "
    for tag, phrase in entities:
        words = " ".join(WORD_PATTERN.findall(phrase.replace("’", "'").lower()))
        if words and f" {words} " in padded:
            out.append((tag, words))
    return out


def _counts(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return counts


def reserved_ids(shared: Path) -> set[str]:
    """Ids of every utterance reserved for evaluation: SLUE-VoxPopuli dev and the VADER snippets
    of test-ids.tsv (for tests that training data holds none of them)."""
    from speechllm.data.importers.slue import SLUE_DEV, import_slue_voxpopuli
    from speechllm.data.importers.vader import VADER_DIR, vader_reserved_ids

    ids = {u.id for u in import_slue_voxpopuli(shared / SLUE_DEV)}
    return ids | (vader_reserved_ids(shared / VADER_DIR) or set())
