"""The speech-understanding model: speech encoder, speech inputs (adapter, CTC head, Whisper
reader), auxiliary heads, prompts and answer parsers, and the `SpeechLLM` module that joins them
to the causal LLM.

Modules: `speechllm` (the `SpeechLLM` module: forward, losses, generation), `configuration`
(`SpeechLLMConfig`, a saved model's config.json), `saving` (model folders: write, read, convert
the older format), `batch` (the forward's inputs), `llm_inputs` (the prompt layout around the
speech), `text_noise` (transcripts standing in for speech), `encoder`, `adapter`, `ctc`,
`regularizer` (classifier heads), `whisper_reader` / `whisper_ct2` (Whisper's own decoder),
`prompts` / `answers` (instructions, targets, parsers), `export`, `quantize`.

May import: `speechllm.errors`, `speechllm.labels`, `speechllm.config`, `speechllm.hub`,
`speechllm.data` (audio and text normalisation only).
"""
