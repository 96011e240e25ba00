"""HTTP inference server: `POST /v1/understand` (an audio upload -> transcript, entities, sentiment).

Requests that arrive together are answered by one batched model call: each request's audio is
decoded (and checked) in the request handler, then queued; a single background worker (an asyncio
task) takes up to `max_batch` queued requests, waiting at most `batch_wait_ms` for more after the
first, encodes their audio in one encoder call and decodes every (request, task) pair in one
`SpeechLLM.generate` call, run in a thread (torch is not async). Batched encoding and batched greedy
decoding give each clip the answers it gets alone, so batching changes only the speed.

`GET /` serves a small web page (static files in `speechllm/web/`, no build step) that uploads or
records a clip and shows the answer, entities highlighted in the transcript.

Build the app with `create_app(model, ServerConfig(...))`; `speechllm serve` runs it with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from speechllm.prompts import TASKS

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
    """Longest a request waits for its answer (queue + model) before it gets 504."""

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


# ---------------------------------------------------------------------- batching


class QueueFullError(Exception):
    """The server's queue holds `max_queue` requests already."""


@dataclass
class _Job:
    audio: np.ndarray
    tasks: list[str]
    future: asyncio.Future[tuple[dict[str, str], float, float]]


@dataclass
class Batcher:
    """Collects queued requests into batches and runs them on the model, one batch at a time."""

    model: SpeechLLM
    config: ServerConfig
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))
    """Requests per model call, for the latest 10,000 calls (for tests and monitoring)."""

    def __post_init__(self) -> None:
        self._pending: deque[_Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: the model runs one batch at a time, never two concurrently.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speechllm-model")

    @property
    def queued(self) -> int:
        return len(self._pending)

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
        self, audio: np.ndarray, tasks: list[str]
    ) -> asyncio.Future[tuple[dict[str, str], float, float]]:
        """Queue one request; its future gives (answers per task, encode_s, generate_s).

        Raises QueueFullError when `max_queue` requests wait already.
        """
        self.start()
        if len(self._pending) >= self.config.max_queue:
            raise QueueFullError
        job = _Job(audio, tasks, asyncio.get_running_loop().create_future())
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
            try:
                results = await loop.run_in_executor(
                    self._executor, _run_batch, self.model, [(j.audio, j.tasks) for j in batch]
                )
            except Exception as exc:  # the model failed: fail this batch, keep serving
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
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
        """Liveness: the server is up and has its model loaded."""
        return Health(status="ok", model=model_name)

    @app.post(
        "/v1/understand",
        response_model=UnderstandResponse,
        responses={
            413: {"description": "Upload or audio too long"},
            422: {"description": "Not usable audio, or an unknown task"},
            429: {"description": "Too many requests waiting"},
            504: {"description": "No answer within the request timeout"},
        },
    )
    async def understand_audio(
        audio: UploadFile = File(description="An audio file (WAV, FLAC, OGG, ...), any rate."),
        task: Literal["asr", "ner", "sa", "all"] = Form(
            "all", description="What to answer: asr, ner, sa, or all three."
        ),
    ) -> dict[str, Any]:
        """Transcribe / tag entities / judge sentiment of one uploaded clip."""
        start = time.perf_counter()
        data = await audio.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise HTTPException(status_code=413, detail=_too_large(config))
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
        tasks = list(TASKS) if task == "all" else [task]
        try:
            future = batcher.submit(wav, tasks)
        except QueueFullError:
            raise HTTPException(
                status_code=429,
                detail=f"server busy: {config.max_queue} requests are waiting; retry later",
                headers={"Retry-After": "1"},
            ) from None
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


def _too_large(config: ServerConfig) -> str:
    return f"upload too large: this server accepts at most {config.max_upload_mb:g} MiB"
