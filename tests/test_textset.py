"""The text corpus of text stages: gold labels from ../shared, never a reserved utterance."""

import json

from speechllm.data.importers.slue import import_slue_voxpopuli
from speechllm.data.manifest import read_manifest
from speechllm.data.textset import MAX_WORDS, build_text_corpus, reserved_ids


def test_text_corpus_holds_no_reserved_utterance(shared, tmp_path):
    summary = build_text_corpus(tmp_path, shared=shared, synthetic=False, joint=50)
    rows = {name: read_manifest(tmp_path / name) for name in summary if name.endswith(".jsonl")}
    assert set(rows) == {"slue-train.jsonl", "vader-train.jsonl", "joint-text.jsonl"}
    reserved = reserved_ids(shared)
    assert len(reserved) > 1753 + 4000  # SLUE dev and the VADER test ids
    dev_texts = {
        u.text for u in import_slue_voxpopuli(shared / "data/slue-voxpopuli/slue-voxpopuli_dev.tsv")
    }
    for name, utts in rows.items():
        assert utts, name
        assert not {u.id for u in utts} & reserved, name
        assert not {u.text for u in utts} & dev_texts, name
        assert all(u.audio is None for u in utts)
    slue, vader = rows["slue-train.jsonl"], rows["vader-train.jsonl"]
    # Gold labels only without synthetic ones: SLUE has entities, VADER a sentiment.
    assert all(u.entities is not None and u.sentiment is None for u in slue)
    assert all(u.sentiment is not None and u.entities is None for u in vader)
    assert max(len(u.text.split()) for u in slue) <= MAX_WORDS
    assert len(slue) > 4800 and len(vader) > 10000
    assert len(rows["joint-text.jsonl"]) == 100
    assert json.loads((tmp_path / "textset.json").read_text())["slue-train.jsonl"]["rows"] == len(
        slue
    )


def test_synthetic_labels_fill_what_a_source_lacks(shared, tmp_path):
    summary = build_text_corpus(tmp_path, shared=shared, synthetic=True, joint=0)
    slue = read_manifest(tmp_path / "slue-train.jsonl")
    vader = read_manifest(tmp_path / "vader-train.jsonl")
    assert all(u.sentiment in ("Negative", "Neutral", "Positive") for u in slue)
    assert all(u.entities is not None for u in vader)
    # Synthetic entities are placed in the transcript's own words.
    for u in vader:
        for _, phrase in u.entities:
            assert f" {phrase} " in f" {u.text} "
    assert "synthetic" in summary["vader-train.jsonl"]["entities"]
    assert "synthetic" in summary["slue-train.jsonl"]["sentiment"]
    # Each row names the labels a tool made, so training can tell them from the gold ones.
    assert all(u.synthetic == ("sentiment",) for u in slue)
    assert all(u.synthetic == ("entities",) for u in vader)
