"""Bad input, nothing lost: every unusable audio file gets a clear error naming it (CLI: exit 1,
no traceback; server: a 4xx JSON detail), usable odd ones get the right answer, the good files
beside them are still answered, and the server's worker keeps serving.

tests/test_server.py covers single bad uploads (empty, truncated, non-audio, NaN, too short,
8 kHz, 44.1 kHz stereo, upload/duration limits); this file adds `speechllm infer` on the whole
matrix, the server cases it lacks (silence, the 30 s window at default limits, a header claiming
a tiny sample rate, no samples) and a concurrent burst of bad uploads. It also audits src/ for
unsafe deserialisation.
"""

from __future__ import annotations

import ast
import json
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import speechllm.data.audio
from clips import tone, wav_bytes
from speechllm.cli import app as cli_app
from speechllm.data.audio import decode_audio_bytes, load_audio
from speechllm.errors import AudioTooLongError
from speechllm.model.answers import parse_answers
from speechllm.model.speechllm import SpeechLLM
from speechllm.serving.config import ServerConfig
from speechllm.serving.server import create_app


@pytest.fixture(scope="module")
def model_dir(model: SpeechLLM, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model.save(tmp_path_factory.mktemp("bad-input") / "model")


def truncated() -> bytes:
    data = wav_bytes(tone(1.0))
    return data[: len(data) // 2]


def with_nan() -> bytes:
    audio = tone(0.5)
    audio[100] = np.nan
    return wav_bytes(audio, subtype="FLOAT")


def tiny_rate() -> bytes:
    # 80 kB of samples whose header says 10 Hz: 4000 s. Resampled before the length check, it
    # became 64 million samples (2.4 GB for the same file at 1 Hz) only to be refused.
    return wav_bytes(tone(4000.0, freq=1.0, sr=10), sr=10)


def fake_riff() -> bytes:
    return b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8


# name -> (file contents, words the error must hold). Each is refused with its reason.
BAD: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "empty"),
    "truncated": (truncated, "truncated"),
    "not-audio": (lambda: b"this is not audio at all " * 40, "not a readable audio file"),
    "fake-riff-header": (fake_riff, "not a readable audio file"),
    "no-samples": (lambda: wav_bytes(np.zeros(0, np.float32)), "no audio samples"),
    "nan-float": (with_nan, "NaN"),
    # Long recordings are split at pauses (longform.py); only what is over the CLI's
    # --max-minutes / the server's max_minutes (60 by default) is refused, before resampling.
    "10-Hz-header": (tiny_rate, "at most 3600 s"),
}
# name -> file contents: odd but usable audio, answered as the library answers it.
ODD: dict[str, Callable[[], bytes]] = {
    "8kHz-mono": lambda: wav_bytes(tone(0.8, sr=8000), sr=8000),
    "44.1kHz-stereo": lambda: wav_bytes(tone(0.8, sr=44100, channels=2), sr=44100),
    "all-silence": lambda: wav_bytes(np.zeros(16000, np.float32)),
}


def expected(model: SpeechLLM, data: bytes, tasks: list[str]) -> dict:
    """What the library answers for the clip alone."""
    frames, lengths = model.encoder([decode_audio_bytes(data, "x")])
    return parse_answers({t: model.generate(frames, lengths, [t])[0] for t in tasks}).to_dict()


# ------------------------------------------------------------------ CLI


def infer(model_dir: Path, *paths: Path, task: str = "asr"):
    result = CliRunner().invoke(
        cli_app, ["infer", "--model", str(model_dir), "--task", task, *map(str, paths)]
    )
    # Only typer's own exit: an exception escaping the command would be a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("case", list(BAD))
def test_cli_names_the_bad_file_and_still_answers_the_good_one(model, model_dir, tmp_path, case):
    make, reason = BAD[case]
    bad, good = tmp_path / f"{case}.wav", tmp_path / "good.wav"
    bad.write_bytes(make())
    good.write_bytes(wav_bytes(tone()))
    result = infer(model_dir, bad, good)
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out[0] == {"audio": str(bad), "error": out[0]["error"]}
    assert out[0]["error"].startswith(f"{bad}: ") and reason in out[0]["error"], out[0]
    assert out[1]["raw"] == expected(model, good.read_bytes(), ["asr"])["raw"]


def test_cli_missing_file(model_dir, tmp_path):
    result = infer(model_dir, tmp_path / "nope.wav")
    assert result.exit_code == 1
    assert json.loads(result.stdout)[0]["error"] == f"{tmp_path / 'nope.wav'}: file not found"


@pytest.mark.parametrize("case", list(ODD))
def test_cli_answers_odd_but_usable_audio(model, model_dir, tmp_path, case):
    path = tmp_path / f"{case}.wav"
    path.write_bytes(ODD[case]())
    result = infer(model_dir, path, task="all")
    assert result.exit_code == 0, result.output
    (out,) = json.loads(result.stdout)
    assert out["raw"] == expected(model, path.read_bytes(), ["all"])["raw"]
    assert set(out["raw"]) == {"all"} and "error" not in out


def test_a_tiny_declared_rate_is_refused_before_resampling(tmp_path):
    # The length check comes first: decoding costs about the file's size, not the claimed hours.
    data = tiny_rate()
    (tmp_path / "slow.wav").write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLongError, match=r"4000\.0 s long"):
            decode_audio_bytes(data, "slow.wav", max_seconds=30)
        with pytest.raises(AudioTooLongError, match=r"slow\.wav: audio is 4000\.0 s long"):
            load_audio(tmp_path / "slow.wav", max_seconds=30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB to refuse an 80 kB file"
    assert len(load_audio(tmp_path / "slow.wav", target_sr=10)) == 40000  # no limit asked: read


# ------------------------------------------------------------------ server


def post(client: TestClient, data: bytes, name: str, task: str = "asr"):
    return client.post(
        "/v1/understand", files={"audio": (name, data, "audio/wav")}, data={"task": task}
    )


# A hung worker would show as 504 after this long rather than stall the test run.
SERVER = ServerConfig(request_timeout_s=20)


@pytest.mark.parametrize(
    ("case", "status"),
    [("10-Hz-header", 413), ("no-samples", 422), ("fake-riff-header", 422)],
)
def test_server_refuses_what_test_server_does_not_cover(model, monkeypatch, case, status):
    # Like the CLI, the server splits long recordings (a 31 s tone is answered) and refuses only
    # what is over its max_minutes (60 by default).
    make, reason = BAD[case]

    def no_resampling(*args: object, **kwargs: object) -> None:
        raise AssertionError("resampled an upload that the length check should have refused")

    # None of these uploads (nor the 16 kHz good one) may reach the resampler.
    monkeypatch.setattr(speechllm.data.audio.soxr, "resample", no_resampling)
    with TestClient(create_app(model, SERVER)) as client:
        r = post(client, make(), f"{case}.wav")
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        detail = r.json()["detail"]
        assert detail.startswith(f"{case}.wav: ") and reason in detail, detail
        assert post(client, wav_bytes(tone()), "good.wav").status_code == 200


def test_server_answers_silence(model):
    data = ODD["all-silence"]()
    with TestClient(create_app(model, SERVER)) as client:
        r = post(client, data, "silence.wav", task="all")
    assert r.status_code == 200, r.text
    assert r.json()["raw"] == expected(model, data, ["all"])["raw"]


def test_a_burst_of_bad_uploads_leaves_the_good_ones_answered(model):
    uploads = [(f"{case}.wav", make()) for case, (make, _) in BAD.items()]
    goods = [(f"good{i}.wav", wav_bytes(tone(0.4 + 0.2 * i, 200.0 + 90 * i))) for i in range(3)]
    mixed = uploads[:3] + goods[:1] + uploads[3:6] + goods[1:2] + uploads[6:] + goods[2:]
    # Admission counts every upload of the burst as a row until it is read (`Batcher.hold`): a
    # prior of 0.1 s a row lets all of them in, so each is judged by its content, not refused
    # for the others' sake.
    config = ServerConfig(request_timeout_s=20, batch_wait_ms=200, prior_seconds_per_row=0.1)
    app = create_app(model, config)
    with TestClient(app) as client, ThreadPoolExecutor(len(mixed)) as pool:
        responses = list(pool.map(lambda item: post(client, item[1], item[0]), mixed))
        after = post(client, wav_bytes(tone()), "after.wav")
    for (name, data), r in zip(mixed, responses, strict=True):
        if name.startswith("good"):
            assert r.status_code == 200, r.text
            assert r.json()["raw"] == expected(model, data, ["asr"])["raw"]
        else:
            assert r.status_code in (413, 422), (name, r.text)
            assert r.json()["detail"].startswith(f"{name}: ")
    assert after.status_code == 200, after.text
    # Bad uploads never reached the model: only the good ones were batched.
    assert sum(app.state.batcher.batch_sizes) == len(goods) + 1


# ------------------------------------------------------------------ audit

# Modules whose loaders run code from the file they read.
PICKLING_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "joblib",
    "shelve",
    "marshal",
}


def unsafe_loads(source: str, filename: str = "<src>") -> list[str]:
    """Calls and imports that may deserialise a file by running its code."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names]
            if any(n.split(".")[0] in PICKLING_MODULES for n in names):
                found.append(f"{where}: imports {names}")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "torch"
                and any(a.name == "load" for a in node.names)
            ):
                found.append(
                    f"{where}: from torch import load (use torch.load(..., weights_only=True))"
                )
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        kwargs = {k.arg: k.value for k in node.keywords}
        if func.endswith("torch.load"):
            flag = kwargs.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{where}: {func}(...) without weights_only=True")
        if func.split(".")[-1] == "load" and func.split(".")[0] in ("np", "numpy"):
            flag = kwargs.get("allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(f"{where}: {func}(..., allow_pickle=...)")
        if func in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
            found.append(f"{where}: {func} (use yaml.safe_load)")
        if func.endswith("read_pickle"):
            found.append(f"{where}: {func}")
    return found


def test_the_audit_catches_unsafe_loads():
    # The checker itself must be able to fail.
    bad = (
        "import pickle\nfrom joblib import load\nimport torch\nimport numpy as np\nimport yaml\n"
        "torch.load('x.pt')\ntorch.load('x.pt', weights_only=False)\n"
        "np.load('x.npy', allow_pickle=True)\nyaml.load(open('c.yaml'))\n"
        "from torch import load\n"
    )
    assert len(unsafe_loads(bad)) == 7, unsafe_loads(bad)
    good = (
        "import torch\ntorch.load('x.pt', weights_only=True)\nimport yaml\nyaml.safe_load('a: 1')\n"
    )
    assert unsafe_loads(good) == []


def test_src_never_unpickles_untrusted_files():
    src = Path(speechllm.__file__).parent
    files = sorted(src.rglob("*.py"))
    assert len(files) > 10
    problems = [p for f in files for p in unsafe_loads(f.read_text(), str(f))]
    assert problems == []


def test_evaluation_and_training_paths_name_a_clip_over_30_s(model, tmp_path):
    # evaluate/experiment encode through encode_files, train through FeatureCache: both read
    # files without a length limit, so the encoder's own 30 s check must name the file.
    from speechllm.errors import AudioError
    from speechllm.inference.decode import encode_files
    from speechllm.training.features import FeatureCache

    good, long = tmp_path / "good.wav", tmp_path / "long.wav"
    good.write_bytes(wav_bytes(tone()))
    long.write_bytes(wav_bytes(tone(31.0)))
    paths = [str(good), str(long)]
    with pytest.raises(AudioError, match=rf"^{long}: 31\.0 s is longer than Whisper's 30 s"):
        encode_files(model, paths)
    with pytest.raises(AudioError, match=rf"^{long}: 31\.0 s is longer than Whisper's 30 s"):
        FeatureCache(model.encoder, tmp_path / "features").build(paths)
