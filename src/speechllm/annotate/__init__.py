"""`speechllm annotate`: an LLM labels text with entities and sentiment (the paper's synthetic
labels): few-shot prompts, validation, constrained decoding, the annotator, its cache and the run.

May import: `speechllm.hub`, `speechllm.data` (manifests), `speechllm.model.prompts` and the
top-level basics.
"""
