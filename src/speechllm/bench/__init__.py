"""`speechllm bench build`: an offline benchmark built deterministically by one command.

- NER set: the first N SLUE-VoxPopuli dev utterances (gold entities, CC0) of at most
  `NER_MAX_WORDS` words, spoken by piper.
- SA set: a seeded stratified sample of the VADER human-rated snippets (gold 3-class sentiment as
  `importers.vader.vader_sentiment` maps the ratings, MIT): equal per class where possible, and
  within a class spread evenly over the four corpora (movie, amazon, nyt, tweets), so that a class
  is not one corpus's style. Only snippets that speak as their transcript reads are eligible
  (`data.importers.vader.sa_reference`); piper speaks the snippet as written, the manifest holds
  its normalised transcript (lower case, no punctuation) in SLUE's style.
- ASR set: every clip of both plus the four real LibriSpeech test-clean clips in ../shared
  (CC BY 4.0, Panayotov et al. 2015), copied into the bench so that it is self-contained.

Each clip gets its prosody from (seed, id) as `speechllm data synth` does, and piper's noise is
seeded per clip (`SeededPiperVoice`), so the same command writes the same manifests and, on the
same machine and software, bit-identical WAVs. Re-running keeps the clips already spoken.

Variants of the same rules: a selection set (`--after`: the sentences and snippets after the
bench's, no LibriSpeech clip) to choose checkpoints on, and an unseen-voice set (`--voices`: the
bench's texts spoken in turn by voices reserved for evaluation, CMU flite's or festival's kal and
slt, no LibriSpeech clip) to test on voices no training heard.

With the cheap-label twin (`data/cheap_labels.py`, the `labels` extra) the build also writes
ner_cheap.jsonl / sa_cheap.jsonl (same rows, spaCy entities / VADER sentiment) and
cheap_labels.json (their agreement with gold, on the bench and on the full text sets).

Modules:
- `spec`: what is asked for (`BenchSpec`), its defaults, the selection and sampling rules.
- `build`: the build: seeded speech, manifests (`build_bench`).
- `report`: what a built bench says about itself: bench.json, the cheap-label agreement, README.md.

The bench sits above `data` and `evaluation`: it scores the cheap labels' agreement with gold
with SLUE's scorers, so it is not part of `data` (which `evaluation` imports).

May import: `speechllm.errors`, `speechllm.labels`, `speechllm.hub`, `speechllm.data`,
`speechllm.evaluation`.
"""
