"""Importers: SLUE-VoxPopuli tsv -> labelled utterances, LibriSpeech folder -> audio utterances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechllm.errors import AudioError, ManifestError
from speechllm.importers import import_librispeech, import_slue_voxpopuli
from speechllm.labels import SLUE_TAGS
from speechllm.manifest import read_manifest, write_manifest

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
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.flac", np.zeros(8000, np.float32), 16000)
    sf.write(audio / "b.ogg", np.zeros(24000, np.float32), 16000)
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
    sf.write(chapter / "1-2-0000.flac", np.zeros(16000, np.float32), 16000)
    (utt,) = import_librispeech(tmp_path, split="dev")
    assert (utt.text, utt.duration, utt.split) == ("hello there", 1.0, "dev")
