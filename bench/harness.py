"""Shared plumbing of the benchmarks under ``bench/``: servers, ``wrk`` and the report.

The scripts (``bench/<name>/run.py``) import this module after putting ``bench/`` on
``sys.path``. Servers run pinned to CPU 0 and load generators to CPU 1 when ``taskset``
is installed and both CPUs are available to this process; otherwise nothing is pinned
(``PIN_SERVER`` and ``PIN_CLIENT`` are empty). A server started with ``running`` lives
in its own process group, which is always killed on the way out.

Request files (``write_requests``) describe a load as a cycle of requests, one per line;
``requests.lua`` replays them under ``wrk`` and ``python_load`` replays them without it
(a bounded asyncio generator, client-bound: its figures are only indicative).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from gateway.embedded import start_valkey

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
REQUESTS_LUA = BENCH / "requests.lua"
SERVER_CPU, CLIENT_CPU = 0, 1
CAN_PIN = shutil.which("taskset") is not None and {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(
    0
)
PIN_SERVER = ["taskset", "-c", str(SERVER_CPU)] if CAN_PIN else []
PIN_CLIENT = ["taskset", "-c", str(CLIENT_CPU)] if CAN_PIN else []

_SCALE_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def load_module(name: str, path: Path) -> ModuleType:
    """A benchmark script as a module (``bench/collections`` would shadow the stdlib's name)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


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
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a pinned server in its own process group, wait until `url` answers 200,
    always stop it. Yields the server's process (``taskset`` execs, so it is the server)."""
    proc = subprocess.Popen([*PIN_SERVER, *cmd], cwd=cwd, env=env, start_new_session=True)
    try:
        _wait_ready(proc, cmd, url, timeout)
        yield proc
    finally:
        _kill_group(proc)


def proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, ...)."""
    # The command name is in parentheses and may hold spaces: split after it.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    """The direct children of a process (from ``/proc``; empty where there is none)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = proc_stat(int(stat.parent.name))
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def rss_mib(pid: int) -> float | None:
    """Resident set size of a process in MiB (``VmRSS``), or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M)
    return int(found[1]) / 1024 if found else None


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One measured ``wrk`` window; percentiles are None when run without ``--latency``.

    `non_2xx`: responses with a status of 400 or more (wrk's "Non-2xx or 3xx" line).
    """

    rps: float
    requests: int
    p50_ms: float | None
    p99_ms: float | None
    errors: str | None
    non_2xx: int = 0


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
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        rps=float(rps[1]),
        requests=int(total[1]),
        p50_ms=pct.get("50"),
        p99_ms=pct.get("99"),
        errors=errors or None,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
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
        server = start_valkey(data_dir, {"save": "", "appendonly": "no"})
    try:
        yield str(server.connection_url)
    finally:
        server.stop()


@dataclass(frozen=True, slots=True)
class Request:
    """One request of a load: `path` with its query, extra `headers`, an optional body."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""

    def line(self) -> str:
        """``METHOD<TAB>PATH<TAB>BODY<TAB>Name: value...``, the format of ``requests.lua``."""
        parts = [self.method, self.path, self.body, *(f"{n}: {v}" for n, v in self.headers)]
        if any(c in part for part in parts for c in "\t\r\n"):
            raise ValueError(f"a request of a request file holds a tab or a newline: {self}")
        return "\t".join(parts)

    @classmethod
    def parse(cls, line: str) -> Request:
        method, path, body, *headers = line.rstrip("\n").split("\t")
        pairs = tuple((n, v) for n, _, v in (h.partition(": ") for h in headers))
        return cls(method, path, pairs, body)


def write_requests(path: Path, requests: Iterable[Request]) -> Path:
    """Write a request file (one line per request, replayed in a cycle); return its path."""
    lines = [r.line() for r in requests]
    if not lines:
        raise ValueError("a request file needs at least one request")
    path.write_text("\n".join(lines) + "\n")
    return path


def read_requests(path: Path) -> list[Request]:
    return [Request.parse(line) for line in path.read_text().splitlines() if line]


def wrk_requests(
    origin: str,
    requests: Path,
    *,
    headers: Sequence[str] = (),
    seconds: int,
    latency: bool = True,
    connections: int = 64,
    threads: int = 2,
    timeout_s: int = 10,
) -> WrkResult:
    """Pinned ``wrk`` replaying a request file (``requests.lua``) against `origin`, once.

    `timeout_s` replaces wrk's 2 s, past which a slow response would count as a socket
    error and be left out of the latencies."""
    args = [*PIN_CLIENT, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s"]
    args.append(f"--timeout={timeout_s}s")
    for header in headers:
        args += ["-H", header]
    args += [*(["--latency"] if latency else []), "-s", str(REQUESTS_LUA), origin]
    args += ["--", str(requests)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return parse_wrk(out, latency=latency)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ascending values (`fraction` in (0, 1])."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5 - 1e-9)))
    return sorted_values[rank - 1]


async def _python_load(
    origin: str, requests: Sequence[Request], headers: Mapping[str, str], seconds: float, n: int
) -> WrkResult:
    # One client per connection: a single shared httpx pool collapses under 64-way concurrency.
    latencies: list[float] = []
    failed, non_2xx = 0, 0
    stop = time.perf_counter() + seconds

    async def connection(offset: int) -> None:
        nonlocal failed, non_2xx
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=origin, limits=limits, timeout=10) as client:
            i = offset
            while (t0 := time.perf_counter()) < stop:
                r = requests[i % len(requests)]
                i += 1
                try:
                    response = await client.request(
                        r.method,
                        r.path,
                        headers={**headers, **dict(r.headers)},
                        content=r.body.encode() if r.body else None,
                    )
                except httpx.HTTPError:
                    failed += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1e3)
                non_2xx += response.status_code >= 400

    await asyncio.gather(*(connection(c * 997) for c in range(n)))
    latencies.sort()
    if not latencies:
        raise RuntimeError(f"no request to {origin} succeeded ({failed} failed)")
    errors = [f"Non-2xx or 3xx responses: {non_2xx}"] if non_2xx else []
    errors += [f"Socket errors: {failed} failed requests"] if failed else []
    return WrkResult(
        rps=len(latencies) / seconds,
        requests=len(latencies),
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        errors="; ".join(errors) or None,
        non_2xx=non_2xx,
    )


def python_load(
    origin: str,
    requests: Path,
    *,
    headers: Mapping[str, str] | None = None,
    seconds: int,
    connections: int = 64,
) -> WrkResult:
    """The same replay as ``wrk_requests`` without ``wrk``: bounded (`connections`
    keep-alive clients), pinned to the client CPU, client-bound (figures only indicative)."""
    replayed = read_requests(requests)
    with on_client_cpu():
        return asyncio.run(_python_load(origin, replayed, headers or {}, seconds, connections))


def mean_rps(runs: Iterable[Mapping[str, Any]]) -> float | None:
    """Mean req/s of some runs, or None without any."""
    values = [float(r["rps"]) for r in runs]
    return statistics.fmean(values) if values else None


VALKEY_COUNTERS = ("total_commands_processed", "total_reads_processed")
"""``INFO stats`` counters read around a window: commands, and read events (one per
round trip: a pipeline or an ``MGET`` sent at once is read in one event)."""


def valkey_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, int]:
    """What happened between two ``INFO stats`` answers, less the one ``INFO`` between them
    (one command and one read event, whichever of the two counted it)."""
    return {name: int(after[name]) - int(before[name]) - 1 for name in VALKEY_COUNTERS}
