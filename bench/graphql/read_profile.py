"""Where a GraphQL read's time goes, next to REST's: in-process cost per request, then a
cProfile of one path.

Usage: ``.venv/bin/python bench/graphql/read_profile.py [what] [requests]``, what one of
``list get nested execute rest rest-get-cycle get-cycle`` (default ``list 3000``)

Seeds the tenant of ``bench/collections`` on a temporary SQLite file, starts a private
Valkey and builds the gateway app as ``gateway serve`` does (``bench/auth_overhead``'s
``build``), then calls it directly as ASGI on uvloop (no server, no sockets; the
helpers of ``bench/cache/hit_profile.py``). Prints microseconds per request, one at a
time and 64 at a time, for the REST cached list and the requests of
``bench/graphql/run.py``: the same list over GraphQL (POST and GET), the GraphQL get,
the 100-record query with its nested ``group``, and ``schema.execute`` of the list
alone (no HTTP: parse/validate caches, execution, extensions). Every path is checked
first (200, ``X-Cache: HIT``, no ``errors``). Then the top of a cProfile of the chosen
path, 64 at a time.
"""

from __future__ import annotations

import asyncio
import cProfile
import importlib.util
import itertools
import json
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlencode

import uvloop

from gateway.settings import Settings
from resolvers.auth import authenticate
from schema.build import build_schema
from schema.context import GraphQLContext

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


hit = _load("bench_cache_hit_profile", harness.BENCH / "cache" / "hit_profile.py")
queries = _load("bench_graphql_queries", harness.BENCH / "graphql" / "queries.py")
coll = hit.coll
CONCURRENCY = hit.CONCURRENCY
CYCLE = 5000  # distinct records a cycling get goes through, about the benchmark role's scope
GET_BY_VARIABLE = f"query Item($id: BigInt!) {{ item(id: $id) {{ {queries.FIELDS} }} }}"


async def call(
    app: hit.ASGIApp,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through the ASGI interface; status, response headers and body."""
    scope: hit.Message = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")]
        + [(k.lower().encode(), v.encode()) for k, v in headers]
        + ([(b"content-length", str(len(body)).encode())] if body else []),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    started: hit.Message = {}
    chunks: list[bytes] = []

    async def receive() -> hit.Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: hit.Message) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return int(started["status"]), dict(started.get("headers", [])), b"".join(chunks)


Request = Callable[[], Awaitable[Any]]


async def per_request(request: Request, n: int, *, concurrency: int = 1) -> float:
    """Microseconds of this process's CPU time per request, after a short warm-up (CPU
    time: other work on a shared machine does not count, nor does Valkey's)."""

    async def caller(count: int) -> None:
        for _ in range(count):
            await request()

    await caller(hit.WARM)
    start = time.process_time()
    await asyncio.gather(*(caller(n // concurrency) for _ in range(concurrency)))
    return (time.process_time() - start) / (n // concurrency * concurrency) * 1e6


def cycling(requests: Sequence[Request]) -> Request:
    """Each call the next of `requests`, as wrk cycles through every record."""
    turn = itertools.cycle(requests)

    def next_one() -> Awaitable[Any]:
        return next(turn)()

    return next_one


def _checked(name: str, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
    x_cache = headers.get(b"x-cache")
    if status != 200 or x_cache != b"HIT" or b'"errors"' in body:
        raise RuntimeError(f"{name}: {status} X-Cache {x_cache!r}: {body[:300]!r}")


async def session(settings: Settings, key: str, record_id: int, what: str, n: int) -> None:
    app = hit.bench_app.build(settings)
    auth = [("Authorization", f"Bearer {key}")]
    post = [*auth, ("Content-Type", "application/json")]
    rest_query = quote(coll.LIST_QUERY, safe="=&")

    def rest_list() -> Awaitable[Any]:
        return call(app, "GET", "/api/v1/collections/Item", query=rest_query, headers=auth)

    def graphql_post(document: str) -> Request:
        body = json.dumps({"query": document}).encode()
        return lambda: call(app, "POST", "/graphql", headers=post, body=body)

    def rest_get(one: int) -> Request:
        return lambda: call(app, "GET", f"/api/v1/collections/Item/{one}", headers=auth)

    def graphql_get_variable(one: int) -> Request:
        body = json.dumps({"query": GET_BY_VARIABLE, "variables": {"id": one}}).encode()
        return lambda: call(app, "POST", "/graphql", headers=post, body=body)

    def graphql_get_variable_over_get(one: int) -> Request:
        encoded = urlencode({"query": GET_BY_VARIABLE, "variables": json.dumps({"id": one})})
        return lambda: call(app, "GET", "/graphql", query=encoded, headers=auth)

    def graphql_get(document: str) -> Request:
        encoded = urlencode({"query": document})
        return lambda: call(app, "GET", "/graphql", query=encoded, headers=auth)

    async with app.lifespan():
        services = app.state.services
        schema = build_schema(services.tenant)  # as the /graphql controller builds it
        principal = await authenticate(services, key)

        async def execute_list() -> None:
            context = GraphQLContext(services=services, principal=principal)
            result = await schema.execute(queries.LIST, context_value=context)
            if result.errors:
                raise RuntimeError(result.errors)

        paths: dict[str, Request] = {
            "bare /hello": lambda: hit.call(hit.bare_app.app, "/hello"),
            "REST list": rest_list,
            "GraphQL list POST": graphql_post(queries.LIST),
            "GraphQL list GET": graphql_get(queries.LIST),
            "GraphQL get POST": graphql_post(queries.get(record_id)),
            "GraphQL nested POST": graphql_post(queries.NESTED),
            "REST get": rest_get(record_id),
            "GraphQL get $id": graphql_get_variable(record_id),
        }
        ids = range(record_id - CYCLE + 1, record_id + 1)
        cycles: dict[str, Request] = {
            "REST get cycle": cycling([rest_get(i) for i in ids]),
            "GraphQL get $id cycle": cycling([graphql_get_variable(i) for i in ids]),
            "GraphQL GET $id cycle": cycling([graphql_get_variable_over_get(i) for i in ids]),
        }
        for name, request in cycles.items():
            for _ in ids:
                await request()  # every entry stored, as after the benchmark's warm-up
            _checked(name, *await request())
        paths.update(cycles)
        for name, request in paths.items():
            if name != "bare /hello":
                await request()  # stores the entries: the next answers are hits
                _checked(name, *await request())
        paths["execute list"] = execute_list
        print(f"{'':>20}  one at a time  {CONCURRENCY} at a time  (µs of CPU per request)")
        for name, request in paths.items():
            alone = await per_request(request, n)
            many = await per_request(request, n, concurrency=CONCURRENCY)
            print(f"{name:>20}  {alone:13.1f}  {many:13.1f}")
        chosen = {
            "list": "GraphQL list POST",
            "get": "GraphQL get POST",
            "nested": "GraphQL nested POST",
            "execute": "execute list",
            "rest": "REST list",
            "rest-get-cycle": "REST get cycle",
            "get-cycle": "GraphQL get $id cycle",
            "list-get": "GraphQL list GET",
            "get-cycle-get": "GraphQL GET $id cycle",
        }[what]
        profiler = cProfile.Profile()
        profiler.enable()
        await per_request(paths[chosen], n, concurrency=CONCURRENCY)
        profiler.disable()
    print(f"\ncProfile of {n} x {chosen}, {CONCURRENCY} at a time:")
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(50)


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "list"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    with hit.seeded("jgw-profile-") as (settings, prep):
        uvloop.run(session(settings, prep.key, prep.last_id, what, n))


if __name__ == "__main__":
    main()
