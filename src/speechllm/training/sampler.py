"""Training examples from manifests (`Example`: an utterance, a task and its target answer), the
deterministic task-mixing batch sampler and SpecAugment on encoder frames."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from speechllm.config import SpecAugmentConfig
from speechllm.data.manifest import Utterance
from speechllm.model.prompts import target_text


@dataclass(frozen=True)
class Example:
    """One (utterance, task) pair the model learns from."""

    utt: Utterance
    task: str
    answer: str
    learn_sentiment: bool = True
    """False: the utterance's sentiment is synthetic and not learnt from (no loss on the
    sentiment word of an `all` answer, no classifier target)."""

    @property
    def unscored(self) -> str:
        """The leading part of `answer` that adds no loss ("" = none)."""
        return "" if self.learn_sentiment or self.task != "all" else self.utt.sentiment or ""


def examples_for(
    utts: list[Utterance],
    tasks: list[str],
    synthetic_sentiment: bool = True,
    sentiment: bool = True,
) -> dict[str, list[Example]]:
    """Examples per task: `asr` needs a transcript, `ner` entity labels, `sa` a sentiment and
    `all` all three. `synthetic_sentiment=False`: rows whose sentiment is synthetic give no `sa`
    example and their `all` examples do not teach the sentiment word (the rest of the answer,
    transcript and entities, still teaches). `sentiment=False`: so for every row."""
    out: dict[str, list[Example]] = {t: [] for t in tasks}
    for u in utts:
        learn = sentiment and (synthetic_sentiment or "sentiment" not in u.synthetic)
        for task in tasks:
            if has_labels(u, task) and (learn or task != "sa"):
                answer = target_text(task, u.text, u.entities, u.sentiment)
                out[task].append(Example(u, task, answer, learn_sentiment=learn))
    return {t: ex for t, ex in out.items() if ex}


def has_labels(utt: Utterance, task: str) -> bool:
    """Whether `utt` carries what `task`'s answer is made of (training) or scored against."""
    if task == "asr":
        return bool(utt.text)
    if task == "ner":
        return utt.entities is not None
    if task == "sa":
        return utt.sentiment is not None
    return bool(utt.text) and utt.entities is not None and utt.sentiment is not None


class TaskMixSampler:
    """Batches as a pure function of (seed, step, rank): resuming at step s replays exactly.

    Each example slot draws a task by weight, then the next example of that task from an
    epoch-wise shuffled order of its examples.
    """

    def __init__(
        self,
        examples: dict[str, list[Example]],
        weights: dict[str, float],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if not examples:
            raise ValueError("no training examples: check the manifests and data.tasks")
        self.examples = examples
        self.tasks = sorted(examples)
        self.weights = [float(weights.get(t, 1.0)) for t in self.tasks]
        if sum(self.weights) <= 0:
            raise ValueError(f"data.task_weights give no weight to any of {self.tasks}")
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world
        self._orders: dict[tuple[str, int], list[int]] = {}

    def _order(self, task: str, epoch: int) -> list[int]:
        key = (task, epoch)
        if key not in self._orders:
            order = list(range(len(self.examples[task])))
            random.Random(f"{self.seed}:{task}:{epoch}").shuffle(order)
            if len(self._orders) > 16:
                self._orders.clear()
            self._orders[key] = order
        return self._orders[key]

    def batch(self, step: int) -> list[Example]:
        rng = random.Random(f"{self.seed}:{step}:{self.rank}")
        picks = rng.choices(self.tasks, weights=self.weights, k=self.batch_size)
        out = []
        for slot, task in enumerate(picks):
            pool = self.examples[task]
            # Global position in this task's stream; epochs are reshuffled by their number.
            pos = (step * self.batch_size + slot) * self.world + self.rank
            epoch, idx = divmod(pos, len(pool))
            out.append(pool[self._order(task, epoch)[idx]])
        return out


def spec_augment(
    frames: torch.Tensor, lengths: torch.Tensor, config: SpecAugmentConfig
) -> torch.Tensor:
    """A copy of frames (B, T, C) with random time spans and channel bands of each clip zeroed
    (SpecAugment's masks, on encoder frames rather than spectrograms); torch's global RNG."""
    out = frames.clone()
    channels = frames.shape[2]
    for i, n in enumerate(lengths.tolist()):
        for _ in range(config.time_masks):
            width = int(torch.randint(0, max(1, int(config.time_width * n)) + 1, (1,)))
            start = int(torch.randint(0, max(1, n - width + 1), (1,)))
            out[i, start : start + width] = 0
        for _ in range(config.feature_masks):
            width = int(torch.randint(0, config.feature_width + 1, (1,)))
            start = int(torch.randint(0, max(1, channels - width + 1), (1,)))
            out[i, :, start : start + width] = 0
    return out
