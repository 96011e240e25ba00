"""The speech-understanding model: speech encoder, speech inputs, auxiliary heads, prompts and
answer parsers, and the `SpeechLLM` module that joins them to the causal LLM.

Modules:
- `speechllm`: `SpeechLLM`: forward, losses, generation.
- `configuration`: `SpeechLLMConfig`, a saved model's config.json.
- `saving`: model folders: write, read, convert the older format.
- `batch`: `Batch` (the forward's inputs) and `collate_frames` (padding frames into it).
- `llm_inputs`: the prompt layout around the speech, the stop token, answers from generated ids.
- `draft_decoding`: greedy decoding that checks transcript tokens copied as drafts, several per call.
- `answer_grammar`: well-formed answers whose transcript copies the reading, and greedy choice under it.
- `lora`: LoRA on the LLM (peft).
- `text_noise`: transcripts standing in for speech.
- `encoder`: the frozen Whisper encoder, run on the clip's real length.
- `adapter`: the adapter: encoder frames -> LLM input embeddings.
- `ctc`: CTC over the LLM's vocabulary (alignment loss, the `ctc` speech input).
- `regularizer`: the classifier heads (sentiment, entity tags) on the adapter output.
- `whisper_reader`, `whisper_ct2`: the `whisper` speech input (Whisper's decoder; in CTranslate2).
- `prompts`: task instructions, answer formats and their parsers.
- `answers`: `Prediction`, what the system says about one clip, whoever said it.
- `export`: a trained model as a self-contained folder.
- `quantize`: int8 LLM weights for CPU inference.

May import: `speechllm.errors`, `speechllm.labels`, `speechllm.config`, `speechllm.hub`,
`speechllm.data.audio`, `speechllm.data.normalize`, `speechllm.data.manifest` (the `Utterance`
record, which a `Prediction` is read from and written as).
"""
