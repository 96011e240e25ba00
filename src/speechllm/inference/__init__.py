"""Inference: batched decoding of (clip, task) rows and long recordings split at pauses.

May import: `speechllm.model`, `speechllm.data`, `speechllm.evaluation` (scoring) and the
top-level basics.
"""
