"""Loading a trained model for inference, and the runtime its Whisper parts run in.

`load_for_inference` is what `infer`, `evaluate`, `serve`, the demo and the benchmarks call. With
the default runtime, `ctranslate2`, a `whisper`-route model's frozen Whisper encoder and reader
run in CTranslate2 in short windows (`speechllm.model.whisper_ct2`): measured 2.1x less CPU time
for encoding and reading than transformers' 30 s windows, at the same WER (docs/recipe.md). The
`torch` runtime keeps transformers' modules and 30 s windows: what training saw, and the figures
of the model card before 2 December 2026. Other routes (adapter, CTC) run in torch either way.
The default runtime also merges the LLM's LoRA into its weights (`merge_lora`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from speechllm.errors import ConfigError, ModelSourceError
from speechllm.hub.shipped import resolve_model
from speechllm.model.speechllm import SpeechLLM
from speechllm.model.whisper_ct2 import ctranslate2_available, use_ctranslate2

Runtime = Literal["ctranslate2", "torch"]
RUNTIMES: tuple[str, ...] = ("ctranslate2", "torch")
DEFAULT_RUNTIME: Runtime = "ctranslate2"


def load_for_inference(
    name_or_path: str | Path | None = None, runtime: str = DEFAULT_RUNTIME
) -> SpeechLLM:
    """The model a `--model` value names (a shipped name, a folder, or None for the default), in
    eval mode, its Whisper parts in `runtime`."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    model = SpeechLLM.load(resolve_model(name_or_path)).eval()
    if runtime == "ctranslate2" and model.reader is not None:
        if not ctranslate2_available():
            raise ModelSourceError(
                "the ctranslate2 runtime needs the ctranslate2 package (pip install ctranslate2),"
                " or choose --runtime torch"
            )
        use_ctranslate2(model)
    if runtime == "ctranslate2":
        merge_lora(model)
    return model


def merge_lora(model: SpeechLLM) -> bool:
    """Fold the LLM's LoRA into its weights (W + BA, once) so that decoding runs one matmul per
    layer instead of three: measured 17% less time for task `all` on 16 benchmark clips, one
    thread, with identical answers. Inference only: the merged model no longer trains or saves
    its LoRA apart. Returns whether there was a LoRA to merge."""
    merge = getattr(model.llm, "merge_adapter", None)
    if merge is None:
        return False
    merge()
    return True
