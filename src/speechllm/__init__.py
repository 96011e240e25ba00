"""speechllm: a frozen Whisper encoder, a small adapter and a causal LLM in one speech model.

Layers, lowest first; a package imports only from those below it (each `__init__` says exactly
which; tests/test_layout.py checks it):

- `errors`, `labels`: user-facing exceptions; the task label sets. Import nothing from speechllm.
- `hub/`: where weights come from (packaged sources, CTranslate2 files, LLM loading, the cache).
- `data/`: audio, manifests, importers, speech synthesis, text normalisation, the text corpus.
- `config/`: the typed run configuration (YAML).
- `model/`: encoder, adapter, CTC, heads, prompts and parsers, `Prediction`, the `SpeechLLM` module.
- `annotate/`: LLM labelling of text (`speechllm annotate`).
- `evaluation/`: the SLUE scorer, reports, the cascade baseline.
- `bench/`: the offline benchmark (`speechllm bench build`).
- `inference/`: the one decoding path, loading for inference, long recordings.
- `training/`: the training loop, its sampler and feature cache, the ablation runner.
- `serving/`: the HTTP server and its web page.
- `demo.py`, `cli/`: `speechllm demo` and the command line, on top of everything.
"""

__version__ = "0.1.0"
