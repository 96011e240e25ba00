"""A causal LLM as this project loads it: model and tokenizer from a packaged name, a local folder
or a hub id (`load_causal_lm`), and the token its chat template ends an answer with
(`chat_stop_token`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from speechllm.errors import ModelSourceError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_causal_lm(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(float32 model, tokenizer) of a packaged model name (`sources.resolve`), a local
    transformers folder or a hub id; ModelSourceError naming `name` and the folder tried when
    either cannot be loaded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from speechllm.hub.sources import resolve

    path = resolve(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except OSError as exc:
        raise ModelSourceError(f"cannot load LLM {name!r} from {path}: {exc}") from exc
    return model, tokenizer


def chat_stop_token(
    tokenizer: PreTrainedTokenizerBase, turns: list[dict[str, str]] | None = None
) -> int | None:
    """The first token the tokenizer's chat template writes after an assistant answer (e.g.
    `<|im_end|>`, Gemma's `<end_of_turn>`): where the model learnt that an answer ends. `turns`
    are the conversation before the answer (default: one user turn). None where the template
    writes nothing after the answer. The tokenizer must have a chat template."""
    # A probe answer, found again in the rendered text: what follows it is the template's end.
    probe = "0xanswer0"
    before = turns if turns is not None else [{"role": "user", "content": "x"}]
    full = tokenizer.apply_chat_template(
        [*before, {"role": "assistant", "content": probe}], tokenize=False
    )
    after = tokenizer(full.split(probe, 1)[1], add_special_tokens=False).input_ids
    return after[0] if after else None
