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
import importlib.util
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

# `python bench/asgi_servers/run.py` puts only this directory on sys.path; add bench/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

HERE = Path(__file__).resolve().parent
CONNECTIONS, THREADS, WARMUP_S, DURATION_S = 64, 2, 3, 10
ORDER = ("uvicorn", "granian", "uvicorn", "granian")
PACKAGES = ("litestar", "uvicorn", "granian", "uvloop", "httptools", "httpx")


def server_cmd(name: str, port: int) -> list[str]:
    """Command line for one single-worker server, access logs off, importing ``app:app``."""
    common = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if name == "uvicorn":
        fast = all(importlib.util.find_spec(m) for m in ("uvloop", "httptools"))
        speedups = ["--loop", "uvloop", "--http", "httptools"] if fast else []
        return [sys.executable, "-m", "uvicorn", *common, *speedups, "--no-access-log", "app:app"]
    granian = ["--interface", "asgi", "--workers", "1", *common, "--no-access-log", "app:app"]
    return [sys.executable, "-m", "granian", *granian]


def load_wrk(url: str) -> dict[str, Any]:
    r = harness.wrk(
        url, seconds=DURATION_S, warmup=WARMUP_S, connections=CONNECTIONS, threads=THREADS
    )
    return {"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors}


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
    with harness.on_client_cpu():
        asyncio.run(_py_load(url, WARMUP_S))
        return asyncio.run(_py_load(url, DURATION_S))


def markdown(runs: list[dict[str, Any]], mean: dict[str, float], ratio: float) -> str:
    columns = ("run", "server", "req/s", "p50 (ms)", "p99 (ms)", "errors")
    cells = [(r["run"], r["server"], *harness.speed_cells(r), r["errors"] or "-") for r in runs]
    lines = harness.table(columns, cells, right=columns[2:5])
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
        port = harness.free_port()
        url = f"http://127.0.0.1:{port}/hello"
        cmd = server_cmd(name, port)
        with harness.running(cmd, url, cwd=HERE):
            result = load(url)
        runs.append({"run": i, "server": name, "cmd": harness.shown(cmd), **result})
        print(f"run {i} {name}: {result['rps']:.0f} req/s", file=sys.stderr)

    mean = {
        s: statistics.fmean(r["rps"] for r in runs if r["server"] == s)
        for s in ("uvicorn", "granian")
    }
    ratio = mean["granian"] / mean["uvicorn"]
    report = {
        **harness.machine(),
        "versions": harness.versions(PACKAGES),
        "load": {
            "tool": tool,
            "tool_version": harness.wrk_version() if tool == "wrk" else None,
            "connections": CONNECTIONS,
            "threads": THREADS if tool == "wrk" else None,
            "warmup_s": WARMUP_S,
            "duration_s": DURATION_S,
            "server_cpu": harness.SERVER_CPU if harness.PIN_SERVER else None,
            "client_cpu": harness.CLIENT_CPU if harness.PIN_SERVER else None,
        },
        "runs": runs,
        "mean_rps": mean,
        "ratio_granian_over_uvicorn": round(ratio, 3),
    }
    out = harness.write_results("asgi-servers", report)
    print(markdown(runs, mean, ratio))
    print(f"\nWritten: {out}")


if __name__ == "__main__":
    main()
