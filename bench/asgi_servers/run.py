"""Benchmark uvicorn vs granian serving a hello-world Litestar JSON route.

Usage: ``python bench/asgi_servers/run.py``

Each server runs one worker on 127.0.0.1 (pinned to CPU 0 with ``taskset`` when
available) and is loaded by ``wrk`` pinned to CPU 1: 64 connections, 2 threads,
3 s warm-up, then a 10 s measured window. Without ``wrk`` a bounded asyncio+httpx
generator (64 keep-alive connections, same timings) is used; it is client-bound,
so its numbers are only indicative. Runs alternate uvicorn, granian, uvicorn,
granian; results go to ``bench/results/asgi-servers-<date>-<host>.json`` and a
Markdown table is printed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
CONNECTIONS, THREADS, WARMUP_S, DURATION_S = 64, 2, 3, 10
ORDER = ("uvicorn", "granian", "uvicorn", "granian")
HAS_TASKSET = shutil.which("taskset") is not None
PIN_SERVER = ["taskset", "-c", "0"] if HAS_TASKSET else []
PIN_CLIENT = ["taskset", "-c", "1"] if HAS_TASKSET else []
PACKAGES = ("litestar", "uvicorn", "granian", "uvloop", "httptools", "httpx")


def version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def server_cmd(name: str, port: int) -> list[str]:
    """Command line for one single-worker server, access logs off, importing ``app:app``."""
    common = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if name == "uvicorn":
        fast = all(importlib.util.find_spec(m) for m in ("uvloop", "httptools"))
        speedups = ["--loop", "uvloop", "--http", "httptools"] if fast else []
        return [sys.executable, "-m", "uvicorn", *common, *speedups, "--no-access-log", "app:app"]
    granian = ["--interface", "asgi", "--workers", "1", *common, "--no-access-log", "app:app"]
    return [sys.executable, "-m", "granian", *granian]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(cmd: list[str], url: str, timeout: float = 30.0) -> Iterator[None]:
    """Start a server in its own process group, wait until it answers, always stop it."""
    proc = subprocess.Popen([*PIN_SERVER, *cmd], cwd=HERE, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early ({proc.returncode}): {cmd}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout}s: {cmd}")
            time.sleep(0.1)
        yield
    finally:
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(grace)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
            break


def load_wrk(url: str) -> dict[str, Any]:
    base = [*PIN_CLIENT, "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}"]
    subprocess.run([*base, f"-d{WARMUP_S}s", url], check=True, capture_output=True)
    args = [*base, f"-d{DURATION_S}s", "--latency", url]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    pct = {
        p: float(v) * scale[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)
    }
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None or set(pct) != {"50", "99"}:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    errors = "; ".join(re.findall(r"^\s*((?:Non-2xx|Socket errors).*)$", out, re.M))
    return {
        "rps": float(rps[1]),
        "p50_ms": pct["50"],
        "p99_ms": pct["99"],
        "errors": errors or None,
    }


async def _py_load(url: str, seconds: float) -> dict[str, Any]:
    # One client per connection: a single shared httpx pool collapses under 64-way concurrency.
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=5) as client:
            while (t0 := time.perf_counter()) < stop:
                try:
                    (await client.get(url)).raise_for_status()
                    latencies.append((time.perf_counter() - t0) * 1e3)
                except httpx.HTTPError:
                    errors += 1

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    q = statistics.quantiles(latencies, n=100)
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": q[49],
        "p99_ms": q[98],
        "errors": f"{errors} failed requests" if errors else None,
    }


def load_python(url: str) -> dict[str, Any]:
    affinity = os.sched_getaffinity(0)
    if HAS_TASKSET:
        os.sched_setaffinity(0, {1})
    try:
        asyncio.run(_py_load(url, WARMUP_S))
        return asyncio.run(_py_load(url, DURATION_S))
    finally:
        os.sched_setaffinity(0, affinity)


def markdown(runs: list[dict[str, Any]], mean: dict[str, float], ratio: float) -> str:
    lines = [
        "| run | server | req/s | p50 (ms) | p99 (ms) | errors |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['run']} | {r['server']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
        f"| {r['errors'] or '-'} |"
        for r in runs
    ]
    lines.append(
        f"\nMean req/s: uvicorn {mean['uvicorn']:.0f}, granian {mean['granian']:.0f}; "
        f"ratio granian/uvicorn = {ratio:.2f}"
    )
    return "\n".join(lines)


def main() -> None:
    tool = "wrk" if shutil.which("wrk") else "python-httpx"
    load = load_wrk if tool == "wrk" else load_python
    runs: list[dict[str, Any]] = []
    for i, name in enumerate(ORDER, 1):
        port = free_port()
        url = f"http://127.0.0.1:{port}/hello"
        cmd = server_cmd(name, port)
        with running(cmd, url):
            result = load(url)
        runs.append(
            {"run": i, "server": name, "cmd": " ".join([*PIN_SERVER, "python", *cmd[1:]]), **result}
        )
        print(f"run {i} {name}: {result['rps']:.0f} req/s", file=sys.stderr)

    mean = {
        s: statistics.fmean(r["rps"] for r in runs if r["server"] == s)
        for s in ("uvicorn", "granian")
    }
    ratio = mean["granian"] / mean["uvicorn"]
    wrk = (
        subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
        if tool == "wrk"
        else None
    )
    date = dt.datetime.now(dt.UTC).date().isoformat()
    report = {
        "date": date,
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": {p: version(p) for p in PACKAGES},
        "load": {
            "tool": tool,
            "tool_version": wrk.stdout.splitlines()[0] if wrk and wrk.stdout else None,
            "connections": CONNECTIONS,
            "threads": THREADS if tool == "wrk" else None,
            "warmup_s": WARMUP_S,
            "duration_s": DURATION_S,
            "server_cpu": 0 if HAS_TASKSET else None,
            "client_cpu": 1 if HAS_TASKSET else None,
        },
        "runs": runs,
        "mean_rps": mean,
        "ratio_granian_over_uvicorn": round(ratio, 3),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"asgi-servers-{date}-{report['hostname']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(runs, mean, ratio))
    print(f"\nWritten: {out}")


if __name__ == "__main__":
    main()
