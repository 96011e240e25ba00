"""Training: the staged training loop under accelerate (checkpoints, resume, held-out evaluation)
and the ablation runner.

May import: everything below it (`model`, `data`, `evaluation`, `inference`, `hub`).
"""
