"""Training: the staged training loop under accelerate, and the ablation runner.

Modules:
- `train`: `speechllm train CONFIG.yaml`: the training loop (stages, held-out evaluation, saving).
- `batches`: what a step reads: utterances, the encoder-frame cache, the batch.
- `features`: `FeatureCache`, the on-disk cache of frozen-encoder frames.
- `chunks`: one micro-batch's forward and backward as length-sorted chunks (`train.chunk_tokens`).
- `sampler`: training examples (`Example`, `examples_for`), `TaskMixSampler`, SpecAugment.
- `monitor`: held-out figures during training, the ranks' weight checksums at the end.
- `checkpoints`: resumable checkpoints (save, find the latest, load).
- `experiment`: the paper's ablation as one command (`speechllm experiment`).

May import: `speechllm.errors`, `speechllm.labels`, `speechllm.config`, `speechllm.hub`,
`speechllm.data`, `speechllm.model`, `speechllm.evaluation`, `speechllm.inference`.
"""
