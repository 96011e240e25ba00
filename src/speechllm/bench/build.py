"""`build_bench`: speak the chosen texts with a seeded piper voice (`SeededPiperVoice`) or, for
an unseen-voice set, with voices reserved for evaluation in turn; write the manifests and hand
over to `report.py` for bench.json, the cheap labels and README.md."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from speechllm.bench.report import bench_info, readme, write_cheap_labels
from speechllm.bench.spec import (
    FORMAT,
    LIBRISPEECH_DIR,
    VOICE_PACKAGE,
    BenchSpec,
)
from speechllm.data.audio import WHISPER_WINDOW_SECONDS
from speechllm.data.importers.slue import SLUE_DEV
from speechllm.data.importers.vader import VADER_DIR, sa_reference
from speechllm.data.manifest import Utterance, write_manifest
from speechllm.data.tts import SeededPiperVoice, synthesize_manifest
from speechllm.data.voices import make_voice
from speechllm.errors import AudioError, ConfigError

_STAMP = ".speechllm-bench.json"


# ------------------------------------------------------------------ speech


@dataclasses.dataclass
class BenchResult:
    """The sets as written (audio paths absolute in memory, relative in the manifests)."""

    out: Path
    ner: list[Utterance]
    sa: list[Utterance]
    asr: list[Utterance]
    info: dict[str, Any]
    cheap: dict[str, Any] | None = None


def _versions() -> dict[str, str]:
    out = {}
    for dist in (VOICE_PACKAGE, "piper-tts", "onnxruntime"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _debian_versions(voices: Sequence[str]) -> dict[str, str]:
    """The Debian package version of each voice kind's program (flite, festival), so that a
    folder spoken by one version is not resumed by another."""
    out = {}
    for kind in sorted({v.partition(":")[0] for v in voices}):
        try:
            done = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", kind],
                capture_output=True,
                text=True,
                check=False,
            )
            out[kind] = done.stdout.strip() if done.returncode == 0 else "unknown"
        except OSError:  # not a Debian system
            out[kind] = "unknown"
    return out


def _check_stamp(out: Path, spec: BenchSpec, voice_info: dict[str, Any]) -> None:
    """Refuse to resume into a folder whose clips were spoken with another seed or voice, or
    that holds a test bench where a selection set is asked for (or the other way round)."""
    stamp = out / _STAMP
    mine: dict[str, Any] = {"format": FORMAT, "seed": spec.seed, "voice": voice_info}
    # Only when set: the stamps of earlier benches stay valid.
    if spec.after is not None:
        mine["after"] = list(spec.after)
    if spec.voices is not None:
        mine["voices"] = list(spec.voices)
    if stamp.is_file():
        try:
            theirs = json.loads(stamp.read_text())
        except (OSError, json.JSONDecodeError):
            theirs = None
        if theirs != mine:
            raise ConfigError(
                f"{out} holds a bench built with other settings ({stamp.name}: {theirs}; now "
                f"{mine}); its clips would not match. Use another --out or delete the folder"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(mine, indent=2) + "\n")


def _check_lengths(utts: Sequence[Utterance]) -> None:
    long = [u for u in utts if (u.duration or 0.0) > WHISPER_WINDOW_SECONDS]
    if long:
        u = long[0]
        raise AudioError(
            u.audio,
            f"{len(long)} clips are longer than Whisper's {WHISPER_WINDOW_SECONDS:g} s window "
            f"(e.g. {u.id}: {u.duration} s); lower NER_MAX_WORDS / SA_MAX_WORDS",
        )


def _copy_librispeech(shared: Path, out: Path) -> list[Utterance]:
    """The LibriSpeech clips of ../shared, copied to out/librispeech/ (kept if already equal)."""
    from speechllm.data.importers.librispeech import import_librispeech

    utts = import_librispeech(shared / LIBRISPEECH_DIR, split="test")
    dest = out / "librispeech"
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for u in utts:
        src = Path(u.audio or "")
        target = dest / src.name
        if not target.is_file() or target.read_bytes() != src.read_bytes():
            shutil.copyfile(src, target)
        copied.append(dataclasses.replace(u, audio=str(target)))
    return copied


def _speaker(
    spec: BenchSpec, voice: Any, progress: bool
) -> Callable[[list[Utterance], Path, int], list[Utterance]]:
    """How the clips are spoken: `voice` (a test's fake), the spec's reserved voices in turn
    (each loaded before the first clip, so a missing program fails at once), or the seeded piper
    voice."""
    if voice is None and spec.voices is not None:
        voices = spec.voices
        speakers = {n: make_voice(n, evaluation=True) for n in sorted(set(voices))}

        def by_turn(utts: list[Utterance], out: Path, seed: int) -> list[Utterance]:
            names = [voices[k % len(voices)] for k in range(len(utts))]
            return synthesize_manifest(
                utts,
                out,
                seed=seed,
                voice_names=names,
                load_voice=speakers.__getitem__,
                progress=progress,
                record=True,
            )

        return by_turn
    speaker = voice if voice is not None else SeededPiperVoice(spec.seed)

    def alone(utts: list[Utterance], out: Path, seed: int) -> list[Utterance]:
        return synthesize_manifest(utts, out, seed=seed, voice=speaker, progress=progress)

    return alone


def build_bench(
    out: str | Path,
    spec: BenchSpec = BenchSpec(),
    *,
    shared: Path | None = None,
    cheap_labels: bool = True,
    voice: Any = None,
    progress: bool = True,
) -> BenchResult:
    """Build (or resume) the bench in `out`; see the module docstring for what it holds.

    `shared` defaults to ../shared (`demo.shared_dir`). `voice` defaults to the spec's voices
    in turn, or else `SeededPiperVoice` (tests pass a fake). With `cheap_labels` the `labels`
    extra must be installed; that is checked before any speech is made. Writes ner.jsonl,
    sa.jsonl, asr.jsonl, the WAVs, bench.json and README.md (and the cheap-label files).
    """
    from speechllm.data.importers.files import shared_dir
    from speechllm.data.importers.slue import import_slue_voxpopuli
    from speechllm.data.importers.vader import import_vader

    shown = Path(out)  # as the user wrote it: what bench.json and README.md show
    out = shown.absolute()
    shared = shared if shared is not None else shared_dir()
    if cheap_labels:
        from speechllm.data.cheap_labels import check_installed

        check_installed()
    dev = import_slue_voxpopuli(shared / SLUE_DEV)
    rated = import_vader(shared / VADER_DIR, split="test")
    # Piper speaks the snippet as written (its punctuation shapes the prosody); the manifest
    # gets the transcript once the clip exists.
    eligible = [u for u in rated if sa_reference(u.text) is not None]
    ner_text, ner_skipped, sa_text = spec.selection(dev, eligible)

    # The voices are loaded first: a mistyped name or a missing program fails before anything
    # is written, so the folder's stamp never names voices that cannot speak.
    speak = _speaker(spec, voice, progress)
    # Only now, with the selection known to be possible, is anything written.
    if voice is not None:
        voice_info: dict[str, Any] = {"custom voice": type(voice).__name__}
    elif spec.voices is not None:
        voice_info = {
            "voices": list(spec.voices),
            "in turn": "the i-th clip of a set: voice i mod n",
            "versions": _debian_versions(spec.voices),
        }
    else:
        voice_info = {"package": VOICE_PACKAGE, "versions": _versions()}
    _check_stamp(out, spec, voice_info)

    # SA clips draw their prosody with seed + 1, as `make demo` speaks its second set: the two
    # sets' draws are independent by construction, not only because their ids differ.
    ner = speak(ner_text, out / "ner", spec.seed)
    sa_spoken = speak(sa_text, out / "sa", spec.seed + 1)
    sa = [dataclasses.replace(u, text=sa_reference(u.text) or "") for u in sa_spoken]
    _check_lengths(ner + sa)
    # The four real clips belong to the test bench only (`BenchSpec.real_clips`).
    libri = _copy_librispeech(shared, out) if spec.real_clips else []
    # Every clip with whatever gold labels it has: one `evaluate --tasks all` over asr.jsonl
    # decodes ASR for all, NER where there are entities, SA where there is a sentiment, and so
    # gives WER, NER F1, SA F1 and the SLUE score together.
    asr = ner + sa + libri

    write_manifest(out / "ner.jsonl", ner)
    write_manifest(out / "sa.jsonl", sa)
    write_manifest(out / "asr.jsonl", asr)

    cheap = None
    if cheap_labels:
        cheap = write_cheap_labels(out, ner, sa, dev, rated, shared)

    info = bench_info(out, shown, spec, voice_info, ner, ner_skipped, sa, eligible, libri, cheap)
    (out / "bench.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(readme(shown, spec, info, cheap))
    return BenchResult(out=out, ner=ner, sa=sa, asr=asr, info=info, cheap=cheap)
