"""speechllm: a frozen Whisper encoder, a small adapter and a causal LLM in one speech model."""

__version__ = "0.1.0"
