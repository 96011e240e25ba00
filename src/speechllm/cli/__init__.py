"""The `speechllm` command line (typer): `app`, with each command group in a module of its own.

Each command is a thin layer over a library function. Importing the modules below registers
their commands on `app`.
"""

from speechllm.cli import data, models, serve, train, understand  # noqa: F401  (registration)
from speechllm.cli.common import app

__all__ = ["app"]
