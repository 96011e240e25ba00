"""Importers: SLUE-VoxPopuli / SLUE-VoxCeleb tsv -> labelled utterances, LibriSpeech folder ->
audio utterances, VADER ratings -> text-only sentiment utterances; and their CLI commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clips import write_silence
from speechllm.cli import app
from speechllm.data.importers.librispeech import import_librispeech
from speechllm.data.importers.slue import import_slue_voxceleb, import_slue_voxpopuli
from speechllm.data.importers.vader import import_vader, vader_reserved_ids, vader_sentiment
from speechllm.data.manifest import read_manifest, write_manifest
from speechllm.errors import AudioError, ManifestError
from speechllm.labels import SLUE_TAGS
from tiny import absent

HEADER = "id\traw_text\tnormalized_text\tspeaker_id\tsplit\traw_ner\tnormalized_ner\n"


def slue_tsv(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """rows: (id, normalized_text, split, normalized_ner)."""
    lines = [f"{i}\t{t.upper()}\t{t}\tNone\t{s}\t{ner}\t{ner}\n" for i, t, s, ner in rows]
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


def test_slue_dev_counts(shared: Path) -> None:
    """The shared README: dev holds 1819 combined entities in 946 utterances."""
    utts = import_slue_voxpopuli(shared / "data/slue-voxpopuli/slue-voxpopuli_dev.tsv")
    assert len(utts) == 1753
    assert {u.split for u in utts} == {"dev"}
    assert all(u.audio is None and u.duration is None for u in utts)
    assert all(u.entities is not None for u in utts)  # SLUE labels every row
    assert sum(len(u.entities or []) for u in utts) == 1819
    # 946 rows carry spans; 3 of them hold only tags SLUE drops (FAC, EVENT, ...) and so map to [].
    rows = (shared / "data/slue-voxpopuli/slue-voxpopuli_dev.tsv").read_text().splitlines()[1:]
    assert sum(r.rsplit("\t", 1)[1] != "None" for r in rows) == 946
    assert sum(bool(u.entities) for u in utts) == 943
    assert {t for u in utts for t, _ in u.entities or []} == set(SLUE_TAGS)


def test_slue_spot_check(shared: Path) -> None:
    utts = import_slue_voxpopuli(shared / "data/slue-voxpopuli/slue-voxpopuli_dev.tsv")
    by_id = {u.id: u for u in utts}
    # normalized_ner [['LOC', 155, 6]]: LOC -> PLACE; its offsets index normalized_text (the raw
    # text's span is at 156, so using the raw offsets would cut the word).
    u = by_id["20150518-0900-PLENARY-15-en_20150518-18:48:27_1"]
    assert u.text.startswith("poverty war and also the lack of freedom")
    assert u.entities == [("PLACE", "europe")]
    u = by_id["20150518-0900-PLENARY-15-en_20150518-18:48:27_11"]
    assert u.entities == [("QUANT", "thousands of euros")]  # MONEY -> QUANT
    assert by_id["20180530-0900-PLENARY-26-en_20180530-20:01:52_0"].entities == []


def test_slue_fine_tune_is_train(shared: Path) -> None:
    utts = import_slue_voxpopuli(shared / "data/slue-voxpopuli/slue-voxpopuli_fine-tune.tsv")
    assert len(utts) == 5000 and {u.split for u in utts} == {"train"}


def test_slue_mapping_and_dropped_tags(tmp_path: Path) -> None:
    text = "in paris on monday the louvre and ten people"
    ner = "[['GPE', 3, 5], ['DATE', 12, 6], ['FAC', 19, 10], ['CARDINAL', 34, 3]]"
    tsv = slue_tsv(
        tmp_path / "t.tsv", [("a", text, "fine-tune", ner), ("b", "nothing", "dev", "None")]
    )
    a, b = import_slue_voxpopuli(tsv)
    assert a.entities == [("PLACE", "paris"), ("WHEN", "monday"), ("QUANT", "ten")]
    assert (a.split, b.split, b.entities) == ("train", "dev", [])
    assert {u.split for u in import_slue_voxpopuli(tsv, split="test")} == {"test"}


def test_slue_round_trips_through_a_manifest(tmp_path: Path) -> None:
    tsv = slue_tsv(tmp_path / "t.tsv", [("a", "to paris", "dev", "[['GPE', 3, 5]]")])
    write_manifest(tmp_path / "m.jsonl", import_slue_voxpopuli(tsv))
    assert read_manifest(tmp_path / "m.jsonl") == import_slue_voxpopuli(tsv)


def test_slue_audio_dir(tmp_path: Path) -> None:
    tsv = slue_tsv(tmp_path / "t.tsv", [("a", "hello", "dev", "None"), ("b", "bye", "dev", "None")])
    audio = write_silence(tmp_path / "audio", {"a.flac": 0.5, "b.ogg": 1.5})
    a, b = import_slue_voxpopuli(tsv, audio_dir=audio)
    assert (a.audio, a.duration) == (str(audio / "a.flac"), 0.5)
    assert (b.audio, b.duration) == (str(audio / "b.ogg"), 1.5)
    (audio / "b.ogg").unlink()
    with pytest.raises(AudioError, match=r"no audio for 1 of 2 utterances .*: b$"):
        import_slue_voxpopuli(tsv, audio_dir=audio)


def test_slue_bad_rows_are_reported(tmp_path: Path) -> None:
    tsv = slue_tsv(
        tmp_path / "t.tsv",
        [
            ("a", "short", "dev", "[['GPE', 3, 50]]"),
            ("b", "text", "dev", "[['NOPE', 0, 4]]"),
            ("c", "text", "dev", "__import__('os').system('echo hi')"),
        ],
    )
    with pytest.raises(ManifestError) as info:
        import_slue_voxpopuli(tsv)
    message = str(info.value)
    assert f"{tsv}:2: normalized_ner: span" in message and "outside" in message
    assert f"{tsv}:3: normalized_ner: unknown OntoNotes tag 'NOPE'" in message
    assert f"{tsv}:4: normalized_ner: not a Python literal" in message
    (tmp_path / "x.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ManifestError, match="not a SLUE-VoxPopuli tsv"):
        import_slue_voxpopuli(tmp_path / "x.tsv")


def test_librispeech_sample(shared: Path) -> None:
    """Four LibriSpeech test-clean clips (CC BY 4.0, Panayotov et al. 2015)."""
    utts = import_librispeech(shared / "data/librispeech-sample")
    assert [u.id for u in utts] == [
        "1089-134686-0000",
        "1089-134686-0001",
        "1089-134691-0000",
        "1089-134691-0001",
    ]
    assert utts[2].text == "he could wait no longer"
    assert utts[1].text == "stuff it into you his belly counselled him"
    assert all(u.split == "test" and u.entities is None and u.sentiment is None for u in utts)
    assert all(Path(u.audio or "").is_file() for u in utts)
    assert sum(u.duration or 0 for u in utts) == pytest.approx(21.2, abs=0.5)
    assert utts[2].duration == pytest.approx(2.085, abs=1e-3)


def test_librispeech_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no \*\.trans\.txt"):
        import_librispeech(tmp_path)
    chapter = tmp_path / "1" / "2"
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 HELLO THERE\n")
    with pytest.raises(ManifestError, match=r"1-2.trans.txt:1: audio file not found"):
        import_librispeech(tmp_path)
    write_silence(chapter, {"1-2-0000.flac": 1.0})
    (utt,) = import_librispeech(tmp_path, split="dev")
    assert (utt.text, utt.duration, utt.split) == ("hello there", 1.0, "dev")


# --- SLUE-VoxCeleb ----------------------------------------------------------------------------

VOXCELEB_HEADER = "id\tnormalized_text\tspeaker_id\tsplit\tsentiment\tstart_second\tend_second\n"


def voxceleb_tsv(path: Path, rows: list[tuple[str, str, str, str, str, str]]) -> Path:
    """rows: (id, normalized_text, split, sentiment, start_second, end_second)."""
    lines = [f"{i}\t{t}\tid10001\t{sp}\t{se}\t{a}\t{b}\n" for i, t, sp, se, a, b in rows]
    path.write_text(VOXCELEB_HEADER + "".join(lines), encoding="utf-8")
    return path


VOXCELEB_ROWS = [
    ("id10001_a_00001", "i loved every minute of it", "fine-tune", "Positive", "0.0", "1.5"),
    ("id10001_a_00002", "well it depends", "fine-tune", "<mixed>", "1.5", "3.0"),
    ("id10001_b_00001", "that was awful", "dev", "Negative", "2.25", "3.0"),
    ("id10001_b_00002", "we met on tuesday", "dev", "Disagreement", "0", "1"),
    ("id10001_c_00001", "it is a film", "dev", "Neutral", "0", "0.5"),
]


def test_voxceleb_drops_mixed_and_disagreement(tmp_path: Path) -> None:
    tsv = voxceleb_tsv(tmp_path / "v.tsv", VOXCELEB_ROWS)
    skipped: list[str] = []
    utts = import_slue_voxceleb(tsv, skipped=skipped)
    assert [(u.id, u.text, u.sentiment, u.split) for u in utts] == [
        ("id10001_a_00001", "i loved every minute of it", "Positive", "train"),
        ("id10001_b_00001", "that was awful", "Negative", "dev"),
        ("id10001_c_00001", "it is a film", "Neutral", "dev"),
    ]
    assert skipped == ["id10001_a_00002", "id10001_b_00002"]
    assert all(u.entities is None and u.audio is None and u.duration is None for u in utts)
    assert {u.split for u in import_slue_voxceleb(tsv, split="test")} == {"test"}
    write_manifest(tmp_path / "m.jsonl", utts)
    assert read_manifest(tmp_path / "m.jsonl") == utts


def test_voxceleb_blind_tsv_is_unlabelled(tmp_path: Path) -> None:
    tsv = tmp_path / "blind.tsv"
    tsv.write_text("id\tnormalized_text\tsplit\nx1\thello there\ttest\n", encoding="utf-8")
    (u,) = import_slue_voxceleb(tsv)
    assert (u.id, u.text, u.sentiment, u.split) == ("x1", "hello there", None, "test")


def test_voxceleb_audio_dir(tmp_path: Path) -> None:
    tsv = voxceleb_tsv(tmp_path / "v.tsv", VOXCELEB_ROWS)
    seconds = {"id10001_a_00001.flac": 1.5, "id10001_b_00001.wav": 0.75}
    audio = write_silence(tmp_path / "audio", {**seconds, "id10001_c_00001.flac": 0.5})
    a, b, c = import_slue_voxceleb(tsv, audio_dir=audio)
    assert c.duration == 0.5
    assert (a.audio, a.duration) == (str(audio / "id10001_a_00001.flac"), 1.5)
    assert (b.audio, b.duration) == (str(audio / "id10001_b_00001.wav"), 0.75)
    # The unsegmented recording (SLUE's <split>_raw/) is much longer than the 0.5 s segment.
    write_silence(audio, {"id10001_c_00001.flac": 8.0})
    with pytest.raises(AudioError, match=r"1 of 3 clips are longer than their segment.*_raw"):
        import_slue_voxceleb(tsv, audio_dir=audio)
    (audio / "id10001_c_00001.flac").unlink()
    with pytest.raises(AudioError, match=r"no audio for 1 of 3 utterances .*: id10001_c_00001$"):
        import_slue_voxceleb(tsv, audio_dir=audio)


def test_voxceleb_bad_rows_are_reported(tmp_path: Path) -> None:
    tsv = voxceleb_tsv(
        tmp_path / "v.tsv",
        [
            ("a", "fine", "dev", "Positive", "0", "1"),
            ("b", "lower case label", "dev", "positive", "0", "1"),
            ("c", "no label", "dev", "", "0", "1"),
            ("d", "bad times", "dev", "Neutral", "one", "2"),
            ("e", "backwards", "dev", "Neutral", "3", "2"),
            ("a", "again", "dev", "Neutral", "0", "1"),
        ],
    )
    with tsv.open("a", encoding="utf-8") as f:
        f.write("f\ttoo few columns\n")
    with pytest.raises(ManifestError) as info:
        import_slue_voxceleb(tsv)
    message = str(info.value)
    assert f"{tsv}:3: sentiment must be one of Negative, Neutral, Positive" in message
    assert "got 'positive'" in message
    assert f"{tsv}:4: sentiment must be one of" in message and "got ''" in message
    assert f"{tsv}:5: start_second/end_second must be numbers, got 'one', '2'" in message
    assert f"{tsv}:6: expected 0 <= start_second < end_second, got 3.0, 2.0" in message
    assert f"{tsv}:7: duplicate id 'a' (first on line 2)" in message
    assert f"{tsv}:8: 2 columns, the header has 7" in message
    (tmp_path / "x.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ManifestError, match=r"x\.tsv:1: not a SLUE-VoxCeleb tsv: no column"):
        import_slue_voxceleb(tmp_path / "x.tsv")
    with pytest.raises(ManifestError, match="not found"):
        import_slue_voxceleb(tmp_path / "nope.tsv")


# --- VADER ratings -----------------------------------------------------------------------------


def vader_file(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """rows: (id, rating, text), written as the real files are: tab-separated, CRLF, no header."""
    path.write_bytes("\r\n".join("\t".join(r) for r in rows).encode("utf-8"))
    return path


def test_vader_mapping_thresholds() -> None:
    # ../shared/README.md: >= 1.0 Positive, <= -1.0 Negative, |r| <= 0.5 Neutral, else left out.
    assert [vader_sentiment(r) for r in (4.0, 1.0, 0.99, 0.5, 0.0, -0.5, -0.51, -1.0, -4.0)] == [
        "Positive",
        "Positive",
        None,
        "Neutral",
        "Neutral",
        "Neutral",
        None,
        "Negative",
        "Negative",
    ]


def test_vader_small_file(tmp_path: Path) -> None:
    f = vader_file(
        tmp_path / "tweets_GroundTruth.txt",
        [
            ("1", "2.726315789", "So lucky.  Love   you all!"),
            ("2", "0.75", "Another phone interview."),
            ("3", "-0.2", "The bus was late &amp; it rained."),
            ("4", "-1.0", "Worst. Day. Ever. :("),
            ("5", "0.5", "It is Tuesday"),
        ],
    )
    skipped: list[str] = []
    utts = import_vader(f, skipped=skipped)
    assert [(u.id, u.text, u.sentiment) for u in utts] == [
        ("vader-tweets-1", "So lucky. Love you all!", "Positive"),
        ("vader-tweets-3", "The bus was late & it rained.", "Neutral"),
        ("vader-tweets-4", "Worst. Day. Ever. :(", "Negative"),
        ("vader-tweets-5", "It is Tuesday", "Neutral"),
    ]
    assert skipped == ["vader-tweets-2"]
    assert all(u.audio is None and u.entities is None and u.split == "train" for u in utts)
    write_manifest(tmp_path / "m.jsonl", utts)
    assert read_manifest(tmp_path / "m.jsonl") == utts
    # A folder: every *_GroundTruth.txt in name order, ids kept apart by corpus.
    vader_file(tmp_path / "amazonReviewSnippets_GroundTruth.txt", [("1_1", "-2", "Broke at once.")])
    ids = [u.id for u in import_vader(tmp_path, split="dev")]
    assert ids[0] == "vader-amazon-1_1" and ids[1:] == [u.id for u in utts]


def test_vader_bad_rows_are_reported(tmp_path: Path) -> None:
    f = vader_file(
        tmp_path / "x_GroundTruth.txt",
        [("1", "1.5", "fine"), ("2", "high", "text"), ("3", "7", "too high"), ("1", "1", "again")],
    )
    with f.open("a", encoding="utf-8") as fh:
        fh.write("\r\n4\t1.0\r\n5\t-2\t \r\n")
    with pytest.raises(ManifestError) as info:
        import_vader(f)
    message = str(info.value)
    assert f"{f}:2: rating must be a number, got 'high'" in message
    assert f"{f}:3: rating must lie in [-4, 4], got 7.0" in message
    assert f"{f}:4: duplicate id '1' (first on line 1)" in message
    assert f"{f}:5: expected 3 tab-separated fields (id, rating, text), got 2" in message
    assert f"{f}:6: empty text" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"no \*_GroundTruth\.txt"):
        import_vader(tmp_path / "empty")
    with pytest.raises(ManifestError, match="not found"):
        import_vader(tmp_path / "nope.txt")


def test_vader_shared_ratings(shared: Path) -> None:
    """The real files import with the class balance the shared README states per corpus,
    split by test-ids.tsv into disjoint training and reserved (evaluation) parts."""
    train = import_vader(shared / "data/vader-ratings")
    test = import_vader(shared / "data/vader-ratings", split="test")
    assert not {u.id for u in train} & {u.id for u in test}
    assert {u.id for u in test} == vader_reserved_ids(shared / "data/vader-ratings")
    assert all(u.split == "test" for u in test) and all(u.split == "train" for u in train)
    utts = train + test
    want = {
        "movie": (4575, 562, 4598),
        "amazon": (941, 765, 1514),
        "nyt": (996, 2402, 558),
        "tweets": (837, 838, 1830),
    }
    for corpus, counts in want.items():
        mine = [u.sentiment for u in utts if u.id.startswith(f"vader-{corpus}-")]
        assert tuple(mine.count(s) for s in ("Negative", "Neutral", "Positive")) == counts, corpus
    assert len({u.id for u in utts}) == len(utts) == sum(sum(c) for c in want.values())
    assert not any("&amp;" in u.text for u in utts)


# --- CLI -----------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_imports_voxceleb_and_vader(tmp_path: Path) -> None:
    tsv = voxceleb_tsv(tmp_path / "v.tsv", VOXCELEB_ROWS)
    out = tmp_path / "vox.jsonl"
    result = runner.invoke(app, ["data", "import", "slue-voxceleb", str(tsv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "wrote 3 utterances" in said and "left out 2 <mixed>/Disagreement rows" in said
    assert [u.sentiment for u in read_manifest(out)] == ["Positive", "Negative", "Neutral"]

    f = vader_file(tmp_path / "tweets_GroundTruth.txt", [("1", "2", "great"), ("2", "-3", "bad")])
    out = tmp_path / "vader.jsonl"
    result = runner.invoke(
        app, ["data", "import", "vader", str(f), "--out", str(out), "--split", "dev"]
    )
    assert result.exit_code == 0, result.output
    assert [(u.sentiment, u.split) for u in read_manifest(out)] == [
        ("Positive", "dev"),
        ("Negative", "dev"),
    ]

    result = runner.invoke(app, ["data", "import", "vader", str(tmp_path / "no"), "--out", "x"])
    assert result.exit_code == 2 and "not found" in result.output
    assert "Traceback" not in result.output


# Two synsets in WordNet's data-file format (wndb(5WN)): the licence header's lines start with
# two spaces; a synset line's gloss follows " | ", its usage examples are the quoted parts.
WORDNET_DATA = (
    '  1 This software and database is being provided to you, the LICENSEE, "AS IS"\n'
    "00002724 29 v 01 choke 0 002 @ 00001740 v 0000 01 + 02 00 | breathe with great "
    'difficulty; "She choked with emotion when she spoke about her deceased husband"\n'
    "00003553 03 n 02 whole 0 unit 0 000 | an assemblage of parts; "
    '"how big is that part compared to the whole?"; "the team is a unit"; '
    '"the USA spent 3 billion on it"; "the team is a unit"\n'
)


def test_wordnet_usage_examples_become_sayable_transcripts(tmp_path: Path) -> None:
    from speechllm.data.importers.wordnet import wordnet_examples

    (tmp_path / "data.noun").write_text(WORDNET_DATA, encoding="latin-1")
    utts = wordnet_examples(tmp_path)
    # Lower case without punctuation as SLUE writes it; digits and capitals-only words left
    # out (a TTS voice may spell them), and each text once.
    assert [(u.id, u.text) for u in utts] == [
        (
            "wordnet-noun-00002724-0",
            "she choked with emotion when she spoke about her deceased husband",
        ),
        ("wordnet-noun-00003553-0", "how big is that part compared to the whole"),
        ("wordnet-noun-00003553-1", "the team is a unit"),
    ]
    assert all(u.audio is None and u.entities is None and u.sentiment is None for u in utts)
    sample = wordnet_examples(tmp_path, limit=2, seed=1)
    assert len(sample) == 2 and all(u in utts for u in sample)
    assert sample == wordnet_examples(tmp_path, limit=2, seed=1)
    with pytest.raises(ManifestError, match="wordnet-base"):
        wordnet_examples(tmp_path / "missing")


def test_wordnet_import_of_the_installed_database(tmp_path: Path) -> None:
    from speechllm.data.importers.wordnet import WORDNET_DIR

    if not (WORDNET_DIR / "data.noun").is_file():
        absent("wordnet-base is not installed (make venv installs it with apt-get as root)")
    out = tmp_path / "wordnet.jsonl"
    result = CliRunner().invoke(
        app, ["data", "import", "wordnet", "--out", str(out), "--limit", "300"]
    )
    assert result.exit_code == 0, result.output
    utts = read_manifest(out, require_audio=False)
    assert len(utts) == 300 and len({u.text for u in utts}) == 300
    assert all(5 <= len(u.text.split()) <= 30 and u.text == u.text.lower() for u in utts)
