"""The web page of `speechllm serve` (GET /), driven in headless Debian Chromium with Playwright.

The server runs for real (uvicorn on a free loopback port): in a thread on the tiny random models
for the fast tests, and as a `speechllm serve` process on the shipped model for the e2e one.
Playwright drives /usr/bin/chromium (Debian's package, `make venv` installs it): `playwright
install` would download a browser, which this project never does. Where chromium is missing the
browser tests skip, except under CI where they fail.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from speechllm.labels import SLUE_TAGS
from speechllm.model.prompts import format_ner
from speechllm.model.speechllm import SpeechLLM
from speechllm.serving.config import ServerConfig
from speechllm.serving.server import WEB_DIR, create_app
from test_longform import concatenate, librispeech_clips
from tiny import require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A fake microphone (a beep) that needs no permission prompt: the recording test uses it.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
TIMING_KEYS = ("decode_s", "encode_s", "generate_s", "total_s")


def unavailable(why: str) -> None:
    """Skip where a browser-test prerequisite is missing; fail under CI, which must run them."""
    if os.environ.get("CI"):
        pytest.fail(f"{why} (required in CI)")
    pytest.skip(why)


# ---------------------------------------------------------------------- servers


@contextlib.contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread on a free loopback port; yields the base URL."""
    # Bound here and handed to uvicorn, so no other process can take the port in between.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_process(model_dir: Path, log: Path, timeout_s: float = 300) -> Iterator[str]:
    """Run `speechllm serve --model model_dir` as its own process; yields the base URL once
    /healthz answers. Its output goes to `log` (shown when it fails to start)."""
    port = free_port()
    # Run beside the model and name it relatively: the page shows the name /healthz reports
    # (the --model argument), and the screenshot should not show this machine's paths.
    cmd = [sys.executable, "-m", "speechllm.cli", "serve", "--model", model_dir.name]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)],
            cwd=model_dir.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"speechllm serve exited ({proc.returncode}):\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"speechllm serve did not answer in {timeout_s} s:\n{log.read_text()}")
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError),
                urllib.request.urlopen(url + "healthz", timeout=5) as r,
            ):
                if r.status == 200:
                    break
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def tiny_url(model: SpeechLLM) -> Iterator[str]:
    with running(create_app(model, name="tiny")) as url:
        yield url


@pytest.fixture(scope="module")
def shipped_url(shipped_model: SpeechLLM) -> Iterator[str]:
    """The shipped default served in a thread as the tiny model is, with a timeout generous enough
    for a 10-minute recording on a busy CPU."""
    from speechllm.hub.shipped import DEFAULT_MODEL

    app = create_app(shipped_model, ServerConfig(request_timeout_s=600), name=DEFAULT_MODEL)
    with running(app) as url:
        yield url


# ---------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium (or make venv as root)")
    # The playwright package is in the dev extra, which `make venv` installs: never a skip.
    sync_playwright = require(
        "playwright.sync_api", "the dev extra of pyproject.toml"
    ).sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; fails the test on an uncaught script error or a CSP violation."""
    context = browser.new_context(viewport={"width": 960, "height": 820})
    page = context.new_page()
    page.set_default_timeout(60_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    yield page
    context.close()
    assert not problems, problems


def tone(seconds: float = 0.8, freq: float = 300.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sr: int = 16000) -> Path:
    sf.write(path, audio, sr, subtype="PCM_16")
    return path


def marks(page: Any) -> list[dict[str, Any]]:
    """Every entity highlight of the result, in list order: {index, tag, text, placed}."""
    found = page.eval_on_selector_all(
        "#result mark.entity",
        """els => els.map(e => ({index: Number(e.dataset.index), tag: e.dataset.tag,
                                 text: e.textContent, placed: e.dataset.placed === "true",
                                 cls: e.className}))""",
    )
    return sorted(found, key=lambda m: m["index"])


def as_entities(found: list[dict[str, Any]]) -> list[list[str]]:
    return [[m["tag"], m["text"]] for m in found]


def submit(page: Any, timeout_ms: float = 60_000) -> Any:
    """Click Understand; the /v1/understand response the page got."""
    with page.expect_response(
        lambda r: r.url.endswith("/v1/understand") and r.request.method == "POST",
        timeout=timeout_ms,
    ) as info:
        page.click("#submit")
    return info.value


def check_result_matches(page: Any, body: dict[str, Any]) -> None:
    """The result area shows exactly what the server answered."""
    page.wait_for_selector("#result", state="visible")
    assert page.text_content("#transcript") == body["transcript"]
    assert as_entities(marks(page)) == body["entities"]
    assert page.text_content("#sentiment") == (
        body["sentiment"] or "(no sentiment in the model's answer)"
    )
    rows = page.eval_on_selector_all("#timings tbody tr", "rows => rows.length")
    assert rows == len(TIMING_KEYS)


# ---------------------------------------------------------------------- no browser


def test_page_and_its_files_are_served(model: SpeechLLM) -> None:
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in WEB_DIR.iterdir()}
    with TestClient(create_app(model)) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self'
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for name, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
            r = client.get(f"/web/{name}")
            assert r.status_code == 200 and kind in r.headers["content-type"], name
        assert client.get("/web/nope.js").status_code == 404
        # The page is not part of the API.
        assert "/" not in client.get("/openapi.json").json()["paths"]
    # Offline: nothing but the page's own files is loaded (no CDN, no external URL).
    for name in ("index.html", "app.js", "style.css"):
        assert not re.search(r"https?://|[\"'(]//|@import", (WEB_DIR / name).read_text()), name


# ---------------------------------------------------------------------- browser, tiny model


def test_upload_shows_the_servers_answer(page: Any, tiny_url: str, tmp_path: Path) -> None:
    page.goto(tiny_url)
    assert page.input_value("#task") == "all"
    legend = page.eval_on_selector_all("#legend mark", "els => els.map(e => e.dataset.tag)")
    assert tuple(legend) == SLUE_TAGS
    # Functions, not expressions: Playwright evaluates an expression with eval(), which the
    # page's Content-Security-Policy forbids.
    page.wait_for_function("() => document.getElementById('health').textContent.includes('tiny')")
    assert page.is_disabled("#submit")  # nothing chosen yet

    page.set_input_files("#file", str(write_wav(tmp_path / "clip.wav", tone())))
    response = submit(page)
    assert response.status == 200
    body = response.json()
    check_result_matches(page, body)
    assert page.is_hidden("#error")
    assert page.is_enabled("#submit")

    # One task only: the other parts are hidden.
    page.select_option("#task", "sa")
    body = submit(page).json()
    page.wait_for_selector("#sentiment-box", state="visible")
    assert page.is_hidden("#transcript-box") and page.is_hidden("#entities-box")
    assert body["transcript"] is None and body["entities"] is None


def dom_markup(page: Any) -> str:
    """The rendered transcript written back as `[TAG phrase]` markup, unplaced entities appended
    as format_ner appends them: equal to format_ner's output where the page places as it does."""
    parts = page.eval_on_selector(
        "#transcript",
        """el => Array.from(el.childNodes).map(n => n.nodeType === Node.TEXT_NODE
              ? n.textContent : `[${n.dataset.tag} ${n.textContent}]`)""",
    )
    unplaced = [f"[{m['tag']} {m['text']}]" for m in marks(page) if not m["placed"]]
    text = "".join(parts)
    if unplaced:
        text = text.rstrip() + " " + " ".join(unplaced)
    return re.sub(r"\s+", " ", text).strip()


RENDER_CASES = [
    (
        # A repeated phrase takes its occurrences left to right; a third has none left; a phrase
        # absent from the transcript is still listed.
        "the commission and the council met the commission in brussels",
        [
            ["ORG", "commission"],
            ["ORG", "council"],
            ["PLACE", "paris"],
            ["ORG", "commission"],
            ["PLACE", "brussels"],
            ["QUANT", "commission"],
        ],
    ),
    (
        # SLUE lists entities right to left: placement does not depend on the order.
        "the european commission met in brussels on monday",
        [["WHEN", "monday"], ["PLACE", "brussels"], ["ORG", "european commission"]],
    ),
    # Whole words only ("union" is not the one in "reunion"); punctuation may follow.
    ("a reunion of the union. by the eu.", [["ORG", "union"], ["PLACE", "eu"]]),
    # Unicode words: "soci" is not a word of "société" (JavaScript's \w alone would say it is).
    ("la société générale à paris", [["ORG", "soci"], ["ORG", "société générale"]]),
    # Regular-expression characters in a phrase are literal.
    ("we use c++ (beta) and a.b here", [["ORG", "c++ (beta)"], ["LAW", "a.b"], ["LAW", "a*b"]]),
    # Tags outside the 7 still show (grey).
    ("ten euros", [["MONEY", "ten euros"]]),
]


def test_render_places_entities_as_format_ner_does(page: Any, tiny_url: str) -> None:
    page.goto(tiny_url)
    for transcript, entities in RENDER_CASES:
        page.evaluate(
            "r => window.speechllm.render(r)", {"transcript": transcript, "entities": entities}
        )
        assert page.text_content("#transcript") == transcript
        found = marks(page)
        assert as_entities(found) == entities, transcript
        assert dom_markup(page) == format_ner(transcript, [tuple(e) for e in entities])
        for m in found:
            tag = m["tag"] if m["tag"] in SLUE_TAGS else "other"
            assert m["cls"] == f"entity tag-{tag}"

    # The first case spelled out.
    page.evaluate(
        "r => window.speechllm.render(r)",
        {"transcript": RENDER_CASES[0][0], "entities": RENDER_CASES[0][1]},
    )
    inline = page.eval_on_selector_all(
        "#transcript mark",
        "els => els.map(e => [e.dataset.tag, e.textContent, Number(e.dataset.index)])",
    )
    assert inline == [
        ["ORG", "commission", 0],
        ["ORG", "council", 1],
        ["ORG", "commission", 3],
        ["PLACE", "brussels", 4],
    ]
    unplaced = page.eval_on_selector_all(
        "#unplaced mark", "els => els.map(e => [e.dataset.tag, e.textContent])"
    )
    assert unplaced == [["PLACE", "paris"], ["QUANT", "commission"]]
    assert page.is_visible("#unplaced-box")
    assert "6 entities, 2 not in the transcript" in page.text_content("#entity-summary")


def test_model_output_is_text_never_markup(page: Any, tiny_url: str) -> None:
    page.goto(tiny_url)
    evil = '<img src=x onerror="window.pwned=1"> said <b>hi</b>'
    page.evaluate(
        "r => window.speechllm.render(r)",
        {
            "transcript": evil,
            "entities": [["PERSON", "<b>hi</b>"], ["ORG", "<script>window.pwned=2</script>"]],
            "sentiment": "<i>Positive</i>",
            "raw": {"asr": "<u>x</u>"},
            "parse_failures": ["<s>ner</s>"],
            "timings": {"total_s": 0.25},
        },
    )
    assert page.text_content("#transcript") == evil
    assert (
        page.eval_on_selector_all(
            "#result img, #result b, #result script, #result i", "e => e.length"
        )
        == 0
    )
    assert page.text_content("#sentiment") == "<i>Positive</i>"
    assert page.evaluate("window.pwned") is None
    assert as_entities(marks(page))[0] == ["PERSON", "<b>hi</b>"]


def check_pieces_match(page: Any, body: dict[str, Any]) -> None:
    """The result area shows a long recording's answer: transcript, entities with their times,
    the overall sentiment and one table row per piece."""
    page.wait_for_selector("#pieces-box", state="visible")
    pieces = body["pieces"]
    rows = page.eval_on_selector_all(
        "#pieces tbody tr",
        """rows => rows.map(r => ({start: Number(r.dataset.start), end: Number(r.dataset.end),
                                 cells: Array.from(r.cells).map(c => c.textContent)}))""",
    )
    assert [(r["start"], r["end"]) for r in rows] == [(p["start"], p["end"]) for p in pieces]
    assert [r["cells"][0] for r in rows] == [str(i + 1) for i in range(len(pieces))]
    header = page.eval_on_selector_all("#pieces thead th", "ths => ths.map(t => t.textContent)")
    assert header[:2] == ["#", "time"]
    for name in ("sentiment", "transcript"):
        if any(name in p for p in pieces):
            column = header.index(name)
            shown = [r["cells"][column] for r in rows]
            want = [p.get(name) or ("(none)" if name == "sentiment" else "") for p in pieces]
            assert shown == want, name
        else:
            assert name not in header
    for r in rows:  # m:ss.s-m:ss.s
        assert re.fullmatch(r"\d+:\d\d\.\d–\d+:\d\d\.\d", r["cells"][1]), r["cells"][1]
    if body["transcript"] is not None:
        assert page.text_content("#transcript") == body["transcript"]
    if body["entities"] is not None:
        assert as_entities(marks(page)) == [e[:2] for e in body["entities"]]
        timed = page.eval_on_selector_all(
            "#entity-times tbody tr", "rows => rows.map(r => r.cells[1].textContent)"
        )
        assert timed == [e[0] for e in body["entities"]]
    if body["sentiment"] is not None or any("sentiment" in p for p in pieces):
        assert page.text_content("#sentiment-title") == "Overall sentiment"
        assert page.text_content("#sentiment") == (
            body["sentiment"] or "(no sentiment in the model's answer)"
        )


def test_a_long_recording_shows_its_pieces(
    page: Any, tiny_url: str, tmp_path: Path, shared: Path
) -> None:
    audio, _, _ = concatenate(librispeech_clips(shared), repeats=3, seed=2)
    assert 70 < len(audio) / 16000 < 90
    page.goto(tiny_url)
    page.wait_for_function("() => document.getElementById('health').textContent.includes('tiny')")
    # The page knows the server's limits: it records up to them.
    assert page.evaluate("() => window.speechllm.limits") == {
        "maxSeconds": 3600,
        "maxUploadBytes": 25 * 2**20,
    }
    page.set_input_files("#file", str(write_wav(tmp_path / "long.wav", audio)))
    response = submit(page, timeout_ms=180_000)
    assert response.status == 200, response.text()
    body = response.json()
    assert len(body["pieces"]) >= 8
    check_pieces_match(page, body)
    assert page.is_visible("#sentiment-note")
    assert page.eval_on_selector_all("#pieces tbody tr", "rows => rows.length") == len(
        body["pieces"]
    )
    assert page.eval_on_selector_all("#timings tbody tr", "rows => rows.length") == len(TIMING_KEYS)

    # A short clip next: the long recording's parts are gone.
    page.set_input_files("#file", str(write_wav(tmp_path / "clip.wav", tone())))
    body = submit(page).json()
    check_result_matches(page, body)
    assert page.is_hidden("#pieces-box") and page.is_hidden("#entity-times-box")
    assert page.text_content("#sentiment-title") == "Sentiment"


def test_a_long_result_is_text_never_markup(page: Any, tiny_url: str) -> None:
    page.goto(tiny_url)
    evil = '<img src=x onerror="window.pwned=1">'
    result = {
        "transcript": f"the council {evil}",
        "entities": [["ORG", "council", 0.5, 12.25], ["<b>X</b>", evil, 61.0, 75.5]],
        "sentiment": "<i>Negative</i>",
        "parse_failures": [],
        "pieces": [
            {
                "start": 0.5,
                "end": 12.25,
                "transcript": "the council",
                "entities": [["ORG", "council"]],
                "sentiment": "Neutral",
                "parse_failures": [],
                "raw": {"all": "the [ORG council]"},
            },
            {
                "start": 61.0,
                "end": 75.5,
                "transcript": evil,
                "entities": [["<b>X</b>", evil]],
                "sentiment": "<i>Negative</i>",
                "parse_failures": [],
                "raw": {"all": evil},
            },
        ],
        "timings": {"total_s": 1.5},
    }
    page.evaluate("r => window.speechllm.render(r)", result)
    assert page.eval_on_selector_all("#result img, #result b, #result i", "e => e.length") == 0
    assert page.evaluate("window.pwned") is None
    check_pieces_match(page, result)
    times = page.eval_on_selector_all(
        "#entity-times tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert times == [["0:00.5–0:12.3", "ORG", "council"], ["1:01.0–1:15.5", "<b>X</b>", evil]]
    pieces = page.eval_on_selector_all(
        "#pieces tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert pieces == [
        ["1", "0:00.5–0:12.3", "Neutral", "the council", "1"],
        ["2", "1:01.0–1:15.5", "<i>Negative</i>", evil, "1"],
    ]
    assert "2 pieces" in page.text_content("#pieces-summary")

    # Sentiment only: no transcript column, no entity times; silence: no pieces.
    page.evaluate(
        "r => window.speechllm.render(r)",
        {
            "transcript": None,
            "entities": None,
            "sentiment": "Positive",
            "parse_failures": [],
            "pieces": [
                {"start": 1, "end": 2, "sentiment": "Positive", "parse_failures": [], "raw": {}}
            ],
        },
    )
    header = page.eval_on_selector_all("#pieces thead th", "ths => ths.map(t => t.textContent)")
    assert header == ["#", "time", "sentiment"]
    assert page.is_hidden("#transcript-box") and page.is_hidden("#entity-times-box")
    page.evaluate(
        "r => window.speechllm.render(r)",
        {"transcript": "", "parse_failures": [], "pieces": []},
    )
    assert page.is_visible("#pieces-box")
    assert "No speech" in page.text_content("#pieces-summary")
    assert page.is_hidden("#sentiment-box")


def test_a_bad_upload_shows_the_servers_reason(page: Any, tiny_url: str, tmp_path: Path) -> None:
    page.goto(tiny_url)
    bad = tmp_path / "notaudio.wav"
    bad.write_bytes(b"this is not audio at all " * 40)
    page.set_input_files("#file", str(bad))
    response = submit(page)
    assert response.status == 422
    page.wait_for_selector("#error", state="visible")
    message = page.text_content("#error")
    assert "HTTP 422" in message and response.json()["detail"] in message
    assert "notaudio.wav" in message and "not a readable audio file" in message
    assert page.is_hidden("#result")


@pytest.mark.parametrize(
    ("status", "detail", "shown"),
    [
        (413, "upload too large: this server accepts at most 25 MiB", "Upload or audio too long"),
        (429, "server busy: 64 requests are waiting; retry later", "Server busy"),
        (504, "no answer within 60 s; retry later", "No answer in time"),
        (422, [{"loc": ["body", "task"], "msg": "Input should be 'asr'"}], "task: Input should"),
        (500, "<b>boom</b>", "<b>boom</b>"),
    ],
)
def test_refusals_are_readable(
    page: Any, tiny_url: str, tmp_path: Path, status: int, detail: Any, shown: str
) -> None:
    page.goto(tiny_url)
    # The refusal is made up here: the server's own 413/429/504 are tested in test_server.py.
    page.route(
        "**/v1/understand", lambda route: route.fulfill(status=status, json={"detail": detail})
    )
    page.set_input_files("#file", str(write_wav(tmp_path / "clip.wav", tone())))
    assert submit(page).status == status
    page.wait_for_selector("#error", state="visible")
    message = page.text_content("#error")
    assert f"HTTP {status}" in message and shown in message
    if isinstance(detail, str):
        assert detail in message
    assert page.eval_on_selector_all("#error *", "e => e.length") == 0


def test_encode_wav_is_16_bit_pcm(page: Any, tiny_url: str) -> None:
    page.goto(tiny_url)
    samples = [0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 0.123]
    data = bytes(page.evaluate("s => Array.from(window.speechllm.encodeWav(s, 8000))", samples))
    audio, sr = sf.read(io.BytesIO(data), dtype="int16")
    assert sr == 8000 and sf.info(io.BytesIO(data)).subtype == "PCM_16"
    clipped = np.clip(samples, -1, 1)
    want = np.trunc(np.where(clipped < 0, clipped * 0x8000, clipped * 0x7FFF)).astype(np.int16)
    np.testing.assert_array_equal(audio, want)


def test_record_from_the_microphone(page: Any, tiny_url: str) -> None:
    page.goto(tiny_url)
    # Chromium reports no body for a request whose body is a Blob, except to a route handler.
    sent: list[bytes] = []

    def capture(route: Any) -> None:
        sent.append(route.request.post_data_buffer)
        route.continue_()

    page.route("**/v1/understand", capture)
    page.click("#record")  # Chromium's fake microphone: a beep, granted without a prompt
    page.wait_for_function(
        "() => parseFloat(document.getElementById('rec-status').textContent.replace(/^\\D+/, '')) >= 1"
    )
    assert page.is_disabled("#submit")  # not while recording
    page.click("#record")
    page.wait_for_selector("#preview", state="visible")
    assert page.text_content("#rec-status").startswith("recorded ")
    response = submit(page)
    assert response.status == 200, response.text()
    # The upload is the page's own WAV, which the server (soundfile) decoded.
    body = sent[-1]
    assert b'filename="recording.wav"' in body
    start = body.index(b"RIFF")
    size = int.from_bytes(body[start + 40 : start + 44], "little")
    audio, sr = sf.read(io.BytesIO(body[start : start + 44 + size]))
    assert sr >= 8000 and len(audio) / sr >= 1.0
    assert np.abs(audio).max() > 0.01  # the beep, not silence
    check_result_matches(page, response.json())


# ---------------------------------------------------------------------- e2e: the shipped model

# SLUE-style; the shipped model tags "european parliament" here.
SENTENCE = "mister president on monday the european parliament voted in strasbourg"


@pytest.mark.e2e
def test_shipped_model_through_the_page(page: Any, tmp_path: Path) -> None:
    from speechllm.data.audio import save_wav
    from speechllm.data.tts import PiperVoice
    from speechllm.hub.shipped import DEFAULT_MODEL, resolve_model

    # Zero noise makes piper deterministic (its noise is not seeded), so the clip is the same
    # on every run.
    audio = PiperVoice().synthesize(SENTENCE, length_scale=1.0, noise_scale=0.0, noise_w=0.0)
    clip = tmp_path / "sentence.wav"
    save_wav(clip, audio)

    with serve_process(resolve_model(), tmp_path / "serve.log") as url:
        page.goto(url)
        page.wait_for_function(
            "name => document.getElementById('health').textContent.includes(name)",
            arg=DEFAULT_MODEL,
        )
        page.set_input_files("#file", str(clip))
        response = submit(page, timeout_ms=300_000)
        assert response.status == 200, response.text()
        body = response.json()
        check_result_matches(page, body)
        found = marks(page)
        assert any(m["placed"] for m in found), body  # highlighted in the transcript
        assert "parliament" in body["transcript"], body
        page.screenshot(path=str(tmp_path / "web.png"), full_page=True)
    assert (tmp_path / "web.png").stat().st_size > 10_000


@pytest.mark.e2e
def test_a_ten_minute_recording_through_the_page(
    page: Any, shipped_url: str, ten_minutes: Any
) -> None:
    """The shipped default behind the page: a 10-minute file chosen in its file input shows the
    joined transcript and the pieces, and the transcript shown reads as well as the clips (within
    2 WER points of the clips read one by one)."""
    from speechllm.hub.shipped import DEFAULT_MODEL

    page.goto(shipped_url)
    page.wait_for_function(
        "name => document.getElementById('health').textContent.includes(name)",
        arg=DEFAULT_MODEL,
    )
    page.select_option("#task", "asr")
    page.set_input_files("#file", str(ten_minutes.path))
    response = submit(page, timeout_ms=900_000)
    assert response.status == 200, response.text()
    body = response.json()
    check_pieces_match(page, body)  # the transcript and one row per piece, as answered
    assert page.is_hidden("#entities-box") and page.is_hidden("#entity-times-box")
    shown = page.text_content("#transcript")
    rows = page.eval_on_selector_all(
        "#pieces tbody tr",
        "rows => rows.map(r => ({start: Number(r.dataset.start), end: Number(r.dataset.end)}))",
    )
    ten_minutes.check(shown, rows)
    print(f"page: {body['timings']['total_s']:.0f} s")
