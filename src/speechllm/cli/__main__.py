"""`python -m speechllm.cli` (used by `accelerate launch -m speechllm.cli train ...`)."""

from speechllm.cli import app

# Guarded: the server's model worker is a spawned process, which imports this module under
# another name and must not run the command line again.
if __name__ == "__main__":
    app()
