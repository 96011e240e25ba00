"""Data: audio I/O, manifests, corpus importers, speech synthesis, the encoder feature cache, the
text corpus, the training sampler and the offline benchmark.

May import: `speechllm.errors`, `speechllm.labels`, `speechllm.config`, `speechllm.hub`.
"""
