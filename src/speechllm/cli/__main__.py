"""`python -m speechllm.cli` (used by `accelerate launch -m speechllm.cli train ...`)."""

from speechllm.cli import app

app()
