"""Does a worker's memory grow under uncached SQLite lists? RSS after each round.

Usage: ``.venv/bin/python bench/cache/rss_rounds.py [rounds] [requests]`` (default 12
rounds of 1,280)

Seeds ``bench/collections``' tenant on a temporary SQLite file with a private Valkey,
builds the app as ``gateway serve`` does (``bench/auth_overhead``'s ``build``), then
sends the benchmark list with ``Cache-Control: no-cache`` (every request a query), 64 at
a time, in process on uvloop, and prints the process's RSS and the pool after each
round. ``make bench`` sees SQLite's worker grow by a few MiB between its repeats and
PostgreSQL's not; growth that comes back down here is the allocator, not a leak.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

import uvloop

from gateway.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import hit_profile

coll = hit_profile.coll


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def session(settings: Settings, key: str, rounds: int, n: int) -> None:
    app = hit_profile.bench_app.build(settings)
    headers = [("Authorization", f"Bearer {key}"), ("Cache-Control", "no-cache")]
    query = quote(coll.LIST_QUERY, safe="=&")
    async with app.lifespan():
        pool = app.state.services.engine.pool
        print(f"before: RSS {rss_mib():.1f} MiB; {pool.status()}")
        for i in range(1, rounds + 1):
            await hit_profile.drive(
                app, n, "/api/v1/collections/Item", query, headers, concurrency=64
            )
            print(f"round {i:2}: RSS {rss_mib():.1f} MiB", flush=True)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1280
    with hit_profile.seeded("jgw-rss-") as (settings, prep):
        uvloop.run(session(settings, prep.key, rounds, n))


if __name__ == "__main__":
    main()
