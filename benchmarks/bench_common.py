"""What every benchmark shares: the clips it speaks, the shipped model, threads, tables, JSON.

Not a test helper: benchmarks print figures and are never collected by pytest. Clips are
SLUE-VoxPopuli dev sentences (text from ../shared) spoken by piper (`speechllm.data.tts`), cached in
`work/bench-audio/` (ignored by git), so only the first run pays for the synthesis.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from speechllm.data.manifest import Utterance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
AUDIO_DIR = ROOT / "work" / "bench-audio"

console = Console(width=110)  # rich wraps at 80 columns when piped
log = Console(stderr=True)
# Other processes on the CPU slow every figure: the JSON records the load seen at both ends.
LOAD_AT_START = os.getloadavg()[0]


def shipped_model_dir() -> Path:
    """The shipped default model (what `speechllm infer` uses without --model)."""
    from speechllm.hub.shipped import resolve_model

    return resolve_model()


def bench_clips(
    n: int,
    *,
    offset: int = 100,
    min_words: int = 8,
    max_words: int = 24,
    audio_dir: Path = AUDIO_DIR,
) -> list[Utterance]:
    """`n` SLUE-VoxPopuli dev sentences with entities, spoken by piper (cached WAVs).

    Sentences of `min_words`..`max_words` words (about 3 to 9 s of speech) from dev row `offset`
    on: the same rows every run, so the cache is reused and figures compare across runs. Dev
    sentences are held out from the shipped model's training.
    """
    from speechllm.data.importers.files import shared_dir
    from speechllm.data.importers.slue import import_slue_voxpopuli
    from speechllm.data.tts import synthesize_manifest

    tsv = shared_dir() / "data" / "slue-voxpopuli" / "slue-voxpopuli_dev.tsv"
    rows = import_slue_voxpopuli(tsv)[offset:]
    picked = [u for u in rows if u.entities and min_words <= len(u.text.split()) <= max_words][:n]
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} dev sentences fit; ask for fewer clips")
    # vary=False: piper's default prosody, so every clip is spoken at the same rate. piper's
    # noise is unseeded, but a cached WAV is never spoken again.
    return synthesize_manifest(picked, audio_dir, vary=False, progress=True)


def set_threads(threads: int) -> None:
    """Use `threads` CPU threads in torch (and in libraries started after this call)."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_1min_start": round(LOAD_AT_START, 2),
        "load_average_1min_end": round(os.getloadavg()[0], 2),
    }


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    """A two-column table (figure, value) on stdout."""
    table = Table("figure", "value", title=title, title_justify="left")
    for name, value in rows:
        table.add_row(name, _fmt(value))
    console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def write_json(path: Path, figures: dict[str, Any]) -> None:
    """Write `figures` as indented JSON (the folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    log.print(f"wrote {path}")


def default_out(name: str) -> Path:
    """benchmarks/results/NAME.json."""
    return RESULTS / f"{name}.json"


class Timer:
    """`with Timer() as t: ...` then `t.s`: wall seconds (perf_counter)."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        self.s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self._start
