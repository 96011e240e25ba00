"""HTTP inference server: `POST /v1/understand` (an audio upload -> transcript, entities, sentiment).

Requests that arrive together are answered by one batched model call: each request's audio is
decoded (and checked) in the request handler, then queued; a single background worker (an asyncio
task) takes up to `max_batch` queued requests, waiting at most `batch_wait_ms` for more after the
first, encodes their audio in one encoder call and decodes every (request, task) pair in one
`SpeechLLM.generate` call, run in a thread (torch is not async). Batched encoding and batched greedy
decoding give each clip the answers it gets alone, so batching changes only the speed.

Admission control keeps latency bounded: the server measures how long the model takes per row (one
(request, task) answer) as an exponentially weighted average over its batches (`ServiceEstimate`,
a prior until the first batch is measured). A request is refused at once with 429 and a
`Retry-After` header when the estimate says it (or a request queued in the batch it would join)
would not be answered within the request timeout: the time left of the batch in the model, plus
the batches queued ahead of it, plus its own batch. It is checked before the upload is decoded and
again when the request is queued. An idle server accepts every request. `GET /healthz` reports the
estimate and the queue.

`GET /` serves a small web page (static files in `speechllm/web/`, no build step) that uploads or
records a clip and shows the answer, entities highlighted in the transcript.

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
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from speechllm.audio import SAMPLE_RATE, decode_audio_bytes
from speechllm.errors import AudioError, AudioTooLongError, ConfigError
from speechllm.model import SpeechLLM

WHISPER_MAX_SECONDS = 30.0
"""The encoder's window: longer clips cannot be encoded at all."""

# Multipart framing (boundaries, part headers, the task field) on top of the file itself.
_MULTIPART_SLACK = 64 * 1024

WEB_DIR = Path(str(resources.files("speechllm") / "web"))
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

    max_seconds: float = 30.0
    """Longest accepted clip in seconds, after decoding; a longer one gets 413. At most 30 (the
    Whisper encoder's window)."""

    max_queue: int = 64
    """Requests that may wait for the model (not counting the batch being computed); a request
    arriving when this many wait gets 429. 0 refuses every request (maintenance)."""

    max_batch: int = 8
    """Most requests answered by one model call (a request for task `all` is 3 rows of it)."""

    batch_wait_ms: float = 10.0
    """How long the worker waits for more requests after the first of a batch arrives, in ms."""

    request_timeout_s: float = 60.0
    """Longest a request waits for its answer (queue + model) before it gets 504. A request that
    the service-time estimate says would wait longer is refused at once with 429."""

    prior_seconds_per_row: float = 2.0
    """Model seconds per row (one (request, task) answer) assumed until the first batch has been
    measured (the order of the shipped 135M model on one CPU core); the first measurement replaces
    it. Too low a prior lets a cold burst in that then times out (504); too high refuses more of
    it (429) until the first batch is measured."""

    estimate_weight: float = 0.3
    """Weight of the newest batch in the running average of seconds per row (1 = only the last
    batch counts)."""

    def __post_init__(self) -> None:
        if not self.max_upload_mb > 0:
            raise ConfigError(f"max_upload_mb must be positive, got {self.max_upload_mb}")
        if not 0 < self.max_seconds <= WHISPER_MAX_SECONDS:
            raise ConfigError(
                f"max_seconds must be in (0, {WHISPER_MAX_SECONDS:g}] (the encoder's window), "
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

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


# ---------------------------------------------------------------------- responses


class Timings(BaseModel):
    """Seconds spent per stage. encode_s / generate_s are those of the whole batch the request
    was answered in; total_s runs from the request's arrival to its answer (queueing included)."""

    decode_s: float
    encode_s: float
    generate_s: float
    total_s: float


class UnderstandResponse(BaseModel):
    transcript: str | None = None
    entities: list[list[str]] | None = None
    sentiment: str | None = None
    raw: dict[str, str]
    parse_failures: list[str]
    timings: Timings


class Health(BaseModel):
    status: str
    model: str
    queue: int
    """Requests waiting for the model (not counting those in it)."""
    in_model: int
    """Requests in the batch the model is computing now."""
    service_seconds_per_row: float
    """Estimated model seconds per row (one (request, task) answer: a request for task `all`
    is one row per task)."""
    service_seconds_per_request: float
    """Estimated model seconds per request (per row x the average rows per request)."""
    measured_batches: int
    """Batches the estimate was measured on (0: it is still the prior)."""
    estimated_wait_s: float
    """Estimated seconds from now until a new one-row request would be answered."""
    refused: int
    """Requests refused with 429 since the server started (queue full or too slow to serve)."""


# ---------------------------------------------------------------------- batching


class BusyError(Exception):
    """The server cannot take this request now; `retry_after_s` is when to try again."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s)
        self.retry_after_s = retry_after_s


class QueueFullError(BusyError):
    """The server's queue holds `max_queue` requests already."""


class OverloadedError(BusyError):
    """The estimate says the request (or one queued in its batch) would miss its deadline."""

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


@dataclass
class _Job:
    audio: np.ndarray
    tasks: list[str]
    future: asyncio.Future[tuple[dict[str, str], float, float]]
    deadline: float = math.inf
    """time.perf_counter() by which the answer is due (arrival + request timeout)."""


@dataclass
class Batcher:
    """Collects queued requests into batches and runs them on the model, one batch at a time."""

    model: SpeechLLM
    config: ServerConfig
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))
    """Requests per model call, for the latest 10,000 calls (for tests and monitoring)."""
    estimate: ServiceEstimate = field(init=False)
    refused: int = 0
    """Requests refused with 429 (queue full or overloaded)."""

    def __post_init__(self) -> None:
        self.estimate = ServiceEstimate(
            self.config.prior_seconds_per_row, self.config.estimate_weight
        )
        self._pending: deque[_Job] = deque()
        # The batch in the model now: (rows, requests, perf_counter when it started).
        self._running: tuple[int, int, float] | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: the model runs one batch at a time, never two concurrently.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speechllm-model")

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def in_model(self) -> int:
        return self._running[1] if self._running else 0

    def _live(self) -> list[_Job]:
        """Queued jobs still waiting for an answer (not timed out or abandoned)."""
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

    def answer_in(self, rows: int, now: float | None = None) -> float:
        """Estimated seconds until a request of `rows` rows, queued now, would be answered."""
        now = time.perf_counter() if now is None else now
        done, _, _ = self._plan(rows, now)
        return done - now

    def _plan(self, rows: int, now: float) -> tuple[float, float, int]:
        """(estimated perf_counter of the answer to a new request of `rows` rows, the earliest
        deadline among the queued requests in the batch it would join, requests ahead of it).

        The worker takes queued requests first in, first out, `max_batch` at a time, waiting up
        to `batch_wait_ms` to fill each batch."""
        per_row, left = self._seconds_per_row(now)
        live = self._live()
        mb = self.config.max_batch
        wait = self.config.batch_wait_ms / 1000
        t = now + left
        start = len(live) - len(live) % mb  # where the new request's batch starts in the queue
        for i in range(0, start, mb):
            t += wait + per_row * sum(len(j.tasks) for j in live[i : i + mb])
        group = live[start:]
        t += wait + per_row * (rows + sum(len(j.tasks) for j in group))
        earliest = min((j.deadline for j in group), default=math.inf)
        return t, earliest, len(live) + self.in_model

    def check(self, rows: int, deadline: float) -> None:
        """Raise BusyError (after counting it) unless a request of `rows` rows due by `deadline`
        (perf_counter) can be queued now: the queue has room and the estimate says it, and every
        request queued in the batch it would join, would still be answered in time. An idle
        server takes every request (refusing would not get it answered sooner)."""
        now = time.perf_counter()
        if len(self._pending) >= self.config.max_queue:
            _, left = self._seconds_per_row(now)
            self.refused += 1
            # The queue shrinks when the batch in the model ends and the next one is taken.
            raise QueueFullError(max(1, math.ceil(left)))
        done, earliest, ahead = self._plan(rows, now)
        if ahead == 0:
            return
        due = min(deadline, earliest)
        if done > due:
            self.refused += 1
            raise OverloadedError(max(1, math.ceil(done - due)), done - now, ahead)

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
        self, audio: np.ndarray, tasks: list[str], deadline: float = math.inf
    ) -> asyncio.Future[tuple[dict[str, str], float, float]]:
        """Queue one request due by `deadline` (perf_counter); its future gives (answers per
        task, encode_s, generate_s).

        Raises QueueFullError when `max_queue` requests wait already, OverloadedError when the
        estimate says it would not be answered in time (see `check`).
        """
        self.start()
        self.check(len(tasks), deadline)
        job = _Job(audio, tasks, asyncio.get_running_loop().create_future(), deadline)
        self._pending.append(job)
        assert self._wakeup is not None
        self._wakeup.set()
        return job.future

    async def _worker(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = loop.time() + self.config.batch_wait_ms / 1000
            while len(self._pending) < self.config.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), left)
            batch: list[_Job] = []
            while self._pending and len(batch) < self.config.max_batch:
                job = self._pending.popleft()
                if not job.future.done():  # timed out or disconnected while queued: skip
                    batch.append(job)
            if not batch:
                continue
            self.batch_sizes.append(len(batch))
            rows = sum(len(j.tasks) for j in batch)
            started = time.perf_counter()
            self._running = (rows, len(batch), started)
            try:
                results = await loop.run_in_executor(
                    self._executor, _run_batch, self.model, [(j.audio, j.tasks) for j in batch]
                )
            except Exception as exc:  # the model failed: fail this batch, keep serving
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self._running = None
            self.estimate.observe(time.perf_counter() - started, rows, len(batch))
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)


def _run_batch(
    model: SpeechLLM, items: list[tuple[np.ndarray, list[str]]]
) -> list[tuple[dict[str, str], float, float]]:
    """Encode all clips in one call and generate every (clip, task) answer in one call."""
    import torch

    from speechllm.data import collate_frames

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
    from speechllm.inference import understand

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
    async def refuse_large_bodies(request: Request, call_next: Any) -> Any:
        # Refuse before the multipart body is read and spooled, where the client says its size.
        length = request.headers.get("content-length")
        if (
            request.url.path == "/v1/understand"
            and length is not None
            and length.isdigit()
            and int(length) > config.max_upload_bytes + _MULTIPART_SLACK
        ):
            return JSONResponse(status_code=413, content={"detail": _too_large(config)})
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
            in_model=batcher.in_model,
            service_seconds_per_row=est.seconds_per_row,
            service_seconds_per_request=est.seconds_per_request,
            measured_batches=est.batches,
            estimated_wait_s=batcher.answer_in(1),
            refused=batcher.refused,
        )

    @app.post(
        "/v1/understand",
        response_model=UnderstandResponse,
        responses={
            413: {"description": "Upload or audio too long"},
            422: {"description": "Not usable audio, or an unknown task"},
            429: {
                "description": "Too many requests waiting, or the estimated wait is longer than "
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
        """Transcribe / tag entities / judge sentiment of one uploaded clip."""
        start = time.perf_counter()
        deadline = start + config.request_timeout_s
        tasks = [task]
        data = await audio.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise HTTPException(status_code=413, detail=_too_large(config))
        try:  # refuse what cannot be served in time before spending CPU on decoding it
            batcher.check(len(tasks), deadline)
        except BusyError as exc:
            raise _busy(exc, config) from None
        filename = audio.filename or "upload"
        try:
            # max_seconds: refused before resampling, whatever sample rate the header claims.
            wav = await run_in_threadpool(
                decode_audio_bytes, data, filename, max_seconds=config.max_seconds
            )
        except AudioTooLongError as exc:
            raise HTTPException(status_code=413, detail=f"{filename}: {exc.reason}") from exc
        except AudioError as exc:
            raise HTTPException(status_code=422, detail=f"{filename}: {exc.reason}") from exc
        except Exception as exc:  # a decoder failure we do not know: still the upload's fault
            raise HTTPException(
                status_code=422, detail=f"{filename}: not a readable audio file ({exc})"
            ) from exc
        seconds = len(wav) / SAMPLE_RATE
        if seconds > config.max_seconds:
            raise HTTPException(
                status_code=413,
                detail=f"{filename}: audio is {seconds:.1f} s long; this server accepts at most "
                f"{config.max_seconds:g} s",
            )
        decode_s = time.perf_counter() - start
        try:
            future = batcher.submit(wav, tasks, deadline)
        except BusyError as exc:
            raise _busy(exc, config) from None
        left = config.request_timeout_s - (time.perf_counter() - start)
        try:
            answers, encode_s, generate_s = await asyncio.wait_for(
                asyncio.shield(future), max(left, 0.0)
            )
        except TimeoutError:
            raise HTTPException(
                status_code=504,
                detail=f"no answer within {config.request_timeout_s:g} s; retry later",
            ) from None
        except AudioError as exc:
            raise HTTPException(status_code=422, detail=f"{filename}: {exc.reason}") from exc
        finally:
            # Timed out or the client went away: the worker skips it if it is still queued.
            if not future.done():
                future.cancel()
        result = understand(answers)
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
            f"timeout (this request's, or that of one queued before it); retry in {retry} s"
        )
    else:
        detail = f"server busy: {config.max_queue} requests are waiting; retry in {retry} s"
    return HTTPException(status_code=429, detail=detail, headers={"Retry-After": str(retry)})


def _too_large(config: ServerConfig) -> str:
    return f"upload too large: this server accepts at most {config.max_upload_mb:g} MiB"
