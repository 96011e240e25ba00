"""The `speechllm` command line (typer): `app`, with each command group in a module of its own.

Each command is a thin layer over a library function. Importing the modules below registers
their commands on `app`.

Modules:
- `common`: what every command shares: the typer apps, the error exit, `--model` / `--tasks`.
- `data`: `speechllm data ...` (import corpora, speak text, the text corpus), `speechllm bench build`.
- `models`: `speechllm models list|fetch`, `speechllm info`, `speechllm export`.
- `train`: `speechllm train`, `speechllm experiment`, `speechllm annotate`.
- `understand`: `speechllm infer`, `speechllm evaluate`, `speechllm score`.
- `serve`: `speechllm serve` and `speechllm demo`.
- `__main__`: `python -m speechllm.cli` (what `accelerate launch` runs).

May import: anything in `speechllm` (the top layer; nothing imports it).
"""

from speechllm.cli import data, models, serve, train, understand  # noqa: F401  (registration)
from speechllm.cli.common import app

__all__ = ["app"]
