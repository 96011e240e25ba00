"""LoRA on the LLM (peft), as `ModelConfig.lora` declares it."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from speechllm.config import LoraSettings


def add_lora(llm: PreTrainedModel, settings: LoraSettings) -> nn.Module:
    """`llm` wrapped by peft with trainable LoRA matrices on `settings.target_modules` (r,
    alpha, dropout as set); the base weights stay frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(llm, config)
