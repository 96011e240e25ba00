"""The speech-understanding model: speech encoder, speech inputs (adapter, CTC head, Whisper
reader), auxiliary heads, prompts and answer parsers, and the `SpeechLLM` module that joins them
to the causal LLM.

May import: `speechllm.errors`, `speechllm.labels`, `speechllm.config`, `speechllm.hub`,
`speechllm.data` (audio and text normalisation only).
"""
