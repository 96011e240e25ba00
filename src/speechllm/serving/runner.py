"""Where the server's model runs: a worker process of its own (`ProcessRunner`, given a
`ModelSpec`: what `speechllm serve` uses) or a thread of the server's process (`ThreadRunner`,
given a loaded model: tests and programs that embed the app).

Why a process: the model's Python (transformers' modules, the decoding loop, CTranslate2's
wrappers) holds the interpreter lock for much of a batch. In a thread of the server it delays
the event loop, so a request the server refuses at once still waits for the lock: in the load
test at 32 clients (`benchmarks/load_test.py`) the 429s took p50 / p95 145 / 709 ms with the
model in a thread. In its own process the model shares no lock with the event loop; batches go
to it and answers come back pickled (a clip of 30 s is 1.9 MB of float32, a copy of a few ms).
The worker runs at a lower CPU priority than the server (`ModelSpec.nice`): on a machine with
few cores the event loop's short bursts then preempt it instead of waiting for a core.
The worker loads the model once at start-up, before the server reports itself up; if it dies
(killed for memory, say), the batch in it fails and a new worker is started for the next one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from speechllm.inference.decode import answer, encode_clips
from speechllm.model.speechllm import SpeechLLM

Item = tuple[np.ndarray, list[str]]
"""One clip (16 kHz samples) with the tasks asked of it in a batch."""
Result = tuple[dict[str, str], float, float]
"""Per clip: raw answers per task, the batch's encode seconds and generate seconds."""


def run_batch(model: SpeechLLM, items: list[Item]) -> list[Result]:
    """Encode all clips in one call and answer every (clip, task) row in one call; per clip its
    raw answers per task, with the batch's encode and generate seconds."""
    t0 = time.perf_counter()
    clips = encode_clips(model.encoder, [audio for audio, _ in items], batch_size=len(items))
    t1 = time.perf_counter()
    rows = sum(len(tasks) for _, tasks in items)
    predictions = answer(model, clips, [tasks for _, tasks in items], batch_size=rows)
    t2 = time.perf_counter()
    return [(p.raw, t1 - t0, t2 - t1) for p in predictions]


@dataclass(frozen=True)
class ModelSpec:
    """A model for a worker process to load (picklable, unlike a loaded model)."""

    model: str | None
    """A shipped model's name or a model folder; None = the shipped default."""
    runtime: str = "ctranslate2"
    """Where Whisper runs (`inference.runtime.load_for_inference`)."""
    threads: int | None = None
    """The worker's torch threads; None = torch's default (OMP_NUM_THREADS)."""
    setup: Callable[[], None] | None = None
    """Called in the worker before it loads the model (a module-level function: it is pickled
    by name), e.g. the command line's `quiet_libraries`, which a spawned process does not
    inherit."""
    nice: int = 5
    """How much lower the worker's CPU priority is than the server's (`os.nice`): where cores
    are short, the event loop's short bursts (a refusal, a health check) run at once and the
    model takes all the CPU left; 0 = the same priority."""

    def load(self) -> SpeechLLM:
        import torch

        from speechllm.inference.runtime import load_for_inference

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        model = load_for_inference(self.model, self.runtime)
        model.eval()
        return model


class ThreadRunner:
    """The model in one thread of the server's process (one batch at a time)."""

    def __init__(self, model: SpeechLLM) -> None:
        model.eval()
        self.model = model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speechllm-model")

    async def start(self) -> None:
        """Nothing to start: the model is loaded."""

    async def run(self, items: list[Item]) -> list[Result]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _thread_batch, self.model, items)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _thread_batch(model: SpeechLLM, items: list[Item]) -> list[Result]:
    return run_batch(model, items)  # looked up per call: tests record the calls


class ProcessRunner:
    """The model in a worker process of its own (one batch at a time), loaded from a spec."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._executor = self._new_worker()

    def _new_worker(self) -> ProcessPoolExecutor:
        # spawn, not fork: a forked copy of a process that has started torch's and
        # CTranslate2's thread pools can hang in them.
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_load_worker_model,
            initargs=(self.spec,),
        )

    async def start(self) -> None:
        """Start the worker and wait until its model is loaded. RuntimeError if it cannot be."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, _worker_ready)
        except BrokenProcessPool as exc:
            raise RuntimeError(
                f"the model worker could not load {self.spec.model or 'the default model'} "
                "(its error is printed above)"
            ) from exc

    async def run(self, items: list[Item]) -> list[Result]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, _worker_batch, items)
        except BrokenProcessPool as exc:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_worker()
            raise RuntimeError(
                "the model's worker process ended during this batch; a new one is starting"
            ) from exc

    def close(self) -> None:
        # Waits for a batch still in the worker (a graceful shutdown); not waiting leaves the
        # pool's semaphores to the resource tracker, which warns about them at exit.
        self._executor.shutdown(wait=True, cancel_futures=True)


ModelRunner = ThreadRunner | ProcessRunner

_worker_model: SpeechLLM | None = None
"""The model of this worker process (`ProcessRunner`); None in the server's own process."""


def _load_worker_model(spec: ModelSpec) -> None:
    global _worker_model
    if spec.setup is not None:
        spec.setup()
    if spec.nice:
        os.nice(spec.nice)
    _worker_model = spec.load()


def _worker_ready() -> bool:
    return _worker_model is not None


def _worker_batch(items: list[Item]) -> list[Result]:
    if _worker_model is None:
        raise RuntimeError("the model worker has no model loaded")
    return run_batch(_worker_model, items)
