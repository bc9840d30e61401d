"""Where a cached read's time goes: in-process cost per request, then a cProfile of one path.

Usage: ``.venv/bin/python bench/cache/hit_profile.py [get|304|list|anon|whoami] [requests]``
(default ``get 5000``)

Seeds the tenant of ``bench/collections`` on a temporary SQLite file (its ``prepare``),
starts a private Valkey and builds the app of ``bench/auth_overhead/app.py`` (the
gateway as ``gateway serve`` builds it, plus ``/bench/anon`` and ``/bench/whoami``). The
app is called directly as ASGI on uvloop: no server, no sockets, so the figures are the
application's own cost, Valkey round trips included. Prints microseconds per request,
one request at a time and 64 at a time (reads of one loop turn coalesce then), for the
bare route (``bench/asgi_servers/app.py``), ``/bench/anon``, ``/bench/whoami``, a
cached get, a 304 get, a cached list and an uncached get, then the top of a cProfile of
the chosen path, 64 at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import importlib.util
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import uvloop

from gateway.runtime import configure_logging
from gateway.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
WARM = 200
CONCURRENCY = 64


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


coll = _load("bench_collections_run", harness.BENCH / "collections" / "run.py")
bench_app = _load("bench_auth_overhead_app", harness.BENCH / "auth_overhead" / "app.py")
bare_app = _load("bench_asgi_servers_app", harness.BENCH / "asgi_servers" / "app.py")


async def call(
    app: ASGIApp, path: str, query: str = "", headers: Sequence[tuple[str, str]] = ()
) -> tuple[int, dict[bytes, bytes]]:
    """One GET through the ASGI interface; the status and response headers."""
    scope: Message = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")]
        + [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    started: Message = {}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.update(message)

    await app(scope, receive, send)
    return int(started["status"]), dict(started.get("headers", []))


async def drive(
    app: ASGIApp,
    n: int,
    path: str,
    query: str = "",
    headers: Sequence[tuple[str, str]] = (),
    *,
    concurrency: int = 1,
) -> None:
    """`n` requests, from `concurrency` callers at a time (as many connections would)."""

    async def caller(count: int) -> None:
        for _ in range(count):
            await call(app, path, query, headers)

    await asyncio.gather(*(caller(n // concurrency) for _ in range(concurrency)))


async def per_request(
    app: ASGIApp,
    n: int,
    path: str,
    query: str = "",
    headers: Sequence[tuple[str, str]] = (),
    *,
    concurrency: int = 1,
) -> float:
    """Microseconds of this process's CPU time per request, after a short warm-up (CPU
    time, not wall time: other work on a shared machine does not count, and neither
    does Valkey's own work)."""
    await drive(app, WARM, path, query, headers)
    start = time.process_time()
    await drive(app, n, path, query, headers, concurrency=concurrency)
    return (time.process_time() - start) / (n // concurrency * concurrency) * 1e6


async def session(settings: Settings, key: str, record_id: int, what: str, n: int) -> None:
    app = bench_app.build(settings)
    auth = [("Authorization", f"Bearer {key}")]
    item = f"/api/v1/collections/Item/{record_id}"
    list_query = quote(coll.LIST_QUERY, safe="=&")
    async with app.lifespan():
        status, headers = await call(app, item, headers=auth)
        etag = headers[b"etag"].decode()
        status, headers = await call(app, item, headers=auth)
        if (status, headers.get(b"x-cache")) != (200, b"HIT"):
            raise RuntimeError(f"expected a HIT, got {status} {headers.get(b'x-cache')!r}")
        paths: dict[str, tuple[ASGIApp, str, str, list[tuple[str, str]]]] = {
            "bare /hello": (bare_app.app, "/hello", "", []),
            "/bench/anon": (app, "/bench/anon", "", []),  # a key would be checked at the edge
            "/bench/whoami": (app, "/bench/whoami", "", auth),
            "get (cached)": (app, item, "", auth),
            "get (304)": (app, item, "", [*auth, ("If-None-Match", etag)]),
            "list (cached)": (app, "/api/v1/collections/Item", list_query, auth),
            "get (uncached)": (app, item, "", [*auth, ("Cache-Control", "no-cache")]),
        }
        print(f"{'':>16}  one at a time  {CONCURRENCY} at a time  (µs of CPU per request)")
        for name, (target, path, query, sent) in paths.items():
            alone = await per_request(target, n, path, query, sent)
            many = await per_request(target, n, path, query, sent, concurrency=CONCURRENCY)
            print(f"{name:>16}  {alone:13.1f}  {many:13.1f}")
        chosen = {
            "get": "get (cached)",
            "304": "get (304)",
            "list": "list (cached)",
            "anon": "/bench/anon",
            "whoami": "/bench/whoami",
        }[what]
        target, path, query, sent = paths[chosen]
        profiler = cProfile.Profile()
        profiler.enable()
        await drive(target, n, path, query, sent, concurrency=CONCURRENCY)
        profiler.disable()
    print(f"\ncProfile of {n} x {chosen}, {CONCURRENCY} at a time:")
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(45)


@contextlib.contextmanager
def seeded(prefix: str) -> Iterator[tuple[Settings, Any]]:
    """The gateway's settings on a temporary SQLite file seeded by `bench/collections`
    (its `prepare`, whose result comes second) and a private Valkey on the load
    generator's core, with logging configured as the server's (access lines buffered on
    stderr). Everything is removed afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        harness.valkey_on_client_core(Path(tmp) / "valkey") as valkey_url,
    ):
        db_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        env = coll.gateway_env(Path(tmp), "sqlite", db_url, valkey_url)
        prep = asyncio.run(coll.prepare(Settings.from_env(env)))
        settings = Settings.from_env({**env, "GATEWAY_AUTO_MIGRATE": "false"})
        configure_logging(settings)
        yield settings, prep


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "get"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    with seeded("jgw-profile-") as (settings, prep):
        uvloop.run(session(settings, prep.key, prep.last_id, what, n))


if __name__ == "__main__":
    main()
