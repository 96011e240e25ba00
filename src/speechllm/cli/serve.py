"""`speechllm serve` (the HTTP server and its web page) and `speechllm demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speechllm.cli.common import (
    ModelOption,
    Runtime,
    RuntimeOption,
    app,
    fail,
    load_model,
    model_dir,
    quiet_libraries,
)
from speechllm.data.audio import WHISPER_WINDOW_SECONDS
from speechllm.errors import SpeechLLMError


@app.command()
def serve(
    model: ModelOption = None,
    runtime: RuntimeOption = Runtime.ctranslate2,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool,
        typer.Option(
            help="Run the model in a worker process (default: the event loop never waits for "
            "the model's lock, so refusals stay fast) or in a thread of the server."
        ),
    ] = True,
    max_upload_mb: Annotated[
        float, typer.Option(help="Largest upload in MiB (larger: 413).")
    ] = 25.0,
    max_seconds: Annotated[
        float,
        typer.Option(
            help="Longest piece decoded whole, 1 to 30 s; longer clips are split at pauses."
        ),
    ] = WHISPER_WINDOW_SECONDS,
    max_minutes: Annotated[
        float, typer.Option(help="Longest recording accepted, in minutes (longer: 413).")
    ] = 60.0,
    max_queue: Annotated[
        int,
        typer.Option(help="Rows (clip pieces x tasks) that may wait for the model (more: 429)."),
    ] = 64,
    max_batch: Annotated[int, typer.Option(help="Most rows answered by one model call.")] = 8,
    batch_wait_ms: Annotated[
        float, typer.Option(help="How long a batch waits for more requests, in ms.")
    ] = 10.0,
    request_timeout_s: Annotated[
        float,
        typer.Option(
            help="Longest a request waits for its answer, per piece of a long recording "
            "(longer: 504; one that cannot finish in time is refused at once with 429)."
        ),
    ] = 60.0,
    timeout_reserve: Annotated[
        float,
        typer.Option(
            help="Fraction of the timeout admission control keeps in reserve for what its "
            "model-time estimate does not see (upload decoding, CPU jitter); 0 to 1."
        ),
    ] = 0.2,
) -> None:
    """Serve the model over HTTP: POST /v1/understand (audio + task), GET /healthz, /docs."""
    import uvicorn

    from speechllm.hub.shipped import DEFAULT_MODEL
    from speechllm.serving.config import ServerConfig
    from speechllm.serving.runner import ModelSpec
    from speechllm.serving.server import create_app

    try:
        config = ServerConfig(
            max_upload_mb=max_upload_mb,
            max_seconds=max_seconds,
            max_minutes=max_minutes,
            max_queue=max_queue,
            max_batch=max_batch,
            batch_wait_ms=batch_wait_ms,
            request_timeout_s=request_timeout_s,
            timeout_reserve=timeout_reserve,
        )
    except SpeechLLMError as exc:
        fail(exc)
    name = str(model) if model else DEFAULT_MODEL
    if worker:
        from speechllm.cli import common

        spec = ModelSpec(
            str(model_dir(model)),
            Runtime(runtime).value,
            setup=None if common.VERBOSE else quiet_libraries,
        )
        # The worker's load errors reach the console; the server starts once it is loaded.
        app_ = create_app(spec, config, name=name)
    else:
        app_ = create_app(load_model(model, runtime), config, name=name)
    uvicorn.run(app_, host=host, port=port)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where data, features and the run go.")] = Path(
        "work/demo"
    ),
    show: Annotated[
        int | None, typer.Option(help="Clips shown side by side (default: the demo config's).")
    ] = None,
) -> None:
    """The shipped default on held-out and real clips, beside gold labels and the cascade."""
    from speechllm.demo import run_demo

    try:
        run_demo(workdir, show=show)
    except SpeechLLMError as exc:
        fail(exc)
