"""What the garbage collector costs a cached read, with Python's thresholds and the server's.

Usage: ``.venv/bin/python bench/graphql/gc_pauses.py [requests]`` (default 40000)

Seeds ``bench/collections``' tenant on a temporary SQLite file with a private Valkey and
builds the app as ``gateway serve`` does (``create_app(freeze_gc=True)``, through
``bench/auth_overhead``), then calls it as ASGI on uvloop, 64 callers at a time, cycling
through 5,000 records: the REST get and the GraphQL get with a ``$id`` variable (POST).
Each is run under Python's default thresholds (700, 10, 10) and under the server's
(``gateway.app._GC_THRESHOLDS``), alternating; for each: microseconds of wall time per
request, p50/p99/max latency, and the collections per generation with their pauses
(``gc.callbacks``). Prints a Markdown table; results in
``bench/results/gc-<date>-<host>.md``.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from gateway.app import _GC_THRESHOLDS
from gateway.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))
import read_profile

hit = read_profile.hit
CYCLE = read_profile.CYCLE
DEFAULT = (700, 10, 10)


class Pauses:
    """Every collection during a window: generation and duration (ms)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seen.append((info["generation"], (time.perf_counter() - self._started) * 1e3))


async def window(requests: list[Callable[[], Awaitable[Any]]], n: int) -> dict[str, Any]:
    turn = itertools.cycle(requests)
    latencies: list[float] = []

    async def caller(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await next(turn)()
            latencies.append(time.perf_counter() - started)

    pauses = Pauses()
    gc.callbacks.append(pauses)
    started = time.perf_counter()
    try:
        await asyncio.gather(*(caller(n // hit.CONCURRENCY) for _ in range(hit.CONCURRENCY)))
    finally:
        gc.callbacks.remove(pauses)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "us_per_request": elapsed / len(latencies) * 1e6,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "max_ms": latencies[-1] * 1e3,
        "collections": {
            g: (len(ms), max(ms), sum(ms))
            for g in range(3)
            if (ms := [d for gen, d in pauses.seen if gen == g])
        },
    }


async def session(settings: Settings, key: str, last_id: int, n: int) -> list[str]:
    app = hit.bench_app.build(settings)
    auth = [("Authorization", f"Bearer {key}")]
    post = [*auth, ("Content-Type", "application/json")]
    ids = range(last_id - CYCLE + 1, last_id + 1)

    def rest(one: int) -> Callable[[], Awaitable[Any]]:
        path = f"/api/v1/collections/Item/{one}"
        return lambda: read_profile.call(app, "GET", path, headers=auth)

    def graphql(one: int) -> Callable[[], Awaitable[Any]]:
        query = {"query": read_profile.GET_BY_VARIABLE, "variables": {"id": one}}
        body = json.dumps(query).encode()
        return lambda: read_profile.call(app, "POST", "/graphql", headers=post, body=body)

    lines = [
        "| read | thresholds | µs/request | p50 (ms) | p99 (ms) | max (ms) | collections "
        "(gen: count, max ms, total ms) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    async with app.lifespan():
        for name, make in (("REST get", rest), ("GraphQL get $id", graphql)):
            requests = [make(i) for i in ids]
            for request in requests * 2:  # every entry stored, every memo warm
                await request()
            for thresholds in (DEFAULT, _GC_THRESHOLDS, DEFAULT, _GC_THRESHOLDS):
                gc.set_threshold(*thresholds)
                r = await window(requests, n)
                collections = "; ".join(
                    f"{g}: {c}, {m:.2f}, {t:.1f}" for g, (c, m, t) in r["collections"].items()
                )
                lines.append(
                    f"| {name} | {thresholds} | {r['us_per_request']:.1f} | {r['p50_ms']:.2f} | "
                    f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} | {collections or '-'} |"
                )
                print(lines[-1], file=sys.stderr)
    return lines


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    with hit.seeded("jgw-gc-") as (settings, prep):
        lines = uvloop.run(session(settings, prep.key, prep.last_id, n))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
