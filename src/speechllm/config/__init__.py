"""Typed configuration: one YAML file = one `RunConfig` (model + data + training + stages).

Every field has a docstring-style comment; unknown keys and values of the wrong type are an error
(a typo must not be silently ignored), every section checks its own ranges and cross-field rules
(`validate`), and `RunConfig.to_dict()` is what a run directory records. The names below are the
package's interface; import them from `speechllm.config`.

Modules:
- `checks`: the one builder (`build`) and the check helpers.
- `model`: the model section (`ModelConfig`, adapter, classifier heads, LoRA).
- `training`: the train section (`TrainConfig`, SpecAugment, text noise, the regularizer).
- `run`: `RunConfig`, the data section, stages, YAML loading.

May import: `speechllm.errors`, `speechllm.data.audio` (the audio constants).
"""

from speechllm.config.checks import build
from speechllm.config.model import (
    AdapterConfig,
    ClassifierHeadsConfig,
    LoraSettings,
    ModelConfig,
)
from speechllm.config.run import (
    DECODE_BATCH,
    DataConfig,
    RunConfig,
    StageConfig,
    stage_folder,
)
from speechllm.config.training import (
    ClassifierRegularizerConfig,
    SpecAugmentConfig,
    TextNoiseConfig,
    TrainConfig,
)

__all__ = [
    "DECODE_BATCH",
    "AdapterConfig",
    "ClassifierHeadsConfig",
    "ClassifierRegularizerConfig",
    "DataConfig",
    "LoraSettings",
    "ModelConfig",
    "RunConfig",
    "SpecAugmentConfig",
    "StageConfig",
    "TextNoiseConfig",
    "TrainConfig",
    "build",
    "stage_folder",
]
