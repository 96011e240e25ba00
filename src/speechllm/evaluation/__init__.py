"""Evaluation: SLUE scoring (`slue`: WER, NER F1, sentiment F1, SLUE score), the one scorer of
predictions (`metrics.compute_metrics`), report files and plots (`report`, `plots`), the cascade
baseline and the cheap (spaCy / VADER) labellers.

May import: `speechllm.model`, `speechllm.data`, `speechllm.annotate`, `speechllm.hub` and the
top-level basics.
"""
