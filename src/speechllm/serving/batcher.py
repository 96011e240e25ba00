"""Admission control and batching: the queue of (clip, task) rows, the service-time estimate and
the worker that answers batches of rows with one model call (see `serving.server`)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from speechllm.serving.config import ServerConfig
from speechllm.serving.runner import ModelRunner


class BusyError(Exception):
    """The server cannot take this request now; `retry_after_s` is when to try again."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s)
        self.retry_after_s = retry_after_s


class QueueFullError(BusyError):
    """The server's queue holds too many rows to take this request."""


class OverloadedError(BusyError):
    """The estimate says the request (or one queued before it that it would delay) would miss
    its deadline."""

    def __init__(self, retry_after_s: int, answer_in_s: float, ahead: int) -> None:
        super().__init__(retry_after_s)
        self.answer_in_s = answer_in_s
        self.ahead = ahead


@dataclass
class ServiceEstimate:
    """Running estimate of the model's service time, measured on the batches it computes.

    A batch's seconds are modelled as rows x `seconds_per_row`. Batched decoding costs less than
    proportionally more per row, so an estimate made on small batches over-estimates large ones
    (the safe side: more 429s, not 504s) and an estimate made under load, on full batches, fits
    full batches.
    """

    prior_seconds_per_row: float
    weight: float = 0.3
    seconds_per_row: float = field(init=False)
    rows_per_request: float = 1.0
    batches: int = 0
    """Batches measured so far (0: `seconds_per_row` is the prior)."""

    def __post_init__(self) -> None:
        self.seconds_per_row = self.prior_seconds_per_row

    def observe(self, seconds: float, rows: int, requests: int) -> None:
        """Fold one batch's measured model time into the average (the first replaces the prior)."""
        if rows < 1 or requests < 1 or not seconds >= 0:
            return
        per_row, per_request = seconds / rows, rows / requests
        if self.batches == 0:
            self.seconds_per_row, self.rows_per_request = per_row, per_request
        else:
            w = self.weight
            self.seconds_per_row = (1 - w) * self.seconds_per_row + w * per_row
            self.rows_per_request = (1 - w) * self.rows_per_request + w * per_request
        self.batches += 1

    @property
    def seconds_per_request(self) -> float:
        return self.seconds_per_row * self.rows_per_request


_Answer = tuple[list[dict[str, str]], float, float]
"""What a request's future gives: (answers per task, for each of its clips), encode_s, generate_s."""


@dataclass(eq=False)
class _Job:
    """One request in the queue: its clips (one, or the pieces of a long recording) x its tasks
    are its rows, row k being clip k // len(tasks) and task k % len(tasks)."""

    clips: list[np.ndarray]
    tasks: list[str]
    future: asyncio.Future[_Answer]
    deadline: float = math.inf
    """time.perf_counter() by which the answer is due."""
    order: int = 0
    """Arrival number: among equal deadlines, the first come is served first."""
    taken: int = 0
    """Rows handed to the model so far (the next one to take)."""
    done: int = 0
    """Rows answered so far."""
    answers: list[dict[str, str]] = field(init=False)
    encode_s: float = 0.0
    generate_s: float = 0.0

    def __post_init__(self) -> None:
        self.answers = [{} for _ in self.clips]

    @property
    def rows(self) -> int:
        return len(self.clips) * len(self.tasks)

    @property
    def left(self) -> int:
        """Rows not yet handed to the model."""
        return self.rows - self.taken

    @property
    def key(self) -> tuple[float, int]:
        """The worker's order: earliest deadline first, then first come."""
        return self.deadline, self.order


@dataclass(frozen=True)
class _Hold:
    """A request admitted before its upload is read (`Batcher.hold`): it counts in the plan as
    the rows it will bring, so the requests of a burst are not all admitted while the first
    ones are still uploading, but the worker has nothing to take from it."""

    left: int
    deadline: float
    order: int

    @property
    def key(self) -> tuple[float, int]:
        return self.deadline, self.order


@dataclass
class Batcher:
    """Collects queued rows into batches and runs them on the model, one batch at a time."""

    runner: ModelRunner
    """Where the model runs (`serving.runner`)."""
    config: ServerConfig
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))
    """Rows per model call, for the latest 10,000 calls (for tests and monitoring)."""
    estimate: ServiceEstimate = field(init=False)
    refused: int = 0
    """Requests refused with 429 (queue full or overloaded)."""

    def __post_init__(self) -> None:
        self.estimate = ServiceEstimate(
            self.config.prior_seconds_per_row, self.config.estimate_weight
        )
        # Jobs with rows not yet taken, in the worker's order (`_Job.key`).
        self._pending: list[_Job] = []
        # Requests admitted whose rows are not queued yet, by ticket (`hold`).
        self._holds: dict[int, _Hold] = {}
        self._arrivals = 0
        # The batch in the model now: (rows, requests, perf_counter when it started).
        self._running: tuple[int, int, float] | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Requests with rows waiting for the model."""
        return len(self._live())

    @property
    def queued_rows(self) -> int:
        return sum(j.left for j in self._live())

    @property
    def admitted(self) -> int:
        """Requests held (`hold`): admitted, their rows not queued yet."""
        return len(self._holds)

    @property
    def in_model(self) -> int:
        return self._running[1] if self._running else 0

    def _live(self) -> list[_Job]:
        """Queued jobs still waiting for an answer (not timed out or abandoned), in order."""
        return [j for j in self._pending if not j.future.done()]

    def _planned(self, exclude: int | None = None) -> list[_Job | _Hold]:
        """What the plan counts, in the worker's order: queued jobs and held admissions (less the
        hold `exclude`, whose own request is being checked)."""
        holds = [h for t, h in self._holds.items() if t != exclude]
        return sorted([*self._live(), *holds], key=lambda j: j.key)

    def _seconds_per_row(self, now: float) -> tuple[float, float]:
        """(seconds per row to plan with, seconds left of the batch in the model).

        A batch in the model that has run longer than estimated says the estimate is low: its
        elapsed time per row is used instead, before it is measured."""
        per_row = self.estimate.seconds_per_row
        if self._running is None:
            return per_row, 0.0
        rows, _, started = self._running
        elapsed = now - started
        per_row = max(per_row, elapsed / rows)
        return per_row, rows * per_row - elapsed

    def _finish_times(self, rows: list[int], now: float) -> list[float]:
        """Estimated perf_counter at which each of the requests of `rows` rows, queued in the
        worker's order, would be answered: the worker takes `max_batch` rows at a time (a
        request's rows may span several calls), waiting up to `batch_wait_ms` to fill each call,
        after the batch in the model."""
        per_row, left = self._seconds_per_row(now)
        mb = self.config.max_batch
        sizes: list[int] = []  # rows of each future model call
        last: list[int] = []  # the call that answers each request's last row
        fill = mb
        for r in rows:
            while r > 0:
                if fill == mb:
                    sizes.append(0)
                    fill = 0
                take = min(r, mb - fill)
                sizes[-1] += take
                fill += take
                r -= take
            last.append(len(sizes) - 1)
        ends, t = [], now + left
        for size in sizes:
            t += self.config.batch_wait_ms / 1000 + per_row * size
            ends.append(t)
        return [ends[k] if k >= 0 else t for k in last]

    def _plan(
        self, rows: int, deadline: float, now: float, exclude: int | None = None
    ) -> tuple[float, list[float], int]:
        """For a new request of `rows` rows due by `deadline`, queued now: (estimated perf_counter
        of its answer, by how many seconds it or each queued or held request it would delay
        would miss its deadline (empty: all in time), requests ahead of it, the batch in the
        model's included). `exclude`: the request's own hold, not counted twice."""
        live = self._planned(exclude)
        key = (deadline, self._arrivals if exclude is None else exclude)
        pos = next((i for i, j in enumerate(live) if j.key > key), len(live))
        before = self._finish_times([j.left for j in live], now)
        after = self._finish_times(
            [j.left for j in live[:pos]] + [rows] + [j.left for j in live[pos:]], now
        )
        done = after[pos]
        # Everyone's plan must end `reserve` seconds before the deadline (ServerConfig).
        reserve = self.config.timeout_reserve * self.config.request_timeout_s
        late = [done - deadline + reserve] if done > deadline - reserve else []
        # Those after it in the order, and those before it whose last call it would join.
        for k, job in enumerate(live):
            t = after[k if k < pos else k + 1]
            if t > before[k] and t > job.deadline - reserve:
                late.append(t - job.deadline + reserve)
        return done, late, pos + self.in_model

    def answer_in(self, rows: int = 1, now: float | None = None) -> float:
        """Estimated seconds until a request of `rows` rows (one piece each, due within
        `request_timeout_s` per row), queued now, would be answered."""
        now = time.perf_counter() if now is None else now
        done, _, _ = self._plan(rows, now + self.config.request_timeout_s * rows, now)
        return done - now

    def check(self, rows: int, deadline: float, hold: int | None = None) -> None:
        """Raise BusyError (after counting it) unless a request of `rows` rows due by `deadline`
        (perf_counter) can be queued now: the queue has room for its rows (or is empty), and the
        estimate says it, and every queued or held request it would delay, would still be
        answered in time. An idle server takes every request (refusing would not get it answered
        sooner). `hold`: the request's own ticket from `hold`, if it has one."""
        now = time.perf_counter()
        planned = self._planned(hold)
        queued = sum(j.left for j in planned)
        if self.config.max_queue == 0 or (queued and queued + rows > self.config.max_queue):
            _, left = self._seconds_per_row(now)
            self.refused += 1
            # The queue shrinks when the batch in the model ends and the next one is taken.
            raise QueueFullError(max(1, math.ceil(left)))
        if not planned and self._running is None:
            return
        done, late, ahead = self._plan(rows, deadline, now, hold)
        if late:
            self.refused += 1
            raise OverloadedError(max(1, math.ceil(max(late))), done - now, ahead)

    def hold(self, rows: int, deadline: float) -> int:
        """Admit a request before its upload is read: `check` it, then count its `rows` in every
        later check until it is `submit`ted (which takes the hold's place in the order) or
        `release`d. Returns its ticket; raises BusyError as `check` does."""
        self.check(rows, deadline)
        ticket = self._arrivals
        self._arrivals += 1
        self._holds[ticket] = _Hold(rows, deadline, ticket)
        return ticket

    def release(self, ticket: int) -> None:
        """Forget a hold (its request failed, was refused or is queued); no-op if already gone."""
        self._holds.pop(ticket, None)

    def start(self) -> None:
        """Start the worker on the running loop (again, if the previous one ended or ran on
        another loop: a TestClient used without `with` runs each request on its own loop)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._worker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._pending.clear()

    def close(self) -> None:
        self.runner.close()

    def submit(
        self,
        clips: list[np.ndarray],
        tasks: list[str],
        deadline: float = math.inf,
        hold: int | None = None,
    ) -> asyncio.Future[_Answer]:
        """Queue one request (one clip, or the pieces of a recording) due by `deadline`
        (perf_counter); its future gives (answers per task for each clip, encode_s, generate_s).
        `hold`: its ticket from `hold`, replaced by the queued rows (and kept in the order).

        Raises QueueFullError when the queue has no room for its rows, OverloadedError when the
        estimate says it would not be answered in time (see `check`).
        """
        if not clips or not tasks:
            raise ValueError("a request needs at least one clip and one task")
        self.start()
        self.check(len(clips) * len(tasks), deadline, hold)
        future = asyncio.get_running_loop().create_future()
        if hold is not None and hold in self._holds:
            order = self._holds.pop(hold).order
        else:
            order, self._arrivals = self._arrivals, self._arrivals + 1
        job = _Job(list(clips), list(tasks), future, deadline, order)
        pos = next((i for i, j in enumerate(self._pending) if j.key > job.key), None)
        self._pending.insert(len(self._pending) if pos is None else pos, job)
        assert self._wakeup is not None
        self._wakeup.set()
        return job.future

    def _take(self) -> list[tuple[_Job, int, int]]:
        """The next batch: up to `max_batch` rows from the front of the queue, as (job, first
        row, end row) ranges; jobs with no row left leave the queue."""
        self._pending = self._live()  # timed out or disconnected while queued: skipped
        room = self.config.max_batch
        taken = []
        while self._pending and room > 0:
            job = self._pending[0]
            n = min(room, job.left)
            taken.append((job, job.taken, job.taken + n))
            job.taken += n
            room -= n
            if job.left == 0:
                self._pending.pop(0)
        return taken

    async def _worker(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self.queued_rows:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = loop.time() + self.config.batch_wait_ms / 1000
            while self.queued_rows < self.config.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), left)
            taken = self._take()
            if not taken:
                continue
            # The model's items: each clip with the tasks of its rows in this batch.
            items: list[tuple[np.ndarray, list[str]]] = []
            owners: list[tuple[_Job, int]] = []
            for job, first, end in taken:
                nt = len(job.tasks)
                for k in range(first, end):
                    clip = k // nt
                    if not owners or owners[-1] != (job, clip):
                        owners.append((job, clip))
                        items.append((job.clips[clip], []))
                    items[-1][1].append(job.tasks[k % nt])
            rows = sum(end - first for _, first, end in taken)
            self.batch_sizes.append(rows)
            started = time.perf_counter()
            self._running = (rows, len(taken), started)
            try:
                results = await self.runner.run(items)
            except Exception as exc:  # the model failed: fail these requests, keep serving
                for job, _, _ in taken:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self._running = None
            self.estimate.observe(time.perf_counter() - started, rows, len(taken))
            for (job, clip), (answers, _, _) in zip(owners, results, strict=True):
                job.answers[clip].update(answers)
            encode_s, generate_s = results[0][1], results[0][2]
            for job, first, end in taken:
                job.done += end - first
                job.encode_s += encode_s
                job.generate_s += generate_s
                if job.done == job.rows and not job.future.done():
                    job.future.set_result((job.answers, job.encode_s, job.generate_s))
