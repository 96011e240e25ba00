"""Evaluation: SLUE scoring (WER, NER F1, sentiment F1, SLUE score), reports, the cascade
baseline and the cheap (spaCy / VADER) labellers.

May import: `speechllm.model`, `speechllm.data`, `speechllm.annotate`, `speechllm.hub` and the
top-level basics.
"""
