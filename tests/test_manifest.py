"""Manifests: round trip, path handling, and one clear report of every problem in a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechllm.data.manifest import Utterance, read_manifest, write_manifest
from speechllm.errors import ManifestError

GOOD = {
    "id": "u1",
    "audio": "wav/u1.wav",
    "duration": 2.5,
    "text": "in strasbourg today",
    "entities": [["PLACE", "strasbourg"], ["WHEN", "today"]],
    "sentiment": "Neutral",
    "split": "dev",
}


def sample_utts(root: Path) -> list[Utterance]:
    return [
        Utterance(
            "a", str(root / "wav" / "a.wav"), 1.25, "hello", [("PLACE", "paris")], "Positive"
        ),
        Utterance("b", None, None, "text only", [], None, "dev"),
        Utterance("c", "/elsewhere/c.flac", 3.0, "unlabelled", None, None, "test"),
    ]


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def test_round_trip(tmp_path: Path) -> None:
    utts = sample_utts(tmp_path)
    write_manifest(tmp_path / "m.jsonl", utts)
    assert read_manifest(tmp_path / "m.jsonl") == utts
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]  # the temp file was renamed


def test_dict_round_trip() -> None:
    utt = Utterance.from_dict(GOOD)
    assert utt.entities == [("PLACE", "strasbourg"), ("WHEN", "today")]
    assert utt.to_dict() == GOOD
    with pytest.raises(ManifestError, match="sentiment"):
        Utterance.from_dict({**GOOD, "sentiment": "happy"})


def test_synthetic_labels_are_named_and_written_only_when_present() -> None:
    made = Utterance.from_dict({**GOOD, "synthetic": ["sentiment"]})
    assert made.synthetic == ("sentiment",)
    assert made.to_dict() == {**GOOD, "synthetic": ["sentiment"]}
    # Rows without synthetic labels keep the old line, key and all.
    assert "synthetic" not in Utterance.from_dict(GOOD).to_dict()


def test_paths_relative_inside_absolute_outside(tmp_path: Path) -> None:
    write_manifest(tmp_path / "m.jsonl", sample_utts(tmp_path))
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [x["audio"] for x in lines] == ["wav/a.wav", None, "/elsewhere/c.flac"]
    assert lines[1]["entities"] == [] and lines[2]["entities"] is None


def test_relative_paths_resolve_against_manifest_folder(tmp_path: Path) -> None:
    (tmp_path / "data" / "wav").mkdir(parents=True)
    (tmp_path / "data" / "wav" / "u1.wav").write_bytes(b"RIFF")
    path = write_lines(tmp_path / "data" / "m.jsonl", [GOOD])
    # Moving the folder keeps the manifest valid: paths follow it.
    moved = tmp_path / "moved"
    (tmp_path / "data").rename(moved)
    (utt,) = read_manifest(moved / path.name, require_audio=True)
    assert utt.audio == str(moved / "wav" / "u1.wav")


def test_optional_keys_default(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "m.jsonl", [{"id": "x", "audio": None, "duration": None, "text": "hi"}]
    )
    (utt,) = read_manifest(path)
    assert (utt.entities, utt.sentiment, utt.split) == (None, None, "train")


def test_blank_lines_and_bom_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n\n   \n")
    assert len(read_manifest(path)) == 1


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got a list"),
        ({k: v for k, v in GOOD.items() if k != "text"}, "missing key(s) 'text'"),
        ({**GOOD, "sentimnet": "Positive"}, "unknown key(s) 'sentimnet'"),
        ({**GOOD, "id": ""}, "'id' must be a non-empty string"),
        ({**GOOD, "id": 7}, "'id' must be a non-empty string"),
        ({**GOOD, "audio": 3}, "'audio' must be a non-empty string or null"),
        ({**GOOD, "duration": "2s"}, "'duration' must be a number"),
        ({**GOOD, "duration": -1}, "'duration' must be a number"),
        ({**GOOD, "text": None}, "'text' must be a string"),
        ({**GOOD, "entities": "PLACE"}, "'entities' must be a list"),
        ({**GOOD, "entities": [["PLACE"]]}, "entities[0] must be a [TAG, phrase] pair"),
        ({**GOOD, "entities": [["GPE", "paris"]]}, "entities[0] has tag 'GPE', not one of"),
        ({**GOOD, "entities": [["PLACE", " "]]}, "entities[0] has an empty phrase"),
        ({**GOOD, "sentiment": "positive"}, "'sentiment' must be one of Negative, Neutral"),
        ({**GOOD, "split": ""}, "'split' must be a non-empty string"),
        ({**GOOD, "synthetic": "sentiment"}, "'synthetic' must be a list of label fields"),
        ({**GOOD, "synthetic": ["text"]}, "'synthetic' must be a list of label fields"),
    ],
)
def test_each_validation_error(tmp_path: Path, line: object, expected: str) -> None:
    path = write_lines(tmp_path / "m.jsonl", [{**GOOD, "id": "ok"}, line])
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert str(info.value).startswith(f"{path}:2: ")
    assert expected in str(info.value)


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", [GOOD, {**GOOD, "text": "again"}])
    with pytest.raises(ManifestError, match=r":2: duplicate id 'u1' \(first on line 1\)"):
        read_manifest(path)


def test_require_audio(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", [GOOD, {**GOOD, "id": "t", "audio": None}])
    with pytest.raises(ManifestError) as info:
        read_manifest(path, require_audio=True)
    message = str(info.value)
    assert f"{path}:1: audio file not found: {tmp_path / 'wav' / 'u1.wav'}" in message
    assert f"{path}:2: utterance 't' has no audio" in message
    assert len(read_manifest(path)) == 2  # without the flag both are fine


def test_many_errors_reported_together(tmp_path: Path) -> None:
    lines: list[object] = [{**GOOD, "id": f"u{i}", "sentiment": "meh"} for i in range(25)]
    lines[3] = "{broken"
    path = write_lines(tmp_path / "m.jsonl", lines)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    shown = str(info.value).splitlines()
    assert len(shown) == 11  # ten problems and a count of the rest
    assert shown[0].startswith(f"{path}:1: 'sentiment'")
    assert shown[3].startswith(f"{path}:4: not valid JSON")
    assert shown[-1] == "... and 15 more problems (25 in all)"
    assert len(info.value.problems) == 25


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ManifestError, match="no utterances"):
        read_manifest(tmp_path / "empty.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(json.dumps(GOOD).encode() + b'\n"caf\xe9"\n')
    with pytest.raises(ManifestError, match=r"latin1.jsonl:2: not UTF-8"):
        read_manifest(tmp_path / "latin1.jsonl")


def test_write_refuses_invalid_utterances(tmp_path: Path) -> None:
    bad = [
        Utterance("a", None, None, "x", [("GPE", "paris")]),
        Utterance("a", None, None, "y"),
    ]
    with pytest.raises(ManifestError) as info:
        write_manifest(tmp_path / "m.jsonl", bad)
    assert "tag 'GPE'" in str(info.value) and "duplicate id" in str(info.value)
    assert not (tmp_path / "m.jsonl").exists()


def test_written_manifest_has_the_usual_file_mode(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        write_manifest(tmp_path / "m.jsonl", [Utterance("a", None, None, "hello")])
    finally:
        os.umask(umask)
    assert (tmp_path / "m.jsonl").stat().st_mode & 0o777 == 0o644
