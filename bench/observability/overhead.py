"""What the edge's observer (request id, metrics, access line) costs a cached get, in process.

Usage: ``.venv/bin/python bench/observability/overhead.py [requests]`` (default 20000)

Builds the app as ``bench/cache/hit_profile.py`` does (the tenant of
``bench/collections`` on SQLite, a private Valkey) and calls it directly as ASGI on
uvloop, 64 requests at a time, alternating rounds (CPU time of the process, which other
work on the machine disturbs far less than wall time): the observer off, on without the
access line (request id and metrics), with the line written as text, and as JSON.
Log lines go to /dev/null through the real (buffered) handler, so formatting and writing count.
Prints microseconds per request and
each variant's throughput relative to the observer off.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import uvloop

from gateway.logs import BufferedStreamHandler, JsonFormatter, TextFormatter, lean_records
from gateway.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cache"))
import harness
import hit_profile as hp

ROUNDS = 7


async def _cpu_per_request(
    app: hp.ASGIApp, n: int, path: str, auth: list[tuple[str, str]]
) -> float:
    """CPU microseconds per request (this process, every thread): on a machine other work
    shares, CPU time varies far less than wall time."""
    await hp.drive(app, hp.WARM, path, "", auth)
    start = time.process_time()
    await hp.drive(app, n, path, "", auth, concurrency=hp.CONCURRENCY)
    return (time.process_time() - start) / n * 1e6


async def session(settings: Settings, key: str, record_id: int, n: int) -> None:
    app = hp.bench_app.build(settings)
    observer = app._observer  # the bench switches it off and on
    auth = [("Authorization", f"Bearer {key}")]
    item = f"/api/v1/collections/Item/{record_id}"
    lean_records()  # as gateway serve's logging set-up does
    sink = Path("/dev/null").open("w")  # noqa: ASYNC230, SIM115 - set-up, closed at the end
    handler = BufferedStreamHandler(sink)
    access = logging.getLogger("gateway.access")
    access.setLevel(logging.INFO)
    access.propagate = False
    access.addHandler(handler)
    results: dict[str, list[float]] = {"off": [], "no log": [], "text": [], "json": []}
    async with app.lifespan():
        status, headers = await hp.call(app, item, headers=auth)
        status, headers = await hp.call(app, item, headers=auth)
        if (status, headers.get(b"x-cache")) != (200, b"HIT"):
            raise RuntimeError(f"expected a HIT, got {status}")
        for _ in range(ROUNDS):
            for variant, values in results.items():
                app._observer = None if variant == "off" else observer
                observer.access_log = variant in {"text", "json"}
                handler.setFormatter(JsonFormatter() if variant == "json" else TextFormatter())
                values.append(await _cpu_per_request(app, n, item, auth))
    sink.close()
    base = median(results["off"])
    print(f"cached get, {hp.CONCURRENCY} at a time, median of {ROUNDS} rounds of {n} (CPU time):")
    for variant, values in results.items():
        cost = median(values)
        print(f"  observer {variant:>6}: {cost:6.1f} CPU µs/request  throughput x{base / cost:.3f}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with (
        tempfile.TemporaryDirectory(prefix="jgw-observe-") as tmp,
        harness.valkey_on_client_core(Path(tmp) / "valkey") as valkey_url,
    ):
        db_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        env = hp.coll.gateway_env(Path(tmp), "sqlite", db_url, valkey_url)
        settings = Settings.from_env(env)
        prep = asyncio.run(hp.coll.prepare(settings))
        settings = Settings.from_env({**env, "GATEWAY_AUTO_MIGRATE": "false"})
        uvloop.run(session(settings, prep.key, prep.last_id, n))


if __name__ == "__main__":
    main()
