"""The trivial route's key check in process, in alternating rounds: CPU µs per request.

Usage: ``.venv/bin/python bench/auth_overhead/alternate.py [rounds]`` (default 5)

Builds ``bench/auth_overhead``'s app twice on one seeded SQLite file and one Valkey (as
``bench/graphql/alternate.py`` does): with key leases (the default) and with
``GATEWAY_KEY_LEASES=false``. Then calls them as ASGI on uvloop, 64 requests at a time,
with the access log off. Paths:

- ``anon``: the route without a key or a dependency;
- ``anon + key``: the same route with the key presented, so the edge checks it;
- ``anon-dep``: a twin with a dependency that checks nothing (Litestar's injection alone);
- ``anon-request``: a twin that takes the request as a parameter, as ``whoami`` does;
- ``whoami``: the key checked and the principal asked for (``caller``), with and without
  leases;
- ``whoami-dep``: the same principal injected by Litestar, as ``/api/v1`` did before.

Each round measures every path once, so slow spells of a noisy machine fall on all alike.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

import uvloop

from gateway.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "graphql"))
import read_profile as rp

N = 6400


async def session(settings: Settings, key: str, rounds: int) -> None:
    leased = rp.hit.bench_app.build(settings)
    unleased = rp.hit.bench_app.build(
        dataclasses.replace(settings, valkey=dataclasses.replace(settings.valkey, key_leases=False))
    )
    auth = [("Authorization", f"Bearer {key}")]
    paths: dict[str, rp.Request] = {
        "anon": lambda: rp.call(leased, "GET", "/bench/anon"),
        "anon + key": lambda: rp.call(leased, "GET", "/bench/anon", headers=auth),
        "anon-dep": lambda: rp.call(leased, "GET", "/bench/anon-dep"),
        "anon-request": lambda: rp.call(leased, "GET", "/bench/anon-request"),
        "whoami, leases": lambda: rp.call(leased, "GET", "/bench/whoami", headers=auth),
        "whoami-dep, leases": lambda: rp.call(leased, "GET", "/bench/whoami-dep", headers=auth),
        "whoami, no leases": lambda: rp.call(unleased, "GET", "/bench/whoami", headers=auth),
    }
    async with leased.lifespan(), unleased.lifespan():
        services = leased.state.services
        for _ in range(500):  # the first lease, within 5 s
            if services.key_leases.held:
                break
            await asyncio.sleep(0.01)
        else:
            raise SystemExit("no key lease within 5 s")
        for name, request in paths.items():
            for _ in range(100):
                await request()
            status, _, body = await request()
            if status != 200:
                raise SystemExit(f"{name}: {status} {body[:200]!r}")
        measured: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, request in paths.items():
                measured[name].append(await rp.per_request(request, N, concurrency=64))
    anon = sorted(measured["anon"])[rounds // 2]
    print("µs of CPU per request, 64 at a time: min, median, cost over anon, every round")
    for name, values in measured.items():
        ordered = sorted(values)
        median = ordered[rounds // 2]
        rounds_text = " ".join(f"{v:.1f}" for v in values)
        cost = 1 - anon / median
        print(f"{name:>18}  {ordered[0]:6.1f}  {median:6.1f}  {cost:6.0%}  {rounds_text}")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with rp.hit.seeded("jgw-auth-alternate-") as (settings, prep):
        logging.getLogger("gateway.access").setLevel(logging.WARNING)
        uvloop.run(session(settings, prep.key, rounds))


if __name__ == "__main__":
    main()
