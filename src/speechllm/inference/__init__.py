"""Inference: a trained model answering clips.

Modules:
- `decode`: the one decoding path: `encode_clips`, `answer` ((clip, task) rows decoded in batches,
  one `Prediction` per clip).
- `runtime`: loading a trained model for inference, and the runtime its Whisper parts run in.
- `evaluate`: a model scored on a manifest (what `evaluate`, `experiment` and training call).
- `diagnostics`: model-only figures (CTC WER, classifier-head F1), a separate step.
- `longform`: recordings of any length, split at pauses, understood piece by piece, joined.

May import: `speechllm.errors`, `speechllm.labels`, `speechllm.config`, `speechllm.hub` (model
names), `speechllm.data`, `speechllm.model`, `speechllm.evaluation` (scoring).
"""
