"""Inference: the one decoding path (`decode.encode_clips`, `decode.answer`: (clip, task) rows
decoded in batches, one `Prediction` per clip), a model scored on a manifest (`evaluate`), the
model-only diagnostics (`diagnostics`) and long recordings split at pauses (`longform`).

May import: `speechllm.model`, `speechllm.data`, `speechllm.evaluation` (scoring) and the
top-level basics.
"""
