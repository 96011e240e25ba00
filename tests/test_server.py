"""The HTTP server on a tiny model: answers, batching, limits, admission control and bad
uploads (no uvicorn)."""

import asyncio
import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import speechllm.serving.runner
import speechllm.serving.server
from clips import tone, wav_bytes
from speechllm.cli import app as cli_app
from speechllm.data.audio import decode_audio_bytes
from speechllm.errors import ConfigError
from speechllm.inference.longform import join_results, split_speech
from speechllm.model.answers import parse_answers
from speechllm.serving.batcher import Batcher, OverloadedError, ServiceEstimate
from speechllm.serving.config import ServerConfig
from speechllm.serving.runner import ThreadRunner
from speechllm.serving.server import create_app
from test_longform import alone, concatenate, librispeech_clips


def post(client, data, task="all", name="clip.wav"):
    return client.post(
        "/v1/understand", files={"audio": (name, data, "audio/wav")}, data={"task": task}
    )


def expected(model, data, tasks):
    """What the library gives for the clip alone (the server's answers must equal it)."""
    wav = decode_audio_bytes(data, "x")
    frames, lengths = model.encoder([wav])
    # Task `all` is one generation that carries transcript, entities and sentiment together.
    return parse_answers({tasks: model.generate(frames, lengths, [tasks])[0]}).to_dict()


def content(response):
    """The response without the timings (which differ run to run)."""
    body = response.json()
    body.pop("timings")
    return body


def test_healthz_and_openapi(model):
    with TestClient(create_app(model, name="tiny")) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        body = health.json()
        paths = client.get("/openapi.json").json()["paths"]
    assert body == {
        "status": "ok",
        "model": "tiny",
        "queue": 0,
        "queued_rows": 0,
        "in_model": 0,
        "admitted": 0,
        "service_seconds_per_row": ServerConfig().prior_seconds_per_row,
        "service_seconds_per_request": ServerConfig().prior_seconds_per_row,
        "measured_batches": 0,
        "estimated_wait_s": pytest.approx(ServerConfig().prior_seconds_per_row, abs=0.02),
        "refused": 0,
        "max_upload_mb": 25.0,
        "max_minutes": 60.0,
    }
    assert "/healthz" in paths and "/v1/understand" in paths
    assert "post" in paths["/v1/understand"]


@pytest.mark.parametrize("task", ["asr", "ner", "sa", "all"])
def test_each_task_on_a_real_wav(model, task):
    data = wav_bytes(tone())
    with TestClient(create_app(model)) as client:
        r = post(client, data, task)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["raw"]) == {task}
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


def test_audio_over_max_minutes_is_413(model):
    app = create_app(model, ServerConfig(max_minutes=0.02))  # 1.2 s
    with TestClient(app) as client:
        r = post(client, wav_bytes(tone(2.0)), "asr")
        assert r.status_code == 413
        detail = r.json()["detail"]
        assert detail.startswith("clip.wav: audio is 2.0 s long; at most 1.2 s is accepted")
        assert "0.02 min" in detail
        assert post(client, wav_bytes(tone(0.9)), "asr").status_code == 200
    assert list(app.state.batcher.batch_sizes) == [1]


def test_no_queue_room_is_429(model):
    with TestClient(create_app(model, ServerConfig(max_queue=0))) as client:
        r = post(client, wav_bytes(tone()), "asr")
    assert r.status_code == 429 and "busy" in r.json()["detail"]
    assert r.headers["Retry-After"] == "1"


def test_a_busy_server_refuses_before_reading_the_upload(model):
    """The 429 comes from the admission check in front of the route: a body that is not even a
    form (which the route would answer 422 after parsing) is refused the same, unread."""
    with TestClient(create_app(model, ServerConfig(max_queue=0))) as client:
        r = client.post(
            "/v1/understand",
            content=b"not a multipart form",
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert client.get("/healthz").json()["refused"] == 1


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
    # 2 s, not less: on a loaded CI machine reading and queueing the upload can take a second,
    # and the request must time out in the (paused) model, not before it gets there.
    app = create_app(model, ServerConfig(request_timeout_s=2.0))
    with TestClient(app) as client:
        r = post(client, wav_bytes(tone()), "asr")
        assert r.status_code == 504 and "2 s" in r.json()["detail"]
        assert started.is_set()  # it timed out in the model, not in the queue
        release.set()
        # Once the model is free (a request arriving while the 2 s+ batch still runs would
        # rightly be refused: it could not be answered within 2 s).
        wait_until(lambda: app.state.batcher.in_model == 0)
        assert post(client, wav_bytes(tone()), "asr").status_code == 200


def wait_until(condition, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# ---------------------------------------------------------------------- admission control


@pytest.fixture
def slow(model, monkeypatch):
    """Make model.generate sleep `slow[0]` seconds per row before answering."""
    per_row = [0.1]
    real = model.generate

    def sleepy(x, lengths, tasks, *args, **kwargs):
        time.sleep(per_row[0] * len(tasks))
        return real(x, lengths, tasks, *args, **kwargs)

    monkeypatch.setattr(model, "generate", sleepy)
    return per_row


def timed_post(client, data, task="asr"):
    t0 = time.perf_counter()
    r = post(client, data, task)
    return r, time.perf_counter() - t0


def test_service_estimate_starts_at_the_prior_and_follows_measurements():
    est = ServiceEstimate(prior_seconds_per_row=2.0, weight=0.5)
    assert (est.seconds_per_row, est.seconds_per_request, est.batches) == (2.0, 2.0, 0)
    est.observe(1.0, rows=4, requests=4)  # the first measurement replaces the prior
    assert (est.seconds_per_row, est.batches) == (0.25, 1)
    est.observe(2.0, rows=4, requests=2)
    assert est.seconds_per_row == pytest.approx(0.375)
    assert est.rows_per_request == pytest.approx(1.5)
    assert est.seconds_per_request == pytest.approx(0.375 * 1.5)
    for _ in range(30):  # the service got faster: the estimate follows
        est.observe(0.3, rows=3, requests=3)
    assert est.seconds_per_row == pytest.approx(0.1, rel=1e-3)
    assert est.seconds_per_request == pytest.approx(0.1, rel=1e-3)


def test_healthz_estimate_follows_the_measured_service_time(model, slow):
    app = create_app(
        model, ServerConfig(prior_seconds_per_row=5.0, estimate_weight=0.5, batch_wait_ms=0)
    )
    data = wav_bytes(tone())

    def health_after(requests: int, seconds_per_row: float) -> dict:
        """/healthz after `requests` one by one, each taking `seconds_per_row` more."""
        slow[0] = seconds_per_row
        for _ in range(requests):
            assert post(client, data, "asr").status_code == 200
        return client.get("/healthz").json()

    with TestClient(app) as client:
        health = client.get("/healthz").json()
        assert health["measured_batches"] == 0 and health["service_seconds_per_row"] == 5.0
        health = health_after(3, seconds_per_row=0.1)
        assert health["measured_batches"] == 3
        # 0.1 s of sleep per row plus the tiny model's own time.
        assert 0.1 <= health["service_seconds_per_row"] < 0.3, health
        assert health["service_seconds_per_request"] == health["service_seconds_per_row"]
        idle_wait = health["estimated_wait_s"]
        assert idle_wait == pytest.approx(health["service_seconds_per_row"], abs=0.02)
        health = health_after(4, seconds_per_row=0.4)
    assert health["measured_batches"] == 7
    # Weight 0.5 over 4 batches: 15/16 of the way from ~0.1 to ~0.4.
    assert 0.37 <= health["service_seconds_per_row"] < 0.6, health
    assert health["queue"] == 0 and health["in_model"] == 0 and health["refused"] == 0


@contextlib.contextmanager
def one_request_in_the_model(
    model, paused, **config
) -> Iterator[tuple[object, TestClient, ThreadPoolExecutor, Future, bytes]]:
    """A server (no batching wait, no timeout reserve, unless `config` says otherwise) whose
    paused model holds one asr request: yields (app, client, pool, that request, the clip)."""
    started, _ = paused
    app = create_app(model, ServerConfig(**{"batch_wait_ms": 0, "timeout_reserve": 0, **config}))
    data = wav_bytes(tone())
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, client, data, "asr")
        assert started.wait(30)
        yield app, client, pool, first, data


def count_decodes(monkeypatch) -> list[int]:
    """A list that gets one entry per upload the server decodes."""
    decoded: list[int] = []
    real_decode = speechllm.serving.server.decode_audio_bytes
    monkeypatch.setattr(
        speechllm.serving.server,
        "decode_audio_bytes",
        lambda *a, **k: decoded.append(1) or real_decode(*a, **k),
    )
    return decoded


def test_a_request_that_would_miss_its_timeout_is_429_at_once(model, paused, monkeypatch):
    release = paused[1]
    # The prior says a row takes 10 s: with one request in the model, the next would be
    # answered in about 20 s, past its 15 s timeout (no reserve: the arithmetic is exact).
    config = dict(max_batch=1, request_timeout_s=15, prior_seconds_per_row=10)
    decoded = count_decodes(monkeypatch)
    with one_request_in_the_model(model, paused, **config) as (_, client, _, first, data):
        health = client.get("/healthz").json()
        assert health["in_model"] == 1 and health["queue"] == 0
        assert 15 < health["estimated_wait_s"] <= 20, health
        r, seconds = timed_post(client, data)
        assert r.status_code == 429, r.text
        assert "busy" in r.json()["detail"] and "15 s timeout" in r.json()["detail"]
        assert 3 <= int(r.headers["Retry-After"]) <= 5  # ~20 s against 15 s: 5 s too late
        assert seconds < 1.0
        assert decoded == [1]  # refused before its audio was decoded
        release.set()
        assert first.result().status_code == 200
        assert client.get("/healthz").json()["refused"] == 1


def test_a_request_is_refused_when_it_would_make_an_earlier_one_late(model, paused):
    release = paused[1]
    config = dict(max_batch=2, request_timeout_s=5, prior_seconds_per_row=1)
    with one_request_in_the_model(model, paused, **config) as (app, client, pool, first, data):
        # 1 s left of the batch in the model + 1 s for its own: due in 5 s, accepted.
        second = pool.submit(post, client, data, "asr")
        wait_until(lambda: app.state.batcher.queued == 1)
        time.sleep(2.0)
        # The batch in the model has run 2 s: a row takes 2 s, not 1. A third request would
        # share the second's batch (2 rows: 4 s): in time for itself (due in 5 s), not for the
        # second (due in 3 s).
        r = post(client, data, "asr")
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
        release.set()
        assert first.result().status_code == 200
        assert second.result().status_code == 200, second.result().text
        assert second.result().json()["timings"]["total_s"] < 5


@pytest.mark.parametrize("reserve, status", [(0.3, 200), (0.5, 429)])
def test_the_timeout_reserve_refuses_a_request_planned_to_end_inside_it(
    model, paused, reserve, status
):
    release = paused[1]
    # One row in the model (prior 3 s a row): the next would end in about 6 s, due in 10 s;
    # a reserve of 0.3 plans to end it by 7 s (in time), one of 0.5 by 5 s (too late).
    config = dict(
        max_batch=1, request_timeout_s=10, prior_seconds_per_row=3, timeout_reserve=reserve
    )
    with one_request_in_the_model(model, paused, **config) as (app, client, pool, first, data):
        second = pool.submit(post, client, data, "asr")
        if status == 429:
            r = second.result()
            assert r.status_code == 429, r.text
            assert 1 <= int(r.headers["Retry-After"]) <= 2  # ~6 s against 5 s
        else:
            wait_until(lambda: app.state.batcher.queued == 1)
        release.set()
        assert first.result().status_code == 200
        assert second.result().status_code == status


def one_row_per_call(prior_seconds_per_row: float) -> ServerConfig:
    """One row per model call, a 10 s timeout, no reserve: the plan's arithmetic is exact."""
    return ServerConfig(
        max_batch=1,
        batch_wait_ms=0,
        request_timeout_s=10,
        prior_seconds_per_row=prior_seconds_per_row,
        timeout_reserve=0,
    )


def test_admitted_uploads_count_before_they_are_queued():
    """A request admitted before its upload is read holds its row in the plan: the requests of a
    burst are judged with those admitted just before them, queued or not."""
    config = one_row_per_call(prior_seconds_per_row=3)
    batcher = Batcher(ThreadRunner.__new__(ThreadRunner), config)
    now = time.perf_counter()
    # 3 s a row, one row per call: the third ends after 9 s, the fourth after 12 s (> 10 s).
    tickets = [batcher.hold(1, now + 10) for _ in range(3)]
    assert batcher.admitted == 3 and batcher.queued_rows == 0
    with pytest.raises(OverloadedError):
        batcher.hold(1, now + 10)
    batcher.release(tickets[0])
    batcher.release(tickets[0])  # a second release is a no-op
    fourth = batcher.hold(1, now + 10)
    # Its own check does not count its hold twice; another request's does.
    batcher.check(1, now + 10, fourth)
    with pytest.raises(OverloadedError):
        batcher.check(1, now + 10)

    async def queue_it() -> None:
        batcher.start = lambda: None  # no worker: the rows stay queued
        batcher._wakeup = asyncio.Event()
        batcher.submit([np.zeros(16000, np.float32)], ["asr"], now + 10, hold=fourth)

    asyncio.run(queue_it())
    # The hold became a queued row (its place in the order kept), not an extra one.
    assert batcher.admitted == 2 and batcher.queued_rows == 1
    assert batcher._pending[0].order == fourth
    assert batcher.refused == 2


def test_a_request_whose_upload_is_still_read_is_counted_in_admission(model, monkeypatch):
    """While the first upload of a burst is being decoded (nothing queued yet), the second is
    refused at once if the two would not both be answered in time; the hold is gone once the
    first is answered, and a failed upload's hold is gone too."""
    decoding, go = threading.Event(), threading.Event()
    real_decode = speechllm.serving.server.decode_audio_bytes

    def slow_decode(*args, **kwargs):
        decoding.set()
        assert go.wait(30)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(speechllm.serving.server, "decode_audio_bytes", slow_decode)
    # A row is estimated at 6 s: one request is answered in time (10 s), two are not.
    config = one_row_per_call(prior_seconds_per_row=6)
    app = create_app(model, config)
    data = wav_bytes(tone())
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, client, data, "asr")
        assert decoding.wait(30)
        health = client.get("/healthz").json()
        assert health["admitted"] == 1 and health["queue"] == 0 and health["in_model"] == 0
        second = post(client, data, "asr")
        assert second.status_code == 429, second.text
        go.set()
        assert first.result().status_code == 200
        assert post(client, b"not audio", "asr").status_code == 422
        health = client.get("/healthz").json()
        assert health["admitted"] == 0 and health["refused"] == 1


def test_a_burst_gets_fast_429s_and_the_accepted_requests_their_answers_in_time(model, slow):
    slow[0] = 0.25  # a batch of 2 requests takes 0.5 s; 2.5 s serve about 10 requests
    config = ServerConfig(max_batch=2, batch_wait_ms=0, request_timeout_s=2.5)
    app = create_app(model, config)
    data = wav_bytes(tone())
    n = 16
    with TestClient(app) as client:
        # One request first: the estimate is measured (a 1-row batch: on the safe side).
        assert post(client, data, "asr").status_code == 200
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(lambda _: timed_post(client, data), range(n)))
        health = client.get("/healthz").json()
    statuses = [r.status_code for r, _ in results]
    assert set(statuses) <= {200, 429}, [r.text for r, _ in results if r.status_code != 200]
    accepted = [(r, s) for r, s in results if r.status_code == 200]
    refused = [(r, s) for r, s in results if r.status_code == 429]
    assert refused and len(accepted) >= 2, statuses
    assert len(accepted) <= 10, statuses
    for r, seconds in refused:
        assert int(r.headers["Retry-After"]) >= 1
        assert seconds < 1.0  # answered at once, not after queueing (~100 ms on an idle CPU)
    for r, _ in accepted:  # no 504: every accepted request was answered within its timeout
        assert r.json()["timings"]["total_s"] <= config.request_timeout_s
    assert health["refused"] == len(refused)
    assert health["measured_batches"] == len(app.state.batcher.batch_sizes)
    assert sum(app.state.batcher.batch_sizes) == 1 + len(accepted)


# ---------------------------------------------------------------------- long recordings


@pytest.fixture(scope="module")
def long_wav(shared):
    """About 77 s of real speech: the 4 LibriSpeech clips 3 times with 0.5-1.5 s silences, as a
    float WAV (the server reads back exactly these samples)."""
    audio, _, _ = concatenate(librispeech_clips(shared), repeats=3, seed=2)
    assert 70 * 16000 < len(audio) < 90 * 16000
    return wav_bytes(audio, subtype="FLOAT")


@pytest.fixture(scope="module")
def long_segments(long_wav):
    segments = split_speech(decode_audio_bytes(long_wav, "x"))
    assert len(segments) >= 8
    return segments


@pytest.mark.parametrize("task", ["all", "sa"])
def test_a_long_recording_is_split_and_joined_as_the_library_does(
    model, long_wav, long_segments, task
):
    app = create_app(model, ServerConfig(max_batch=3, batch_wait_ms=0))
    with TestClient(app) as client:
        r = post(client, long_wav, task, name="long.wav")
        health = client.get("/healthz").json()
    assert r.status_code == 200, r.text
    body = content(r)
    # Each piece answered as the library answers it alone, joined as `speechllm infer` joins.
    pieces = [alone(model, s.audio, [task]) for s in long_segments]
    want = json.loads(json.dumps(join_results(long_segments, pieces, [task])))
    assert body == {"transcript": None, "entities": None, "sentiment": None, **want}
    assert [(p["start"], p["end"]) for p in body["pieces"]] == [
        (round(s.start_s, 3), round(s.end_s, 3)) for s in long_segments
    ]
    if task == "all":
        assert body["transcript"] == " ".join(
            p["transcript"] for p in body["pieces"] if p["transcript"].strip()
        )
        assert all(len(e) == 4 for e in body["entities"])
    # One row per piece, at most max_batch per model call.
    n = len(long_segments)
    assert list(app.state.batcher.batch_sizes) == [3] * (n // 3) + ([n % 3] if n % 3 else [])
    assert health["measured_batches"] == math.ceil(n / 3)
    assert health["queue"] == health["queued_rows"] == 0


def test_a_long_silence_has_no_pieces_and_asks_the_model_nothing(model):
    quiet = (np.random.default_rng(3).standard_normal(45 * 16000) * 1e-4).astype(np.float32)
    app = create_app(model)
    with TestClient(app) as client:
        r = post(client, wav_bytes(quiet, subtype="FLOAT"), "asr")
    assert r.status_code == 200, r.text
    assert content(r) == {
        "transcript": "",
        "entities": None,
        "sentiment": None,
        "parse_failures": [],
        "pieces": [],
    }
    assert not app.state.batcher.batch_sizes


def test_a_recording_over_max_minutes_is_413(model, long_wav):
    app = create_app(model, ServerConfig(max_minutes=1))
    with TestClient(app) as client:
        r = post(client, long_wav, "all", name="long.wav")
    assert r.status_code == 413
    detail = r.json()["detail"]
    assert re.fullmatch(
        r"long\.wav: audio is 7\d\.\d s long; at most 60 s is accepted "
        r"\(this server accepts recordings of at most 1 min\)",
        detail,
    ), detail
    assert not app.state.batcher.batch_sizes


@pytest.mark.e2e
def test_a_ten_minute_recording_reads_as_well_as_its_clips(shipped_model, ten_minutes):
    """The shipped default behind the server: a 10-minute upload (task asr) gets one transcript
    within 2 WER points of the clips read one by one, and its pieces of at most 30 s."""
    # Generous: on a busy CPU the whole recording may take several minutes.
    app = create_app(shipped_model, ServerConfig(request_timeout_s=600))
    with TestClient(app) as client:
        r = post(client, ten_minutes.path.read_bytes(), "asr", name="ten-minutes.wav")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["entities"] is None and body["sentiment"] is None
    assert body["transcript"] == " ".join(
        p["transcript"] for p in body["pieces"] if p["transcript"].strip()
    )
    ten_minutes.check(body["transcript"], body["pieces"])
    print(f"server: {body['timings']['total_s']:.0f} s")


def test_a_short_clip_passes_ahead_of_the_rest_of_a_long_recording(
    model, long_wav, long_segments, paused, monkeypatch
):
    """Earliest deadline first: the long recording has a timeout per piece, so a short clip
    arriving while it is in the model is answered in the next call, not after all its pieces."""
    started, release = paused
    calls = []  # the clips of each model call, by their lengths in samples
    real_run = speechllm.serving.runner.run_batch

    def recording(model, items):
        calls.append([len(audio) for audio, _ in items])
        return real_run(model, items)

    monkeypatch.setattr(speechllm.serving.runner, "run_batch", recording)
    short = wav_bytes(tone())
    short_samples = len(decode_audio_bytes(short, "x"))
    app = create_app(model, ServerConfig(max_batch=2, batch_wait_ms=0))
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        long = pool.submit(post, client, long_wav, "asr", "long.wav")
        assert started.wait(30)  # its first two pieces are in the model
        wait_until(lambda: app.state.batcher.queued_rows == len(long_segments) - 2)
        with ThreadPoolExecutor(1) as other:
            answer = other.submit(post, client, short, "asr")
            wait_until(lambda: app.state.batcher.queued == 2)
            release.set()
            r = answer.result()
        assert r.status_code == 200, r.text
        assert long.result().status_code == 200, long.result().text
    want = expected(model, short, "asr")
    assert content(r) == {"transcript": None, "entities": None, "sentiment": None, **want}
    assert len(long.result().json()["pieces"]) == len(long_segments)
    assert [short_samples in c for c in calls] == [False, True] + [False] * (len(calls) - 2)
    assert sum(map(len, calls)) == len(long_segments) + 1


def test_the_queue_counts_the_pieces_of_a_long_recording(model, long_wav, long_segments, paused):
    started, release = paused
    n = len(long_segments)
    app = create_app(model, ServerConfig(max_queue=n - 1, max_batch=1, batch_wait_ms=0))
    short = wav_bytes(tone())
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, client, short, "asr")
        assert started.wait(30)
        # Nothing waits: a recording of more pieces than max_queue is taken (it waits alone).
        long = pool.submit(post, client, long_wav, "asr", "long.wav")
        wait_until(lambda: app.state.batcher.queued_rows == n)
        health = client.get("/healthz").json()
        assert (health["queue"], health["queued_rows"], health["in_model"]) == (1, n, 1)
        r = post(client, short, "asr")  # no room for one more row
        assert r.status_code == 429 and "rows" in r.json()["detail"], r.text
        release.set()
        assert first.result().status_code == 200
        assert long.result().status_code == 200, long.result().text
    assert len(long.result().json()["pieces"]) == n


def test_a_long_recording_that_cannot_be_answered_in_time_is_429_at_once(
    model, long_wav, paused, monkeypatch
):
    started, release = paused
    # 100 s per row against 60 s per piece: it would never catch up.
    config = ServerConfig(max_batch=1, batch_wait_ms=0, prior_seconds_per_row=100)
    app = create_app(model, config)
    decoded = count_decodes(monkeypatch)
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, client, wav_bytes(tone()), "asr")
        assert started.wait(30)
        r, seconds = timed_post(client, long_wav, "all")
        assert r.status_code == 429, r.text
        assert seconds < 2.0 and decoded == [1]  # refused before its audio was decoded
        assert int(r.headers["Retry-After"]) >= 1
        release.set()
        assert first.result().status_code == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_seconds": 31},
        {"max_seconds": 0},
        {"max_seconds": 0.5},
        {"max_minutes": 0},
        {"max_queue": -1},
        {"max_batch": 0},
        {"max_upload_mb": 0},
        {"request_timeout_s": 0},
        {"prior_seconds_per_row": 0},
        {"estimate_weight": 0},
        {"estimate_weight": 1.5},
        {"timeout_reserve": -0.1},
        {"timeout_reserve": 1},
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


def test_a_model_spec_runs_in_a_worker_process_that_is_replaced_when_it_dies(model, tmp_path):
    """`speechllm serve`'s way: the model loaded and run in a spawned worker process; its
    answers are the in-process model's, and a worker killed mid-service fails only its batch."""
    import os
    import signal

    from speechllm.serving.runner import ModelSpec

    folder = model.save_pretrained(tmp_path / "model")
    data = wav_bytes(tone())
    app = create_app(ModelSpec(str(folder), "torch", threads=1), name="tiny")
    with TestClient(app) as client:  # starting waits for the worker's model
        assert client.get("/healthz").json()["model"] == "tiny"
        r = post(client, data, "asr")
        assert r.status_code == 200, r.text
        assert content(r)["transcript"] == expected(model, data, "asr")["transcript"]
        runner = app.state.batcher.runner
        (pid,) = list(runner._executor._processes)
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        with contextlib.suppress(Exception):
            post(client, data, "asr")  # the batch sent to the dead worker fails
        again = post(client, data, "asr")
        assert again.status_code == 200, again.text
        assert content(again) == content(r)
        assert list(runner._executor._processes) != [pid]
