"""Corpus importers: a corpus's own files -> `Utterance`s.

Modules:
- `files`: what they share: where the shared data lives, tsv reading, finding each clip's audio.
- `slue`: SLUE-VoxPopuli and SLUE-VoxCeleb (text with NER / sentiment labels).
- `librispeech`: LibriSpeech (audio and text).
- `vader`: the VADER human sentiment ratings (text and sentiment, to be spoken), which snippets
  can be spoken as written (`sa_reference`).
- `wordnet`: WordNet's usage examples (general English text, no labels, to be spoken).

Part of `speechllm.data`; its import rule applies.
"""
