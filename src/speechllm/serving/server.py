"""HTTP inference server: `POST /v1/understand` (an audio upload -> transcript, entities, sentiment).

Requests that arrive together are answered by one batched model call: each request's audio is
decoded (and checked) in the request handler, then queued; a single background worker (an asyncio
task) takes up to `max_batch` queued rows (one row: one clip and one task), waiting at most
`batch_wait_ms` for more after the first, encodes their audio in one encoder call and decodes every
row in one `SpeechLLM.generate` call, run in a thread (torch is not async). Batched encoding and
batched greedy decoding give each clip the answers it gets alone, so batching changes only the
speed.

Long recordings: a clip longer than `max_seconds` (Whisper's 30 s window) is split at its pauses
by the voice-activity detector (`longform.split_speech`) into pieces of at most `max_seconds`; each
piece is a row of its own, so one request may bring many rows, spread over several model calls
where they do not fit in one; the answers are joined as `speechllm infer` joins them
(`longform.join_results`): one transcript, entities with the times of their piece, the overall
sentiment and the `pieces`. Recordings up to `max_minutes` are accepted (longer: 413).

Timeouts and fairness: a request is given `request_timeout_s` per piece (a short clip is one
piece), as if its pieces were sent one after the other, and the worker serves queued rows
earliest deadline first (ties: first come, first served). A long recording therefore does not hold
the short clips that arrive after it: they pass ahead of its remaining pieces as long as it still
ends in time, and it fills the rest of the batches. (An HTTP client or proxy in front of the server
must wait as long for a long recording.)

Admission control keeps latency bounded: the server measures how long the model takes per row
as an exponentially weighted average over its batches (`ServiceEstimate`, a prior until the first
batch is measured). A request is refused at once with 429 and a `Retry-After` header when the
estimate says it, or a request queued before it whose answer it would delay, would not be answered
by its deadline, less a reserve for what the estimate does not see (`timeout_reserve`): the schedule of the queued rows (earliest deadline first, `max_batch` rows per
call) after the time left of the batch in the model. It is checked before the upload is decoded
(as a one-piece request: a server too busy for a short clip refuses a long one too) and again, with
its real number of rows, when the request is queued. An idle server accepts every request. The
queue (`max_queue`) counts rows as well. `GET /healthz` reports the estimate and the queue.

`GET /` serves a small web page (static files in `speechllm/web/`, no build step) that uploads or
records a clip and shows the answer, entities highlighted in the transcript, and for a long
recording its entities with their times and a table of its pieces.

Build the app with `create_app(model, ServerConfig(...))`; `speechllm serve` runs it with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NotRequired

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from typing_extensions import TypedDict

from speechllm.data.audio import SAMPLE_RATE, WHISPER_WINDOW_SECONDS, decode_audio_bytes
from speechllm.errors import AudioError, AudioTooLongError, ConfigError
from speechllm.model.speechllm import SpeechLLM

"""The encoder's window: longer clips cannot be encoded at all."""

# Multipart framing (boundaries, part headers, the task field) on top of the file itself.
_MULTIPART_SLACK = 64 * 1024

WEB_DIR = Path(str(resources.files("speechllm") / "serving" / "web"))
"""The web page's static files (index.html, app.js, style.css), shipped as package data."""

# The page loads only its own files: no inline script, nothing from elsewhere, so model output
# that slipped into the page as markup could not run code. blob: plays back a recording.
_PAGE_CSP = (
    "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass
class ServerConfig:
    """Limits and batching of the inference server (every field is a `speechllm serve` option)."""

    max_upload_mb: float = 25.0
    """Largest accepted upload in MiB (2**20 bytes); a larger one gets 413."""

    max_minutes: float = 60.0
    """Longest accepted recording in minutes (as `speechllm infer --max-minutes`); a longer one
    gets 413, found from the file's header before it is resampled. The upload limit applies too:
    25 MiB hold about 13 minutes of 16 kHz 16-bit mono WAV, more of FLAC or OGG."""

    max_seconds: float = WHISPER_WINDOW_SECONDS
    """Longest clip decoded whole, in seconds, between 1 and 30 (the Whisper encoder's window): a
    clip up to this long is one piece, as it always was; a longer one is split at its pauses into
    pieces of at most this long."""

    max_queue: int = 64
    """Rows (one clip or piece, one task) that may wait for the model, not counting the batch
    being computed; a request that would take the queue past this gets 429, unless nothing waits
    (a recording of more pieces than this is taken only then). 0 refuses every request
    (maintenance)."""

    max_batch: int = 8
    """Most rows answered by one model call: short requests (one row each), or the pieces of a
    long recording (its remaining pieces go to the next calls)."""

    batch_wait_ms: float = 10.0
    """How long the worker waits for more requests after the first of a batch arrives, in ms."""

    request_timeout_s: float = 60.0
    """Longest a request waits for its answer (queue + model) before it gets 504, per piece: a
    long recording split into n pieces is given n times as long (as if its pieces were sent one
    after the other). A request that the service-time estimate says would wait longer is refused
    at once with 429."""

    prior_seconds_per_row: float = 2.0
    """Model seconds per row (one (request, task) answer) assumed until the first batch has been
    measured (the order of the shipped 135M model on one CPU core); the first measurement replaces
    it. Too low a prior lets a cold burst in that then times out (504); too high refuses more of
    it (429) until the first batch is measured."""

    estimate_weight: float = 0.3
    """Weight of the newest batch in the running average of seconds per row (1 = only the last
    batch counts)."""

    timeout_reserve: float = 0.2
    """Fraction of `request_timeout_s` that admission control keeps in reserve: a request is
    accepted only if the estimate says it, and every queued request it would delay, is answered
    this much before its deadline. The reserve covers what the model-time estimate does not see
    (decoding the upload, a busy CPU's jitter, a batch slower than the average); 0 plans up to the
    deadline itself (more requests accepted, some then 504)."""

    def __post_init__(self) -> None:
        if not self.max_upload_mb > 0:
            raise ConfigError(f"max_upload_mb must be positive, got {self.max_upload_mb}")
        if not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be positive, got {self.max_minutes}")
        if not 1 <= self.max_seconds <= WHISPER_WINDOW_SECONDS:
            raise ConfigError(
                f"max_seconds must be in [1, {WHISPER_WINDOW_SECONDS:g}] (the encoder's window), "
                f"got {self.max_seconds}"
            )
        if self.max_queue < 0:
            raise ConfigError(f"max_queue must be >= 0, got {self.max_queue}")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if not self.request_timeout_s > 0:
            raise ConfigError(f"request_timeout_s must be positive, got {self.request_timeout_s}")
        if not self.prior_seconds_per_row > 0:
            raise ConfigError(
                f"prior_seconds_per_row must be positive, got {self.prior_seconds_per_row}"
            )
        if not 0 < self.estimate_weight <= 1:
            raise ConfigError(f"estimate_weight must be in (0, 1], got {self.estimate_weight}")
        if not 0 <= self.timeout_reserve < 1:
            raise ConfigError(f"timeout_reserve must be in [0, 1), got {self.timeout_reserve}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


# ---------------------------------------------------------------------- responses


class Timings(BaseModel):
    """Seconds spent per stage. decode_s reads the upload (and finds the pieces of a long
    recording); encode_s / generate_s are those of the whole batches the request was answered in
    (summed over the batches of a long recording); total_s runs from the request's arrival to its
    answer (queueing included)."""

    decode_s: float
    encode_s: float
    generate_s: float
    total_s: float


class UnderstandResponse(BaseModel):
    """The answer for a clip of at most `max_seconds` (decoded whole)."""

    transcript: str | None = None
    entities: list[list[str]] | None = None
    sentiment: str | None = None
    raw: dict[str, str]
    parse_failures: list[str]
    timings: Timings


class Piece(TypedDict):
    """One piece of a long recording: its times in the recording (seconds) and its answers,
    with the keys of the tasks asked only (as `speechllm infer` writes them)."""

    start: float
    end: float
    transcript: NotRequired[str]
    entities: NotRequired[list[list[str]]]
    """[tag, phrase] found in this piece."""
    sentiment: NotRequired[str | None]
    parse_failures: list[str]
    raw: dict[str, str]


class LongUnderstandResponse(BaseModel):
    """The answer for a recording longer than `max_seconds`, split at its pauses (the JSON of
    `speechllm infer` for a long file, with timings): its pieces' answers joined."""

    transcript: str | None = None
    """The pieces' transcripts in order, joined with spaces."""
    entities: list[tuple[str, str, float, float]] | None = None
    """[tag, phrase, start, end]: each entity with the times (seconds) of the piece it is in."""
    sentiment: str | None = None
    """The overall sentiment: the majority by duration over the pieces (a tie is Neutral)."""
    parse_failures: list[str]
    pieces: list[Piece]
    """Every piece in order; [] when no speech was found."""
    timings: Timings


class Health(BaseModel):
    status: str
    model: str
    queue: int
    """Requests waiting for the model, wholly or in part (not counting those wholly in it)."""
    queued_rows: int
    """Rows (one clip or piece, one task) waiting for the model: what `max_queue` counts."""
    in_model: int
    """Requests with rows in the batch the model is computing now."""
    service_seconds_per_row: float
    """Estimated model seconds per row (one clip or piece of a recording, one task)."""
    service_seconds_per_request: float
    """Estimated model seconds per request (per row x the average rows per request in a batch)."""
    measured_batches: int
    """Batches the estimate was measured on (0: it is still the prior)."""
    estimated_wait_s: float
    """Estimated seconds from now until a new one-row request would be answered."""
    refused: int
    """Requests refused with 429 since the server started (queue full or too slow to serve)."""
    max_upload_mb: float
    """The largest upload accepted, in MiB."""
    max_minutes: float
    """The longest recording accepted, in minutes."""


# ---------------------------------------------------------------------- batching


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


@dataclass
class Batcher:
    """Collects queued rows into batches and runs them on the model, one batch at a time."""

    model: SpeechLLM
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
        self._arrivals = 0
        # The batch in the model now: (rows, requests, perf_counter when it started).
        self._running: tuple[int, int, float] | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: the model runs one batch at a time, never two concurrently.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speechllm-model")

    @property
    def queued(self) -> int:
        """Requests with rows waiting for the model."""
        return len(self._live())

    @property
    def queued_rows(self) -> int:
        return sum(j.left for j in self._live())

    @property
    def in_model(self) -> int:
        return self._running[1] if self._running else 0

    def _live(self) -> list[_Job]:
        """Queued jobs still waiting for an answer (not timed out or abandoned), in order."""
        return [j for j in self._pending if not j.future.done()]

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

    def _plan(self, rows: int, deadline: float, now: float) -> tuple[float, list[float], int]:
        """For a new request of `rows` rows due by `deadline`, queued now: (estimated perf_counter
        of its answer, by how many seconds it or each queued request it would delay would miss
        its deadline (empty: all in time), requests ahead of it, the batch in the model's
        included)."""
        live = self._live()
        key = (deadline, self._arrivals)
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

    def check(self, rows: int, deadline: float) -> None:
        """Raise BusyError (after counting it) unless a request of `rows` rows due by `deadline`
        (perf_counter) can be queued now: the queue has room for its rows (or is empty), and the
        estimate says it, and every queued request it would delay, would still be answered in
        time. An idle server takes every request (refusing would not get it answered sooner)."""
        now = time.perf_counter()
        queued = self.queued_rows
        if self.config.max_queue == 0 or (queued and queued + rows > self.config.max_queue):
            _, left = self._seconds_per_row(now)
            self.refused += 1
            # The queue shrinks when the batch in the model ends and the next one is taken.
            raise QueueFullError(max(1, math.ceil(left)))
        if not self._live() and self._running is None:
            return
        done, late, ahead = self._plan(rows, deadline, now)
        if late:
            self.refused += 1
            raise OverloadedError(max(1, math.ceil(max(late))), done - now, ahead)

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
        self._executor.shutdown(wait=False, cancel_futures=True)

    def submit(
        self, clips: list[np.ndarray], tasks: list[str], deadline: float = math.inf
    ) -> asyncio.Future[_Answer]:
        """Queue one request (one clip, or the pieces of a recording) due by `deadline`
        (perf_counter); its future gives (answers per task for each clip, encode_s, generate_s).

        Raises QueueFullError when the queue has no room for its rows, OverloadedError when the
        estimate says it would not be answered in time (see `check`).
        """
        if not clips or not tasks:
            raise ValueError("a request needs at least one clip and one task")
        self.start()
        self.check(len(clips) * len(tasks), deadline)
        future = asyncio.get_running_loop().create_future()
        job = _Job(list(clips), list(tasks), future, deadline, self._arrivals)
        self._arrivals += 1
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
                results = await loop.run_in_executor(self._executor, _run_batch, self.model, items)
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


def _run_batch(
    model: SpeechLLM, items: list[tuple[np.ndarray, list[str]]]
) -> list[tuple[dict[str, str], float, float]]:
    """Encode all clips in one call and generate every (clip, task) answer in one call."""
    import torch

    from speechllm.data.sampler import collate_frames

    t0 = time.perf_counter()
    with torch.no_grad():
        frames, lengths = model.encoder([audio for audio, _ in items])
    clips = [f[: int(n)] for f, n in zip(frames, lengths, strict=True)]
    t1 = time.perf_counter()
    rows = [(i, task) for i, (_, tasks) in enumerate(items) for task in tasks]
    x, x_lengths = collate_frames([clips[i] for i, _ in rows])
    answers = model.generate(x, x_lengths, [task for _, task in rows])
    t2 = time.perf_counter()
    per: list[dict[str, str]] = [{} for _ in items]
    for (i, task), answer in zip(rows, answers, strict=True):
        per[i][task] = answer
    return [(p, t1 - t0, t2 - t1) for p in per]


# ---------------------------------------------------------------------- app


def create_app(
    model: SpeechLLM, config: ServerConfig | None = None, *, name: str | None = None
) -> FastAPI:
    """The FastAPI app serving `model` (in eval mode) under `config`'s limits.

    `name` is what `/healthz` reports as the model (default: the encoder and LLM it is built on).
    """
    from speechllm.inference.decode import understand
    from speechllm.inference.longform import join_results, split_speech

    config = config or ServerConfig()
    model.eval()
    batcher = Batcher(model, config)
    model_name = name or f"{Path(model.config.encoder).name}+{Path(model.config.llm).name}"

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            batcher.close()

    app = FastAPI(
        title="speechllm",
        summary="Speech recognition, named entities and sentiment from one audio upload.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.config = config

    @app.middleware("http")
    async def refuse_early(request: Request, call_next: Any) -> Any:
        # Refuse before the multipart body is read and spooled (parsing a 1 MB upload costs
        # tens of ms on a busy CPU): too large where the client says its size, and too busy
        # where even one row (every task is one row) would miss its deadline. The endpoint
        # checks again with the clip's real number of pieces.
        if request.url.path != "/v1/understand" or request.method != "POST":
            return await call_next(request)
        length = request.headers.get("content-length")
        if (
            length is not None
            and length.isdigit()
            and int(length) > config.max_upload_bytes + _MULTIPART_SLACK
        ):
            return JSONResponse(status_code=413, content={"detail": _too_large(config)})
        try:
            batcher.check(1, time.perf_counter() + config.request_timeout_s)
        except BusyError as exc:
            busy = _busy(exc, config)
            return JSONResponse(
                status_code=busy.status_code, content={"detail": busy.detail}, headers=busy.headers
            )
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        """The web page: upload or record a clip, see transcript, entities and sentiment."""
        return FileResponse(
            WEB_DIR / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-cache"},
        )

    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """Liveness (the server is up and has its model loaded), the queue and the service-time
        estimate that admission control uses."""
        est = batcher.estimate
        return Health(
            status="ok",
            model=model_name,
            queue=batcher.queued,
            queued_rows=batcher.queued_rows,
            in_model=batcher.in_model,
            service_seconds_per_row=est.seconds_per_row,
            service_seconds_per_request=est.seconds_per_request,
            measured_batches=est.batches,
            estimated_wait_s=batcher.answer_in(1),
            refused=batcher.refused,
            max_upload_mb=config.max_upload_mb,
            max_minutes=config.max_minutes,
        )

    @app.post(
        "/v1/understand",
        response_model=UnderstandResponse | LongUnderstandResponse,
        responses={
            200: {
                "description": "The answer: for a clip of at most `max_seconds`, its transcript, "
                "entities and sentiment (UnderstandResponse); for a longer recording, split at "
                "its pauses, the joined answer with timed entities and its pieces "
                "(LongUnderstandResponse)"
            },
            413: {"description": "Upload too large, or audio longer than `max_minutes`"},
            422: {"description": "Not usable audio, or an unknown task"},
            429: {
                "description": "Too many rows waiting, or the estimated wait is longer than "
                "the request timeout; the Retry-After header says when to try again (s)"
            },
            504: {"description": "No answer within the request timeout"},
        },
    )
    async def understand_audio(
        audio: UploadFile = File(description="An audio file (WAV, FLAC, OGG, ...), any rate."),
        task: Literal["asr", "ner", "sa", "all"] = Form(
            "all",
            description="What to answer: asr, ner, sa, or all (transcript, entities and "
            "sentiment in one generation).",
        ),
    ) -> dict[str, Any]:
        """Transcribe / tag entities / judge sentiment of one uploaded recording.

        A recording longer than `max_seconds` (30 s) is split at its pauses and answered piece
        by piece, as `speechllm infer` does: one transcript, entities with the times of their
        piece, the overall sentiment and the pieces. It is given `request_timeout_s` per piece."""
        start = time.perf_counter()
        tasks = [task]
        data = await audio.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise HTTPException(status_code=413, detail=_too_large(config))
        try:  # refuse what cannot be served in time before spending CPU on decoding it
            batcher.check(len(tasks), start + config.request_timeout_s)
        except BusyError as exc:
            raise _busy(exc, config) from None
        filename = audio.filename or "upload"
        try:
            # max_minutes: refused before resampling, whatever sample rate the header claims.
            wav = await run_in_threadpool(
                decode_audio_bytes, data, filename, max_seconds=config.max_minutes * 60
            )
        except AudioTooLongError as exc:
            raise HTTPException(
                status_code=413,
                detail=f"{filename}: {exc.reason} (this server accepts recordings of at most "
                f"{config.max_minutes:g} min)",
            ) from exc
        except AudioError as exc:
            raise HTTPException(status_code=422, detail=f"{filename}: {exc.reason}") from exc
        except Exception as exc:  # a decoder failure we do not know: still the upload's fault
            raise HTTPException(
                status_code=422, detail=f"{filename}: not a readable audio file ({exc})"
            ) from exc
        del data
        segments = None  # the pieces of a long recording
        clips = [wav]
        if len(wav) > config.max_seconds * SAMPLE_RATE:
            segments = await run_in_threadpool(split_speech, wav, config.max_seconds)
            clips = [s.audio for s in segments]
        decode_s = time.perf_counter() - start
        answers: list[dict[str, str]] = []
        encode_s = generate_s = 0.0
        if clips:  # a recording with no speech in it has no piece: nothing to ask the model
            timeout_s = config.request_timeout_s * len(clips)
            try:
                future = batcher.submit(clips, tasks, start + timeout_s)
            except BusyError as exc:
                raise _busy(exc, config) from None
            left = timeout_s - (time.perf_counter() - start)
            try:
                answers, encode_s, generate_s = await asyncio.wait_for(
                    asyncio.shield(future), max(left, 0.0)
                )
            except TimeoutError:
                pieces = f" ({len(clips)} pieces)" if segments is not None else ""
                raise HTTPException(
                    status_code=504,
                    detail=f"no answer within {timeout_s:g} s{pieces}; retry later",
                ) from None
            except AudioError as exc:
                raise HTTPException(status_code=422, detail=f"{filename}: {exc.reason}") from exc
            finally:
                # Timed out or the client went away: the worker skips what is still queued.
                if not future.done():
                    future.cancel()
        if segments is None:
            result = understand(answers[0])
        else:
            result = join_results(segments, [understand(a) for a in answers], tasks)
        result["timings"] = {
            "decode_s": decode_s,
            "encode_s": encode_s,
            "generate_s": generate_s,
            "total_s": time.perf_counter() - start,
        }
        return result

    return app


def _busy(exc: BusyError, config: ServerConfig) -> HTTPException:
    """429 with Retry-After (whole seconds, from the estimate) for a request refused now."""
    retry = exc.retry_after_s
    if isinstance(exc, OverloadedError):
        detail = (
            f"server busy: an answer would take about {exc.answer_in_s:.1f} s "
            f"({exc.ahead} requests ahead) and miss the {config.request_timeout_s:g} s "
            f"timeout per piece (this request's, or that of one queued before it); retry in "
            f"{retry} s"
        )
    else:
        detail = (
            f"server busy: the queue has no room for this request (at most {config.max_queue} "
            f"rows wait; a long recording brings one per piece); retry in {retry} s"
        )
    return HTTPException(status_code=429, detail=detail, headers={"Retry-After": str(retry)})


def _too_large(config: ServerConfig) -> str:
    return f"upload too large: this server accepts at most {config.max_upload_mb:g} MiB"
