"""Load test of `speechllm serve`: latency, throughput and memory under concurrent clients.

Starts `speechllm serve --model <shipped model>` as a child process on a free loopback port,
waits for /healthz, sends one warm-up request, then N POST /v1/understand requests (task `all`,
a few piper clips in turn) from up to C concurrent clients, and reports errors, latency
percentiles, throughput and the server's peak resident memory (VmHWM). The server is stopped
whatever happens.

    .venv/bin/python benchmarks/load_test.py [--quick] [--requests 200] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from bench_common import (
    ROOT,
    bench_clips,
    default_out,
    log,
    machine,
    print_table,
    shipped_model_dir,
    write_json,
)

SERVER_LOG = ROOT / "work" / "bench-logs" / "load_test.server.log"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="40 requests from 8 clients (~1 min)")
    p.add_argument("--requests", type=int, default=None, help="timed requests (default 200)")
    p.add_argument("--concurrency", type=int, default=None, help="concurrent clients (32)")
    p.add_argument("--clips", type=int, default=4, help="distinct clips sent in turn")
    p.add_argument("--task", default="all", choices=["asr", "ner", "sa", "all"])
    p.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    p.add_argument("--max-batch", type=int, default=8, help="server: requests per model call")
    p.add_argument("--batch-wait-ms", type=float, default=10.0, help="server: batch wait")
    p.add_argument(
        "--request-timeout-s",
        type=float,
        default=600.0,
        help="server: a request's answer deadline (generous: a deep queue is what we measure)",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    p.add_argument("--port", type=int, default=0, help="0 = a free port")
    p.add_argument("--model", type=Path, default=None, help="model dir (default: the shipped one)")
    p.add_argument("--startup-timeout-s", type=float, default=300.0)
    p.add_argument("--out", type=Path, default=default_out("load_test"))
    args = p.parse_args(argv)
    args.requests = args.requests or (40 if args.quick else 200)
    args.concurrency = args.concurrency or (8 if args.quick else 32)
    if args.requests < 1 or args.concurrency < 1:
        p.error("--requests and --concurrency must be >= 1")
    if not _is_loopback(args.host):
        # The benchmark starts a server with no authentication: never expose it to a network.
        p.error(f"--host must be a loopback address (127.0.0.0/8, ::1, localhost), got {args.host}")
    return args


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str) -> int:
    """A port nobody listens on now (the OS picks it; the server binds it a moment later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def proc_status_kib(pid: int, field: str) -> int | None:
    """A `/proc/<pid>/status` memory field (VmHWM: peak resident set; VmRSS: now) in KiB.

    Without /proc (macOS) the current RSS from psutil (the `bench` extra) stands in for both:
    `watch_memory` then keeps the largest value it saw.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        try:
            import psutil

            return int(psutil.Process(pid).memory_info().rss // 1024)
        except Exception:  # no psutil, or the process is gone
            return None
    except (OSError, ValueError, IndexError):
        return None
    return None


def start_server(args: argparse.Namespace, model: Path, port: int) -> subprocess.Popen[bytes]:
    """`speechllm serve` as a child process (its output goes to `SERVER_LOG`)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cmd = [
        sys.executable,
        "-m",
        "speechllm.cli",
        "serve",
        "--model",
        str(model),
        "--host",
        args.host,
        "--port",
        str(port),
        "--max-batch",
        str(args.max_batch),
        "--batch-wait-ms",
        str(args.batch_wait_ms),
        "--request-timeout-s",
        str(args.request_timeout_s),
        # Every client may have a request waiting: the queue limit (429) is not under test.
        "--max-queue",
        str(max(64, args.concurrency)),
    ]
    SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
    with SERVER_LOG.open("wb") as server_log:
        return subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT, env=env)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (uvicorn's graceful shutdown), then SIGKILL if it has not ended in 30 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_healthy(
    client: httpx.AsyncClient, proc: subprocess.Popen[bytes], timeout_s: float
) -> float:
    """Seconds until /healthz answered 200 (the model is loaded); SystemExit if it never does."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}; see {SERVER_LOG}")
        try:
            r = await client.get("/healthz", timeout=2.0)
            if r.status_code == 200:
                return time.perf_counter() - start
        except httpx.TransportError:
            pass  # not listening yet
        await asyncio.sleep(0.25)
    raise SystemExit(f"the server did not answer /healthz within {timeout_s:g} s")


async def one_request(
    client: httpx.AsyncClient, name: str, data: bytes, task: str
) -> tuple[float, int | str, dict[str, Any] | None]:
    """(latency s, HTTP status or exception name, JSON body when 200)."""
    start = time.perf_counter()
    try:
        r = await client.post(
            "/v1/understand", files={"audio": (name, data, "audio/wav")}, data={"task": task}
        )
    except httpx.HTTPError as exc:
        return time.perf_counter() - start, type(exc).__name__, None
    latency = time.perf_counter() - start
    return latency, r.status_code, r.json() if r.status_code == 200 else None


async def watch_memory(pid: int, peaks: list[int], stop: asyncio.Event) -> None:
    """Keep the largest VmHWM (or psutil RSS) of the server seen while the load runs."""
    while not stop.is_set():
        hwm = proc_status_kib(pid, "VmHWM")
        if hwm is not None and (not peaks or hwm > peaks[0]):
            peaks[:] = [hwm]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between order statistics."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    model = args.model or shipped_model_dir()
    clips = bench_clips(args.clips)
    payloads = [(Path(str(u.audio)).name, Path(str(u.audio)).read_bytes()) for u in clips]
    durations = [float(u.duration or 0) for u in clips]
    port = args.port or free_port(args.host)
    host = f"[{args.host}]" if ":" in args.host else args.host
    proc = start_server(args, model, port)
    log.print(f"server pid {proc.pid} on {args.host}:{port}, model {model}")
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    timeout = httpx.Timeout(args.request_timeout_s + 60)
    peaks: list[int] = []
    stop = asyncio.Event()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://{host}:{port}", limits=limits, timeout=timeout
        ) as client:
            startup_s = await wait_healthy(client, proc, args.startup_timeout_s)
            rss_loaded = proc_status_kib(proc.pid, "VmRSS")
            watcher = asyncio.create_task(watch_memory(proc.pid, peaks, stop))
            # The first request pays one-off costs (lazy imports, allocator growth): not timed.
            warm_latency, warm_status, _ = await one_request(client, *payloads[0], args.task)
            if warm_status != 200:
                raise SystemExit(f"warm-up request failed: {warm_status}")
            log.print(f"warm-up request: {warm_latency:.2f} s; sending {args.requests} requests")
            gate = asyncio.Semaphore(args.concurrency)

            async def client_call(i: int) -> tuple[float, int | str, dict[str, Any] | None]:
                async with gate:
                    return await one_request(client, *payloads[i % len(payloads)], args.task)

            start = time.perf_counter()
            results = await asyncio.gather(*(client_call(i) for i in range(args.requests)))
            wall = time.perf_counter() - start
            stop.set()
            await watcher
    finally:
        stop.set()
        last = proc_status_kib(proc.pid, "VmHWM")
        peak_kib = max([*peaks, last or 0]) or None
        stop_server(proc)

    latencies = [lat for lat, status, _ in results if status == 200]
    errors: dict[str, int] = {}
    for _, status, _ in results:
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
    bodies = [b for _, _, b in results if b is not None]
    audio_s = sum(durations[i % len(durations)] for i in range(args.requests))
    return {
        "benchmark": "load_test",
        "machine": machine(),
        "settings": {
            "model": str(model),
            "requests": args.requests,
            "concurrency": args.concurrency,
            "task": args.task,
            "clips": len(clips),
            "clip_seconds": [round(d, 2) for d in durations],
            "server_threads": args.threads,
            "max_batch": args.max_batch,
            "batch_wait_ms": args.batch_wait_ms,
        },
        "errors": sum(errors.values()),
        "errors_by_status": errors,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_max_s": max(latencies, default=float("nan")),
        "latency_mean_s": sum(latencies) / len(latencies) if latencies else float("nan"),
        "server_generate_mean_s": _mean([b["timings"]["generate_s"] for b in bodies]),
        "wall_s": wall,
        "throughput_req_per_s": args.requests / wall,
        "audio_s_per_wall_s": audio_s / wall,
        "startup_s": startup_s,
        "warmup_request_s": warm_latency,
        "rss_after_load_mb": (rss_loaded or 0) / 1024,
        "peak_rss_mb": (peak_kib or 0) / 1024,
        "sample_answer": bodies[0] if bodies else None,
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = asyncio.run(run(args))
    print_table(
        f"load test: {figures['settings']['requests']} requests, task "
        f"{figures['settings']['task']}, {figures['settings']['concurrency']} concurrent clients",
        [
            ("errors (must be 0)", figures["errors"]),
            ("latency p50 (s)", figures["latency_p50_s"]),
            ("latency p95 (s)", figures["latency_p95_s"]),
            ("latency max (s)", figures["latency_max_s"]),
            ("throughput (req/s)", figures["throughput_req_per_s"]),
            ("audio seconds per wall second", figures["audio_s_per_wall_s"]),
            ("server peak RSS (MiB, VmHWM)", figures["peak_rss_mb"]),
            ("server RSS after model load (MiB)", figures["rss_after_load_mb"]),
            ("server startup to /healthz (s)", figures["startup_s"]),
            ("wall time of the burst (s)", figures["wall_s"]),
        ],
    )
    write_json(args.out, figures)
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
