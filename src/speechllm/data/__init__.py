"""Data: everything about utterances before a model sees them.

Modules:
- `audio`: reading, checking and writing audio (float32 mono 16 kHz), the Whisper window.
- `manifest`: JSONL manifests, one `Utterance` (audio, transcript, labels, split) per line.
- `normalize`: text normalisation to SLUE-VoxPopuli's `normalized_text` style.
- `importers/`: corpus importers (SLUE, LibriSpeech, VADER) -> `Utterance`s.
- `tts`: speech synthesis of text-only manifests (piper by default), resumable.
- `voices`: the voices by name (piper, espeak-ng, festival, flite), the training preset, and
  the voices reserved for evaluation.
- `augment`: seeded acoustic augmentation of synthesized clips (audiomentations).
- `textset`: the text corpus of `kind: text` stages.
- `cheap_labels`: spaCy / VADER labellers (the paper's synthetic labels without an LLM).

The encoder feature cache and the training sampler are in `speechllm.training`; the offline
benchmark in `speechllm.bench`.

May import: `speechllm.errors`, `speechllm.labels`.
"""
