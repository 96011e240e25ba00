"""`speechllm annotate`: an LLM labels text with entities and sentiment (the paper's synthetic
labels).

Modules:
- `prompts`: the annotation prompts: instructions, few-shot examples, prompt layouts.
- `validation`: checks of an annotation's answers (`check_ner`, `check_sentiment`), `Annotation`.
- `grammar`: constrained decoding: the grammars of valid answers and their logits processor.
- `annotator`: `Annotator`: a causal LLM with the prompts, decoding answers in batches.
- `cache`: the annotation cache (JSONL beside the output, keyed per text, model, prompt, task).
- `run`: an annotation run: texts labelled through the cache, a manifest annotated, the summary.

May import: `speechllm.errors`, `speechllm.labels`, `speechllm.hub`, `speechllm.data`,
`speechllm.model.prompts` (the answer parsers the model is trained on).
"""
