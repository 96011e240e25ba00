"""GGUF LLMs -> plain transformers models: `load_gguf_llm` dequantizes a GGUF causal LM to
float32 with no quantization state left, `gguf_to_hf` saves it as an ordinary directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechllm.errors import ModelSourceError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_gguf_llm(gguf_file: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF causal LM with transformers, dequantized to a plain float32 model.

    The returned model carries no quantization state (no `hf_quantizer`, no
    `config.quantization_config`), so `save_pretrained` writes an ordinary checkpoint.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file.name, "dtype": torch.float32}
    try:
        from transformers import GgufConfig
    except ImportError:  # transformers 4.x: GGUF loading always dequantizes, and leaves no state.
        GgufConfig = None
    if GgufConfig is not None:
        # Asking for the dequantized model is the library's own way to get a plain one: after
        # loading, its quantizer removes itself and the quantization config from the model.
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, **kwargs)
    except ImportError as exc:
        raise ModelSourceError(
            f"{gguf_file}: reading GGUF needs the gguf package (pip install gguf): {exc}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"{gguf_file}: transformers cannot load this GGUF: {exc}") from exc
    _drop_quantization_state(model)
    model.eval()
    return model, tokenizer


def _drop_quantization_state(model: PreTrainedModel) -> None:
    """Make sure a dequantized model is saved as a plain one.

    save_pretrained refuses models whose quantizer cannot serialize (GGUF's cannot). With
    GgufConfig(dequantize=True) the library has already done this; for any other route we ask the
    quantizer itself to remove its state (its own `remove_quantization_config`), after checking
    that the weights really are dense floats.
    """
    import torch

    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        dense = all(p.dtype.is_floating_point for p in model.parameters())
        if not dense:
            raise ModelSourceError("the GGUF model was loaded with packed (quantized) weights")
        quantizer.remove_quantization_config(model)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.to(torch.float32)


def gguf_to_hf(gguf_file: Path, out_dir: Path) -> Path:
    """Convert a GGUF causal LM to a float32 transformers directory (safetensors + tokenizer)."""
    model, tokenizer = load_gguf_llm(gguf_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
