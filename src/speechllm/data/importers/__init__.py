"""Corpus importers: a corpus's own files -> `Utterance`s. SLUE-VoxPopuli and SLUE-VoxCeleb
(`slue.py`: text with NER / sentiment labels), LibriSpeech (`librispeech.py`: audio and text),
the VADER human sentiment ratings (`vader.py`: text and sentiment, to be spoken), and what they
share (`files.py`: where the shared data lives, tsv reading, finding each utterance's audio).
"""
