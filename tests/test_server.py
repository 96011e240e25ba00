"""The HTTP server on a tiny model: answers, batching, limits and bad uploads (no uvicorn)."""

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from speechllm.audio import decode_audio_bytes
from speechllm.cli import app as cli_app
from speechllm.config import AdapterConfig, ModelConfig
from speechllm.errors import ConfigError
from speechllm.inference import understand
from speechllm.model import SpeechLLM
from speechllm.prompts import TASKS
from speechllm.server import ServerConfig, create_app


@pytest.fixture(scope="module")
def model(tiny_dirs):
    w, lm = tiny_dirs
    torch.manual_seed(0)
    m = SpeechLLM.from_config(
        ModelConfig(encoder=str(w), llm=str(lm), adapter=AdapterConfig(hidden=48), max_new_tokens=6)
    ).eval()
    with torch.no_grad():  # a random adapter that moves the answers with the audio
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    return m


def tone(seconds=0.6, freq=300.0, sr=16000, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 3.7 * freq * t)
    x = x.astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def wav_bytes(audio, sr=16000, subtype="PCM_16", fmt="WAV"):
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def post(client, data, task="all", name="clip.wav"):
    return client.post(
        "/v1/understand", files={"audio": (name, data, "audio/wav")}, data={"task": task}
    )


def expected(model, data, tasks):
    """What the library gives for the clip alone (the server's answers must equal it)."""
    wav = decode_audio_bytes(data, "x")
    frames, lengths = model.encoder([wav])
    answers = {
        t: model.generate(frames, lengths, [t])[0]
        for t in (list(TASKS) if tasks == "all" else [tasks])
    }
    return understand(answers)


def content(response):
    """The response without the timings (which differ run to run)."""
    body = response.json()
    body.pop("timings")
    return body


def test_healthz_and_openapi(model):
    with TestClient(create_app(model, name="tiny")) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "model": "tiny"}
        paths = client.get("/openapi.json").json()["paths"]
    assert "/healthz" in paths and "/v1/understand" in paths
    assert "post" in paths["/v1/understand"]


@pytest.mark.parametrize("task", ["asr", "ner", "sa", "all"])
def test_each_task_on_a_real_wav(model, task):
    data = wav_bytes(tone())
    with TestClient(create_app(model)) as client:
        r = post(client, data, task)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["raw"]) == (set(TASKS) if task == "all" else {task})
    assert set(body["timings"]) == {"decode_s", "encode_s", "generate_s", "total_s"}
    assert body["timings"]["total_s"] >= body["timings"]["decode_s"] >= 0
    want = expected(model, data, task)
    for key in ("raw", "parse_failures", "transcript", "sentiment", "entities"):
        assert body[key] == want.get(key), key


def test_works_without_the_lifespan(model):
    client = TestClient(create_app(model))  # no `with`: every request runs on a fresh loop
    assert post(client, wav_bytes(tone()), "asr").status_code == 200
    assert post(client, wav_bytes(tone()), "sa").status_code == 200


def test_unknown_task_is_422(model):
    with TestClient(create_app(model)) as client:
        r = post(client, wav_bytes(tone()), "pos")
    assert r.status_code == 422


def test_concurrent_requests_are_batched_and_equal_sequential_answers(model):
    clips = [wav_bytes(tone(0.3 + 0.15 * i, 180.0 + 70 * i)) for i in range(6)]
    tasks = ["all", "asr", "sa", "ner", "all", "asr"]
    config = ServerConfig(max_batch=8, batch_wait_ms=1500)
    with TestClient(create_app(model, ServerConfig(batch_wait_ms=0))) as client:
        sequential = [content(post(client, c, t)) for c, t in zip(clips, tasks, strict=True)]
    app = create_app(model, config)
    with TestClient(app) as client, ThreadPoolExecutor(len(clips)) as pool:
        responses = list(pool.map(lambda ct: post(client, *ct), zip(clips, tasks, strict=True)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert [content(r) for r in responses] == sequential
    assert max(app.state.batcher.batch_sizes) > 1, app.state.batcher.batch_sizes
    assert sum(app.state.batcher.batch_sizes) == len(clips)


def truncated_wav():
    data = wav_bytes(tone(1.0))
    return data[: len(data) // 2]


def nan_wav():
    audio = tone(0.5)
    audio[100] = np.nan
    return wav_bytes(audio, subtype="FLOAT")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (truncated_wav(), "truncated"),
        (b"this is not audio at all " * 40, "not a readable audio file"),
        (nan_wav(), "NaN"),
        (wav_bytes(tone(0.02)), "too short"),
    ],
    ids=["empty", "truncated", "not-audio", "nan", "too-short"],
)
def test_bad_audio_is_422_with_the_reason(model, data, reason):
    with TestClient(create_app(model)) as client:
        r = post(client, data, "asr", name="bad.wav")
        assert r.status_code == 422, r.text
        assert reason in r.json()["detail"] and "bad.wav" in r.json()["detail"]
        # The worker is not hurt: a good clip is answered next.
        assert post(client, wav_bytes(tone()), "asr").status_code == 200


@pytest.mark.parametrize(
    ("sr", "channels"), [(8000, 1), (44100, 2)], ids=["8kHz-mono", "44.1kHz-stereo"]
)
def test_other_rates_and_stereo_are_resampled(model, sr, channels):
    data = wav_bytes(tone(0.8, sr=sr, channels=channels), sr=sr)
    assert len(decode_audio_bytes(data, "x")) == pytest.approx(0.8 * 16000, abs=2)
    with TestClient(create_app(model)) as client:
        r = post(client, data, "all")
    assert r.status_code == 200, r.text
    assert content(r)["raw"] == expected(model, data, "all")["raw"]


def test_upload_too_large_is_413(model):
    app = create_app(model, ServerConfig(max_upload_mb=0.01))  # 10 KiB
    with TestClient(app) as client:
        r = post(client, wav_bytes(tone(1.0)))  # 32 KB: refused when read
        assert r.status_code == 413 and "MiB" in r.json()["detail"]
        r = post(client, wav_bytes(tone(3.0)))  # 96 KB: refused by its Content-Length
        assert r.status_code == 413 and "MiB" in r.json()["detail"]
    assert not app.state.batcher.batch_sizes


def test_audio_too_long_is_413(model):
    with TestClient(create_app(model, ServerConfig(max_seconds=1.0))) as client:
        r = post(client, wav_bytes(tone(2.0)), "asr")
        assert r.status_code == 413
        assert "2.0 s long" in r.json()["detail"] and "at most 1 s" in r.json()["detail"]
        assert post(client, wav_bytes(tone(0.9)), "asr").status_code == 200


def test_no_queue_room_is_429(model):
    with TestClient(create_app(model, ServerConfig(max_queue=0))) as client:
        r = post(client, wav_bytes(tone()), "asr")
    assert r.status_code == 429 and "busy" in r.json()["detail"]


@pytest.fixture
def paused(model, monkeypatch):
    """Make model.generate block until released: (started, release) events."""
    started, release = threading.Event(), threading.Event()
    real = model.generate

    def blocking(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", blocking)
    yield started, release
    release.set()


def test_full_queue_is_429_while_the_model_is_busy(model, paused):
    started, release = paused
    app = create_app(model, ServerConfig(max_queue=1, batch_wait_ms=0))
    data = wav_bytes(tone())
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, client, data, "asr")
        assert started.wait(30)  # the first request is in the model
        second = pool.submit(post, client, data, "asr")
        deadline = time.monotonic() + 30
        while app.state.batcher.queued < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.state.batcher.queued == 1
        third = post(client, data, "asr")
        assert third.status_code == 429
        release.set()
        assert first.result().status_code == 200
        assert second.result().status_code == 200
        assert content(first.result()) == content(second.result())


def test_request_timeout_is_504(model, paused):
    started, release = paused
    with TestClient(create_app(model, ServerConfig(request_timeout_s=0.5))) as client:
        r = post(client, wav_bytes(tone()), "asr")
        assert r.status_code == 504 and "0.5 s" in r.json()["detail"]
        assert started.is_set()  # it timed out in the model, not in the queue
        release.set()
        assert post(client, wav_bytes(tone()), "asr").status_code == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_seconds": 31},
        {"max_seconds": 0},
        {"max_queue": -1},
        {"max_batch": 0},
        {"max_upload_mb": 0},
        {"request_timeout_s": 0},
    ],
)
def test_bad_server_config_is_refused(kwargs):
    with pytest.raises(ConfigError):
        ServerConfig(**kwargs)


def test_serve_help_lists_the_limits():
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in (
        "--model",
        "--host",
        "--port",
        "--max-upload-mb",
        "--max-seconds",
        "--max-queue",
        "--batch-wait-ms",
        "--request-timeout-s",
    ):
        assert option in result.output
