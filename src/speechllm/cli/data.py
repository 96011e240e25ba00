"""`speechllm data ...` (import corpora, speak text, the text corpus) and `speechllm bench build`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from speechllm.cli.common import bench_app, data_app, err, fail, import_app
from speechllm.errors import SpeechLLMError


@import_app.command("slue-voxpopuli")
def import_slue(
    tsv: Path,
    out: Annotated[Path, typer.Option(help="Manifest to write (JSONL).")],
    audio_dir: Annotated[
        Path | None, typer.Option(help="Folder of <id>.flac; omit for a text-only manifest.")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Override the split recorded per line.")] = None,
    limit: Annotated[int | None, typer.Option(help="Keep only the first N rows.")] = None,
) -> None:
    """SLUE-VoxPopuli tsv -> manifest with (combined tag, phrase) entities."""
    from speechllm.data.importers.slue import import_slue_voxpopuli
    from speechllm.data.manifest import write_manifest

    try:
        utts = import_slue_voxpopuli(tsv, audio_dir=audio_dir, split=split)[:limit]
        write_manifest(out, utts)
    except SpeechLLMError as exc:
        fail(exc)
    err.print(f"wrote {len(utts)} utterances to {out}")


@import_app.command("slue-voxceleb")
def import_voxceleb_cmd(
    tsv: Path,
    out: Annotated[Path, typer.Option(help="Manifest to write (JSONL).")],
    audio_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder of segmented <id>.flac|.wav clips; omit for a text-only manifest."
        ),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Override the split recorded per line.")] = None,
    limit: Annotated[int | None, typer.Option(help="Keep only the first N rows.")] = None,
) -> None:
    """SLUE-VoxCeleb tsv -> manifest with sentiment labels (<mixed>/Disagreement rows left out)."""
    from speechllm.data.importers.slue import import_slue_voxceleb
    from speechllm.data.manifest import write_manifest

    skipped: list[str] = []
    try:
        utts = import_slue_voxceleb(tsv, audio_dir=audio_dir, split=split, skipped=skipped)[:limit]
        write_manifest(out, utts)
    except SpeechLLMError as exc:
        fail(exc)
    err.print(
        f"wrote {len(utts)} utterances to {out} "
        f"(left out {len(skipped)} <mixed>/Disagreement rows, as SLUE does)"
    )


@import_app.command("vader")
def import_vader_cmd(
    path: Path,
    out: Annotated[Path, typer.Option(help="Text-only manifest to write (JSONL).")],
    split: Annotated[
        str,
        typer.Option(
            help="Split recorded on every line. Where test-ids.tsv lies beside the files, 'test' "
            "keeps only the snippets it reserves for evaluation and any other split only the rest."
        ),
    ] = "train",
    limit: Annotated[int | None, typer.Option(help="Keep only the first N utterances.")] = None,
) -> None:
    """VADER human ratings (*_GroundTruth.txt file or folder) -> text-only sentiment manifest.

    Mean rating >= 1 is Positive, <= -1 Negative, within +-0.5 Neutral; others are left out.
    """
    from speechllm.data.importers.vader import import_vader
    from speechllm.data.manifest import write_manifest

    skipped: list[str] = []
    try:
        utts = import_vader(path, split=split, skipped=skipped)[:limit]
        write_manifest(out, utts)
    except SpeechLLMError as exc:
        fail(exc)
    counts = {s: sum(u.sentiment == s for u in utts) for s in ("Negative", "Neutral", "Positive")}
    err.print(
        f"wrote {len(utts)} utterances to {out} "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())}; "
        f"left out {len(skipped)} ratings between the classes)"
    )


@data_app.command("text-corpus")
def text_corpus(
    out: Annotated[Path, typer.Option(help="Folder for the manifests.")] = Path("work/text"),
    synthetic: Annotated[
        bool, typer.Option(help="Fill labels a source lacks with spaCy / VADER (synthetic).")
    ] = True,
) -> None:
    """Labelled text for `kind: text` training stages (SLUE fine-tune + unreserved VADER)."""
    from speechllm.data.textset import build_text_corpus

    try:
        summary = build_text_corpus(out, synthetic=synthetic)
    except SpeechLLMError as exc:
        fail(exc)
    for name, info in summary.items():
        if name.endswith(".jsonl"):
            counts = f", sentiment {info['sentiment_counts']}" if "sentiment_counts" in info else ""
            err.print(f"{out / name}: {info['rows']} rows{counts}")


@import_app.command("librispeech")
def import_librispeech_cmd(
    root: Path,
    out: Annotated[Path, typer.Option(help="Manifest to write (JSONL).")],
) -> None:
    """A LibriSpeech folder (speaker/chapter/*.flac + *.trans.txt) -> manifest."""
    from speechllm.data.importers.librispeech import import_librispeech
    from speechllm.data.manifest import write_manifest

    try:
        utts = import_librispeech(root)
        write_manifest(out, utts)
    except SpeechLLMError as exc:
        fail(exc)
    err.print(f"wrote {len(utts)} utterances to {out}")


@import_app.command("wordnet")
def import_wordnet_cmd(
    out: Annotated[Path, typer.Option(help="Text-only manifest to write (JSONL).")],
    folder: Annotated[
        Path | None,
        typer.Option(
            help="WordNet 3.0's database folder (data.noun, data.verb, ...); default: where "
            "Debian's wordnet-base puts it."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="A seeded sample of N examples.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --limit sample.")] = 0,
) -> None:
    """WordNet's usage examples -> text-only manifest of general English (no labels), to speak
    with `data synth` (Debian: apt-get install wordnet-base)."""
    from speechllm.data.importers.wordnet import WORDNET_DIR, wordnet_examples
    from speechllm.data.manifest import write_manifest

    try:
        utts = wordnet_examples(folder or WORDNET_DIR, limit, seed)
        write_manifest(out, utts)
    except SpeechLLMError as exc:
        fail(exc)
    words = sum(len(u.text.split()) for u in utts)
    err.print(f"wrote {len(utts)} utterances ({words} words) to {out}")


@data_app.command("synth")
def data_synth(
    manifest: Path,
    out: Annotated[Path, typer.Option(help="Folder for wav/ and the spoken manifest.")],
    seed: Annotated[
        int, typer.Option(help="Seed of the per-utterance prosody variation and of piper's noise.")
    ] = 0,
    limit: Annotated[int | None, typer.Option(help="Speak only the first N utterances.")] = None,
    voice: Annotated[
        str,
        typer.Option(
            help="piper (the packaged joe voice), espeak:<accent>[+<variant>] (e.g. "
            "espeak:en-gb-scotland+f3), espeak:all, festival:ked, or training-voices (the "
            "preset mix of the 10-hour recipe: each utterance's voice drawn from seed and id); "
            "a comma list is taken in turn. flite:kal16,flite:awb,flite:rms,flite:slt and "
            "festival's kal/slt are reserved for evaluation (--evaluation)."
        ),
    ] = "piper",
    evaluation: Annotated[
        bool,
        typer.Option(help="An evaluation set: allow the voices reserved for evaluation."),
    ] = False,
    augment: Annotated[
        bool,
        typer.Option(
            help="Perturb each new clip (tempo, pitch, reverberation, noise, telephone band; "
            "drawn from seed and id; data/augment.py)."
        ),
    ] = False,
) -> None:
    """Speak a text-only manifest -> 16 kHz WAVs + `<out>/manifest.jsonl` + `<out>/voices.tsv`
    (each clip's voice and augmentation)."""
    from speechllm.data.manifest import read_manifest, write_manifest
    from speechllm.data.tts import synthesize_manifest
    from speechllm.data.voices import assign_voices, check_voices, expand, make_voice

    try:
        utts = read_manifest(manifest)[:limit]
        check_voices(expand(voice), evaluation)
        names = assign_voices(voice, [u.id for u in utts], seed)
        # Every voice is loaded before the first clip: a missing program fails at once.
        # piper's noise seeded per clip: a rerun (or a resumed run) speaks the same clips.
        speakers = {n: make_voice(n, evaluation=evaluation, seed=seed) for n in sorted(set(names))}
        augmenter = None
        if augment:
            from speechllm.data.augment import Augmenter

            augmenter = Augmenter(out / "rirs")
        spoken = synthesize_manifest(
            utts,
            out,
            seed=seed,
            voice_names=names,
            load_voice=speakers.__getitem__,
            augment=augmenter,
            record=True,
        )
        write_manifest(out / "manifest.jsonl", spoken)
    except SpeechLLMError as exc:
        fail(exc)
    err.print(f"wrote {len(spoken)} utterances to {out / 'manifest.jsonl'} (voices: voices.tsv)")


@bench_app.command("build")
def bench_build(
    out: Annotated[Path, typer.Option(help="Folder for the manifests, WAVs and bench.json.")],
    # Defaults mirror bench.DEFAULT_NER / DEFAULT_SA / DEFAULT_SEED (literals here so that the
    # CLI starts without importing the TTS stack; tests/test_bench.py checks they agree).
    ner: Annotated[int, typer.Option(help="SLUE-VoxPopuli dev utterances (the first N).")] = 100,
    sa: Annotated[int, typer.Option(help="VADER snippets, stratified by sentiment.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the SA sample and of the speech.")] = 0,
    cheap_labels: Annotated[
        bool,
        typer.Option(help="Also write the spaCy/VADER label twin (needs the labels extra)."),
    ] = True,
    after: Annotated[
        str | None,
        typer.Option(
            help="NER,SA: build a selection set disjoint from the bench of these sizes (and this "
            "seed), without LibriSpeech clips: for choosing checkpoints, so the bench stays a "
            "test set. E.g. --ner 200 --sa 120 --after 100,60."
        ),
    ] = None,
    voices: Annotated[
        str | None,
        typer.Option(
            help="Speak the clips with these voices in turn instead of piper: voices reserved "
            "for evaluation (flite:all = flite:kal16,flite:awb,flite:rms,flite:slt; festival's "
            "kal and slt), for a test on voices no training heard; no LibriSpeech clips. E.g. "
            "--out work/unseen --ner 40 --sa 0 --voices flite:all."
        ),
    ] = None,
) -> None:
    """Build (or resume) the offline benchmark: ner.jsonl, sa.jsonl, asr.jsonl, WAVs, bench.json."""
    import time

    from speechllm.bench.build import build_bench
    from speechllm.bench.spec import BenchSpec

    start = time.monotonic()
    try:
        held = None
        if after is not None:
            parts = after.split(",")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"--after takes two sizes, NER,SA (e.g. 100,60); got {after!r}")
            held = (int(parts[0]), int(parts[1]))
        named = tuple(voices.split(",")) if voices is not None else None
        spec = BenchSpec(ner=ner, sa=sa, seed=seed, after=held, voices=named)
        result = build_bench(out, spec, cheap_labels=cheap_labels)
    except (SpeechLLMError, ValueError, OSError) as exc:
        fail(exc)
    sizes = result.info["sizes"]
    err.print(
        f"bench in {out}: NER {sizes['ner']}, SA {sizes['sa']}, ASR {sizes['asr']} clips "
        f"({time.monotonic() - start:.0f} s); see {out / 'README.md'}"
    )
    if result.cheap is not None:
        # The agreement figures; `inputs` (package versions, source digests) stays in the file.
        full = {k: v for k, v in result.cheap["full"].items() if k != "inputs"}
        print(json.dumps({"bench": result.cheap["bench"], "full": full}, indent=2))
