"""Int8 weights for a SpeechLLM's LLM: faster decoding on a CPU, for inference only.

`quantize_llm(model)` returns a copy of the model whose LLM linear layers (attention q/k/v/o, MLP
gate/up/down and, by default, the LM head) hold int8 weights and run int8 matmuls with activations
quantized on the fly per call (dynamic quantization). Everything else is shared with the fp32
model, not copied: the Whisper encoder and, on the `whisper` route, Whisper's decoder (never
quantized: the speech side keeps its accuracy), the adapter, CTC head and classifier heads, the
tokenizer and the LLM's input-embedding table (an embedding lookup gains nothing from int8).

Why `torch.ao.quantization.quantize_dynamic` and not torchao: torchao 0.18 installs from PyPI and
its `quantize_(m, Int8DynamicActivationInt8WeightConfig())` works on this CPU, but in eager mode
(no `torch.compile`) it was 2 to 7x *slower* than fp32 here at 1 to 24 rows (decoding): one thread,
AVX2 EPYC, torch 2.13, a 576 x 1536 linear took 0.90 ms for one row against fp32's 0.15 ms,
SmolLM2's 576 x 49152 LM head 81 ms against 12 ms; its int8 weight-only config was as slow. Its
fast CPU kernels come from inductor, i.e. a C++ compile of the model at start-up, which a CLI run
or a 2-core machine cannot afford. `quantize_dynamic` (FBGEMM kernels, deprecated in favour of
torchao but still shipped) was 2.7x faster than fp32 for that linear and 8x for the LM head at one
row (the decoding case: one new token per row per step), 1.1 to 3.6x at 24 to 240 rows. The
deprecation warning it raises is silenced here.

LoRA: merged, not kept beside the int8 base. The LLM is deep-copied (the fp32 model stays usable
and unchanged), peft's `merge_and_unload` folds each LoRA update into its base weight (W + B A *
alpha / r), and the merged plain linears are quantized. Quantizing only the base layers and keeping
LoRA in fp32 beside them would run two extra small fp32 matmuls and peft's wrapper for every
adapted layer at every decoding step (with LoRA on all 7 projections, 14 per transformer block),
giving back part of the speed-up for no gain in accuracy: the LoRA update is small next to the base
weight, so the merged weight's int8 rounding error is about the base weight's.

Weights are quantized per output channel (`per_channel_dynamic_qconfig`): a scale per row of W
instead of one for the whole matrix.

The prompt is processed with the float weights, the decoding steps with the int8 ones (`prefill`,
`Int8DecodeLinear`). Dynamic quantization gives each call's input one activation scale (7 bits on
x86: FBGEMM's reduce_range), and SmolLM2's MLP down-projections see massive activations on a few
prompt tokens (largest / mean |input| up to 25,000 in layer 11), so in a call over a whole prompt
every other token is rounded to a handful of levels, and the KV cache built from them carries the
error to every answer token. Measured on 9 SLUE-VoxPopuli sentences (387 tokens of NER answers,
teacher-forced, SmolLM2-135M with random LoRA on the `whisper` route): the share of answer
positions whose greedy token equals the fp32 model's, run as generation runs (the prompt in one
call, then one token per call), is 83% with int8 everywhere and **95%** with a float prompt and
int8 steps (the fp32 model's agreement with the gold answer, 77.8%, becomes 73.4% and 77.0%). Run
in one call over prompt and answer: int8 everywhere 66%, int8 in the down-projections alone 74%,
int8 everywhere after SmoothQuant-style channel scaling folded into the preceding weights (alpha
0.5 / 0.8) 82% / 85%. The speed-up is kept: decoding, one new token per row per step, is where int8
pays (memory-bound matrix-vector products), and the prompt is one batched pass (64-token answers
for 3 rows: fp32 9.9 s, float prompt + int8 steps 6.0 s, int8 everywhere 6.7 s, on a busy core).
The price is memory: the merged float weights are kept beside the int8 ones (`prefill="int8"` drops
them).

The quantized model answers like the fp32 one on most tokens, not on all (greedy decoding flips
where two tokens are nearly tied, and an answer differs from there on): `benchmarks/inference.py
--int8` counts identical answers and scores both.

A quantized model cannot be saved (`save` raises): save the fp32 model and quantize after loading;
quantizing SmolLM2-135M takes about 5 s (deep copy, LoRA merge, packing) on a busy core.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any, Literal

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from speechllm.model.speechllm import SpeechLLM

METHODS: tuple[str, ...] = ("dynamic-int8",)
"""Quantization methods `quantize_llm` knows."""

Prefill = Literal["float", "int8"]


class Int8DecodeLinear(DynamicQuantizedLinear):
    """A dynamically quantized linear that keeps its float weight for prompt processing: inputs
    holding several positions per sequence (B, L > 1, D_in) go through the float weight, the
    decoding steps' one new position per sequence (B, 1, D_in) or rows (N, D_in) through the
    int8 one. See the module's text for why."""

    float_weight: nn.Parameter
    float_bias: nn.Parameter | None

    @classmethod
    def from_float(cls, mod: nn.Module, use_precomputed_fake_quant: bool = False) -> Any:
        q = super().from_float(mod, use_precomputed_fake_quant)
        # The float module's own tensors (a tied LM head keeps sharing the embedding table).
        q.float_weight = mod.weight
        q.float_bias = mod.bias
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2 and x.shape[-2] > 1:
            return nn.functional.linear(x, self.float_weight, self.float_bias)
        return super().forward(x)

    def _get_name(self) -> str:
        return "Int8DecodeLinear"


class QuantizedSpeechLLM(SpeechLLM):
    """A SpeechLLM whose LLM linear layers hold int8 weights (see `quantize_llm`). Inference
    only: generate, decode, evaluate as with the fp32 model; it cannot be saved or trained."""

    quantization: dict[str, Any]
    """What was done: method, prefill, engine, quantized layer count, lm_head, lora_merged,
    seconds."""

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        raise TypeError(
            "a quantized model is for inference only and cannot be saved: save the fp32 model "
            "and quantize it after loading (speechllm.model.quantize.quantize_llm)"
        )

    def save_pretrained(self, save_directory: Any, **kwargs: Any) -> Any:
        return self.trainable_state_dict()  # raises


def quantize_llm(
    model: SpeechLLM,
    method: str = "dynamic-int8",
    *,
    prefill: Prefill = "float",
    lm_head: bool = True,
) -> QuantizedSpeechLLM:
    """A copy of `model` with int8 weights in its LLM's linear layers (see the module's text).

    `method`: `dynamic-int8` (int8 weights per output channel, activations quantized per call;
    `torch.ao.quantization.quantize_dynamic`'s FBGEMM/x86 kernels). `prefill`: `float` (default)
    processes the prompt with the float weights and decodes with the int8 ones; `int8` uses int8
    for both (less memory, far less faithful). `lm_head`: also quantize the LM head (the largest
    matmul of a small LLM's decoding step). LoRA, if any, is merged into the base weights of the
    copy first. `model` is left as it was; the returned model shares its encoder, Whisper reader,
    adapter and heads. CPU only (ValueError on another device).
    """
    if method not in METHODS:
        raise ValueError(f"unknown quantization method {method!r}; expected one of {METHODS}")
    if prefill not in ("float", "int8"):
        raise ValueError(f"prefill must be 'float' or 'int8', got {prefill!r}")
    if isinstance(model, QuantizedSpeechLLM):
        raise ValueError("the model is already quantized")
    devices = {p.device.type for p in model.llm.parameters()}
    if devices != {"cpu"}:
        raise ValueError(f"int8 dynamic quantization runs on the CPU; the LLM is on {devices}")
    start = time.perf_counter()
    llm = copy.deepcopy(model.llm)
    merged = hasattr(llm, "merge_and_unload")
    if merged:  # a peft model: fold LoRA into the base weights, drop the wrappers
        llm = llm.merge_and_unload()
    llm = llm.float().eval().requires_grad_(False)
    head = llm.get_output_embeddings()
    targets = [
        (name, module)
        for name, module in llm.named_modules()
        if type(module) is nn.Linear and (lm_head or module is not head)
    ]
    cls = Int8DecodeLinear if prefill == "float" else DynamicQuantizedLinear
    with warnings.catch_warnings():
        # torch.ao's eager quantization is deprecated in favour of torchao (see the module's
        # text for why it is used all the same) and says so on every weight it quantizes.
        warnings.simplefilter("ignore")
        for name, module in targets:
            module.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            parent_name, _, child = name.rpartition(".")
            parent = llm.get_submodule(parent_name) if parent_name else llm
            setattr(parent, child, cls.from_float(module))
    quantized = QuantizedSpeechLLM.__new__(QuantizedSpeechLLM)
    # A shallow copy of the nn.Module: the same submodules except the LLM. Its own module,
    # parameter and buffer tables (and memo of near tokens), so swapping the LLM in does not
    # touch `model`.
    quantized.__dict__.update(model.__dict__)
    quantized._modules = dict(model._modules)
    quantized._parameters = dict(model._parameters)
    quantized._buffers = dict(model._buffers)
    quantized._near = model._near.copy()
    quantized._modules["llm"] = llm
    quantized.training = False
    quantized.quantization = {
        "method": method,
        "prefill": prefill,
        "engine": torch.backends.quantized.engine,
        "weights": "int8, per output channel",
        "activations": "int8, dynamic (one scale per call)",
        "quantized_layers": len(quantized_linear_names(llm)),
        "lm_head": lm_head,
        "lora_merged": merged,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return quantized


def quantized_linear_names(module: nn.Module) -> list[str]:
    """Names of the dynamically quantized linear layers inside `module`."""
    return [n for n, m in module.named_modules() if isinstance(m, DynamicQuantizedLinear)]


def float_linear_names(module: nn.Module) -> list[str]:
    """Names of the plain float `nn.Linear` layers inside `module`."""
    return [name for name, m in module.named_modules() if type(m) is nn.Linear]
