"""Load test of `speechllm serve`: latency, admission control, throughput and memory.

Starts `speechllm serve --model <shipped model>` as a child process on a free loopback port,
waits for /healthz, sends one warm-up request (it also gives the server its first measured service
time), then N POST /v1/understand requests (task `all`, a few piper clips in turn) from up to C
concurrent clients. The server refuses with 429 + Retry-After what it estimates it cannot answer
within its request timeout; a client that is refused waits Retry-After seconds before its next
request (`--ignore-retry-after`: it sends the next at once). Reported: for accepted requests the
latency percentiles and the errors among them (504, 5xx, transport errors), the count of 429s and
how fast they came back, throughput, the server's service-time estimate and its peak resident
memory (VmHWM). The server is stopped whatever happens.

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
import uuid
from pathlib import Path
from typing import Any

import aiohttp
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
        default=60.0,
        help="server: a request's answer deadline; what cannot be answered by then is refused "
        "(429) at once (the server's default)",
    )
    p.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="a refused client sends its next request at once instead of waiting Retry-After",
    )
    p.add_argument(
        "--max-retry-wait-s",
        type=float,
        default=120.0,
        help="longest a refused client waits before its next request (caps Retry-After)",
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


def tree_kib(pid: int, field: str) -> int | None:
    """`proc_status_kib` summed over the server and its descendants (the model's worker
    process): the memory `speechllm serve` takes in all. The sum of the peaks of each process,
    which may be reached at different times: an upper bound on the peak of the whole."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                todo += [int(c) for c in task.read_text().split()]
    values = [v for v in (proc_status_kib(p, field) for p in pids) if v is not None]
    return sum(values) if values else None


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
        # Every client may have a request waiting: the queue-length limit is not under test, the
        # 429s come from the service-time estimate.
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
    client: aiohttp.ClientSession, proc: subprocess.Popen[bytes], timeout_s: float
) -> float:
    """Seconds until /healthz answered 200 (the model is loaded); SystemExit if it never does."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}; see {SERVER_LOG}")
        try:
            async with client.get("/healthz", timeout=aiohttp.ClientTimeout(total=2.0)) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except (aiohttp.ClientError, TimeoutError):
            pass  # not listening yet
        await asyncio.sleep(0.25)
    raise SystemExit(f"the server did not answer /healthz within {timeout_s:g} s")


Result = tuple[float, int | str, dict[str, Any] | None, float | None]
"""(latency s, HTTP status or exception name, JSON body when 200, Retry-After s when given)."""


def multipart_body(name: str, data: bytes, task: str) -> tuple[bytes, str]:
    """The form upload of one request (audio file + task) as bytes, and its content type: built
    once per clip, so the timed requests measure the server, not the client's encoding."""
    boundary = f"speechllm-{uuid.uuid4().hex}"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="task"\r\n\r\n{task}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="{name}"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def one_request(client: aiohttp.ClientSession, body: bytes, content_type: str) -> Result:
    start = time.perf_counter()
    try:
        async with client.post(
            "/v1/understand", data=body, headers={"content-type": content_type}
        ) as r:
            payload = await r.json() if r.status == 200 else None
            latency = time.perf_counter() - start
            retry_after = r.headers.get("retry-after")
            status = r.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return time.perf_counter() - start, type(exc).__name__, None, None
    return (
        latency,
        status,
        payload,
        float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


async def get_json(
    client: aiohttp.ClientSession, path: str, timeout_s: float = 30.0
) -> dict[str, Any]:
    """GET `path`, its JSON body (the response is read in full: its connection goes back to the
    pool for the next request)."""
    async with client.get(path, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
        r.raise_for_status()
        return dict(await r.json())


async def watch_memory(pid: int, peaks: list[int], stop: asyncio.Event) -> None:
    """Keep the largest VmHWM (or psutil RSS) of the server seen while the load runs."""
    while not stop.is_set():
        hwm = tree_kib(pid, "VmHWM")
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
    bodies = [
        multipart_body(Path(str(u.audio)).name, Path(str(u.audio)).read_bytes(), args.task)
        for u in clips
    ]
    durations = [float(u.duration or 0) for u in clips]
    port = args.port or free_port(args.host)
    host = f"[{args.host}]" if ":" in args.host else args.host
    proc = start_server(args, model, port)
    log.print(f"server pid {proc.pid} on {args.host}:{port}, model {model}")
    # The client is aiohttp, not httpx: on this 2-core machine the client shares the cores with
    # the server, and httpx's per-request cost put a burst of 32 refusals at p95 107-122 ms
    # where aiohttp (C-accelerated) measured 20-30 ms against the same server (benchmarks/README).
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout_s + 60)
    peaks: list[int] = []
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession(
            f"http://{host}:{port}", connector=connector, timeout=timeout
        ) as client:
            startup_s = await wait_healthy(client, proc, args.startup_timeout_s)
            rss_loaded = tree_kib(proc.pid, "VmRSS")
            watcher = asyncio.create_task(watch_memory(proc.pid, peaks, stop))
            # The first request pays one-off costs (lazy imports, allocator growth): not timed.
            warm_latency, warm_status, _, _ = await one_request(client, *bodies[0])
            if warm_status != 200:
                raise SystemExit(f"warm-up request failed: {warm_status}")
            # One open connection per client, as clients that keep their connections alive
            # have: the timed requests then measure the server, not TCP set-up.
            await asyncio.gather(*(get_json(client, "/healthz") for _ in range(args.concurrency)))
            log.print(f"warm-up request: {warm_latency:.2f} s; sending {args.requests} requests")
            gate = asyncio.Semaphore(args.concurrency)

            async def client_call(i: int) -> Result:
                async with gate:
                    result = await one_request(client, *bodies[i % len(bodies)])
                    retry_after = result[3]
                    if result[1] == 429 and retry_after and not args.ignore_retry_after:
                        # A polite client: this slot sends nothing until Retry-After has passed.
                        await asyncio.sleep(min(retry_after, args.max_retry_wait_s))
                    return result

            start = time.perf_counter()
            results = await asyncio.gather(*(client_call(i) for i in range(args.requests)))
            wall = time.perf_counter() - start
            stop.set()
            await watcher
            try:
                health = await get_json(client, "/healthz", timeout_s=10.0)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                health = {}
    finally:
        stop.set()
        last = tree_kib(proc.pid, "VmHWM")
        peak_kib = max([*peaks, last or 0]) or None
        stop_server(proc)

    # Accepted: every request the server did not refuse with 429; errors are those among them
    # that got no answer (504, 5xx, a transport error) or any other status.
    latencies = [lat for lat, status, _, _ in results if status == 200]
    refused = [(lat, ra) for lat, status, _, ra in results if status == 429]
    rejection_latencies = [lat for lat, _ in refused]
    retry_afters = [ra for _, ra in refused if ra is not None]
    errors: dict[str, int] = {}
    for _, status, _, _ in results:
        if status not in (200, 429):
            errors[str(status)] = errors.get(str(status), 0) + 1
    bodies = [b for _, _, b, _ in results if b is not None]
    answered = [i for i, (_, status, _, _) in enumerate(results) if status == 200]
    audio_s = sum(durations[i % len(durations)] for i in answered)
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
            "request_timeout_s": args.request_timeout_s,
            "honour_retry_after": not args.ignore_retry_after,
        },
        "accepted": len(results) - len(refused),
        "answered": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_status": errors,
        "refused_429": len(refused),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_max_s": max(latencies, default=float("nan")),
        "latency_mean_s": sum(latencies) / len(latencies) if latencies else float("nan"),
        "rejection_latency_p50_s": percentile(rejection_latencies, 50),
        "rejection_latency_p95_s": percentile(rejection_latencies, 95),
        "rejection_latency_max_s": max(rejection_latencies, default=float("nan")),
        "retry_after_p50_s": percentile(retry_afters, 50),
        "retry_after_max_s": max(retry_afters, default=float("nan")),
        "server_generate_mean_s": _mean([b["timings"]["generate_s"] for b in bodies]),
        "server_health_after": health,
        "wall_s": wall,
        "throughput_req_per_s": len(latencies) / wall,
        "audio_s_per_wall_s": audio_s / wall,
        "startup_s": startup_s,
        "warmup_request_s": warm_latency,
        "rss_after_load_mb": (rss_loaded or 0) / 1024,
        "peak_rss_mb": (peak_kib or 0) / 1024,
        "sample_answer": bodies[0] if bodies else None,
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _pair(figures: dict[str, Any], a: str, b: str) -> str:
    return f"{figures[a]:.0f} / {figures[b]:.0f}" if figures["refused_429"] else "-"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = asyncio.run(run(args))
    print_table(
        f"load test: {figures['settings']['requests']} requests, task "
        f"{figures['settings']['task']}, {figures['settings']['concurrency']} concurrent clients",
        [
            ("accepted / answered (200)", f"{figures['accepted']} / {figures['answered']}"),
            ("errors among accepted (must be 0)", figures["errors"]),
            ("accepted latency p50 (s)", figures["latency_p50_s"]),
            ("accepted latency p95 (s)", figures["latency_p95_s"]),
            ("accepted latency max (s)", figures["latency_max_s"]),
            ("refused (429)", figures["refused_429"]),
            ("429 latency p50 (s)", figures["rejection_latency_p50_s"]),
            ("429 latency p95 (s)", figures["rejection_latency_p95_s"]),
            ("429 latency max (s)", figures["rejection_latency_max_s"]),
            ("Retry-After p50 / max (s)", _pair(figures, "retry_after_p50_s", "retry_after_max_s")),
            (
                "server estimate after (s per request)",
                figures["server_health_after"].get("service_seconds_per_request"),
            ),
            ("throughput, answered (req/s)", figures["throughput_req_per_s"]),
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
