"""Evaluation: predictions scored as SLUE scores them, and the reports.

Modules:
- `slue`: the SLUE toolkit's formulas: WER, NER F1, sentiment F1, the SLUE score.
- `metrics`: the one scorer of predictions against references (`compute_metrics`).
- `compare`: two systems on the same references, by paired bootstrap (`speechllm compare`).
- `report`: scores to files: SLUE submission files, NER `.wrd` files, the markdown report.
- `plots`: the report's PNG plots.
- `cascade`: the cascade baseline (Whisper transcribes, the run's base LLM labels).

May import: `speechllm.errors`, `speechllm.labels`, `speechllm.config`, `speechllm.hub`,
`speechllm.data`, `speechllm.model`, `speechllm.annotate` (the cascade's labeller).
"""
