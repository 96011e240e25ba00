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
call) after the time left of the batch in the model. It is checked before the upload is read
(`AdmitEarly`, as a one-piece request: a server too busy for a short clip refuses a long one too)
and again, with its real number of rows, when the request is queued; between the two the admitted
request holds its place in the plan, so a burst of uploads is not admitted whole while its first
requests are still being read. An idle server accepts every request. The
queue (`max_queue`) counts rows as well. `GET /healthz` reports the estimate and the queue.

`GET /` serves a small web page (static files in `speechllm/serving/web/`, no build step) that uploads or
records a clip and shows the answer, entities highlighted in the transcript, and for a long
recording its entities with their times and a table of its pieces.

Build the app with `create_app(model, ServerConfig(...))`: a loaded model runs in a thread, a
`runner.ModelSpec` in a worker process (what `speechllm serve` passes); uvicorn runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from speechllm.data.audio import SAMPLE_RATE, decode_audio_bytes
from speechllm.errors import AudioError, AudioTooLongError
from speechllm.inference.longform import join_results, split_speech
from speechllm.model.answers import parse_answers
from speechllm.model.speechllm import SpeechLLM
from speechllm.serving.batcher import Batcher, BusyError, OverloadedError
from speechllm.serving.config import (
    Health,
    LongUnderstandResponse,
    ServerConfig,
    UnderstandResponse,
)
from speechllm.serving.runner import ModelRunner, ModelSpec, ProcessRunner, ThreadRunner

UNDERSTAND = "/v1/understand"
# The request state key of a request's admission ticket (`AdmitEarly`, `Batcher.hold`).
_HOLD = "admission_hold"
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


def create_app(
    model: SpeechLLM | ModelSpec, config: ServerConfig | None = None, *, name: str | None = None
) -> FastAPI:
    """The FastAPI app serving `model` under `config`'s limits: a loaded model runs in a thread
    of this process, a `ModelSpec` is loaded and run in a worker process of its own
    (`serving.runner` says why `speechllm serve` does that).

    `name` is what `/healthz` reports as the model (default: the encoder and LLM it is built on,
    or the spec's model).
    """
    config = config or ServerConfig()
    if isinstance(model, ModelSpec):
        runner: ModelRunner = ProcessRunner(model)
        model_name = name or model.model or "default"
    else:
        runner = ThreadRunner(model)
        model_name = name or f"{Path(model.config.encoder).name}+{Path(model.config.llm).name}"
    batcher = Batcher(runner, config)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runner.start()
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

    app.add_middleware(AdmitEarly, batcher=batcher, config=config)

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
            admitted=batcher.admitted,
            service_seconds_per_row=est.seconds_per_row,
            service_seconds_per_request=est.seconds_per_request,
            measured_batches=est.batches,
            estimated_wait_s=batcher.answer_in(1),
            refused=batcher.refused,
            max_upload_mb=config.max_upload_mb,
            max_minutes=config.max_minutes,
        )

    @app.post(
        UNDERSTAND,
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
        request: Request,
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
        hold: int | None = getattr(request.state, _HOLD, None)
        data = await audio.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise HTTPException(status_code=413, detail=_too_large(config))
        try:  # refuse what cannot be served in time before spending CPU on decoding it
            batcher.check(len(tasks), start + config.request_timeout_s, hold)
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
                future = batcher.submit(clips, tasks, start + timeout_s, hold)
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
            result = parse_answers(answers[0]).to_dict()
        else:
            result = join_results(segments, [parse_answers(a) for a in answers], tasks)
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


class AdmitEarly:
    """ASGI middleware: admission control for `/v1/understand` before the upload is parsed.

    413 where the client's Content-Length is over the upload limit; 429 + Retry-After where even
    one row (every task is one row) would miss its deadline. A request it admits is held in the
    batcher's plan (`Batcher.hold`) while its upload is read and decoded, so the requests of a
    burst are judged with the ones admitted just before them counted: without the hold, 32
    uploads arriving at once were all admitted here, parsed, and most of them refused by the
    route tens of ms later. The route checks again with the clip's real number of pieces.

    A plain ASGI class, not `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs every
    request through a task group and a streamed copy of its body, which costs a refusal more
    than the refusal itself.
    """

    def __init__(self, app: ASGIApp, batcher: Batcher, config: ServerConfig) -> None:
        self.app = app
        self.batcher = batcher
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != UNDERSTAND:
            await self.app(scope, receive, send)
            return
        limit = self.config.max_upload_bytes + _MULTIPART_SLACK
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            response = JSONResponse(status_code=413, content={"detail": _too_large(self.config)})
            await response(scope, receive, send)
            return
        try:
            ticket = self.batcher.hold(1, time.perf_counter() + self.config.request_timeout_s)
        except BusyError as exc:
            busy = _busy(exc, self.config)
            # Take in the upload's bytes (unparsed, at most the upload limit) before answering:
            # a server that answers and closes while the client still sends makes the client
            # see a broken connection instead of the 429.
            received = 0
            while received <= limit:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            response = JSONResponse(
                status_code=busy.status_code, content={"detail": busy.detail}, headers=busy.headers
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[_HOLD] = ticket
        try:
            await self.app(scope, receive, send)
        finally:  # answered, refused, failed or abandoned: its rows are queued or gone
            self.batcher.release(ticket)
