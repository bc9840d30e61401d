"""Cached GraphQL reads against their REST twins under the server, in alternating windows.

Usage: ``.venv/bin/python bench/graphql/pairs.py [rounds] [--backend sqlite|postgresql]``
(default 8 rounds on SQLite; needs ``wrk``; about 40 s per round)

``make bench`` measures each scenario once, minutes apart from its twin: on a VM whose
speed drifts from one minute to the next, its GraphQL/REST ratios moved by up to 0.3
between runs of the same code. Here one seeded gateway (``bench/run.py``'s data, server,
key and requests: granian pinned to CPU 0, ``wrk`` with 64 connections on CPU 1) serves
the six cached reads in turn, 5 s each, round after round: REST get, GraphQL get over
POST and over GET, REST list, GraphQL list over POST and over GET. Each window records
its req/s and the CPU time the server's worker used per request (user and system, from
``/proc``: the Python thread and granian's own threads, not wrk's, Valkey's or the
kernel's network work done on CPU 1). Each GraphQL window is set against the REST window
of the same round, for both, and the median of the rounds' ratios is reported with
their range.

Every read is swept once and warmed up once before the first round; entries are kept for
a day (``GATEWAY_CACHE_LIST_TTL``), so that none expires between the rounds. A window
whose cache counted anything but hits is flagged, as in ``bench/run.py``.

Results: printed, and written to ``results/graphql-pairs-<date>-<host>-<backend>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import valkey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

from gateway.settings import Settings

bench_run = harness.load_module("bench_run", harness.BENCH / "run.py")

_WINDOW_S = 5
_PAIRS = {
    "graphql get cached": "rest get cached",
    "graphql-get get cached": "rest get cached",
    "graphql list cached": "rest list cached",
    "graphql-get list cached": "rest list cached",
}


class Window(NamedTuple):
    rps: float
    cpu_us: float
    """The worker's CPU time per request."""


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (``/proc/<pid>/stat``), in seconds."""
    fields = harness.proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rounds(scenarios: Any, rounds: int, worker: int) -> list[dict[str, Window]]:
    gw, bench = scenarios.gw, scenarios.bench
    origin, key = gw.origin, gw.data.key
    requests = {
        "rest get cached": scenarios.gets,
        "graphql get cached": scenarios.gql_gets,
        "graphql-get get cached": scenarios.gql_get_gets,
        "rest list cached": [scenarios.listing],
        "graphql list cached": [scenarios.gql_list],
        "graphql-get list cached": [scenarios.gql_get_list],
    }
    files = {name: bench.request_file(batch) for name, batch in requests.items()}
    for name, batch in requests.items():  # every entry stored, one checked, then warm
        bench_run.sweep(origin, key, batch)
        bench_run.probe(origin, key, batch[len(batch) // 2], x_cache="HIT", check=None)
        bench.replay(origin, files[name], key, bench.timing.warmup_s)
    measured = []
    for number in range(1, rounds + 1):
        row = {}
        for name, batch in requests.items():
            used = cpu_seconds(worker)
            run = bench.window(
                name, gw.backend, origin, batch, key=key, gateway=gw, expect="hits", warmup=False
            )
            cpu_us = (cpu_seconds(worker) - used) / max(1, run["requests"]) * 1e6
            bench.runs.append(run | {"round": number, "cpu_us": cpu_us})
            row[name] = Window(run["rps"], cpu_us)
        measured.append(row)
    return measured


def _report(measured: list[dict[str, Window]], backend: str, flags: list[str]) -> str:
    where = harness.machine(commit=True)
    lines = [
        f"# Cached GraphQL against REST in alternating windows, {where['date']}, host"
        f" `{where['hostname']}`, commit {where['commit']}, {backend}",
        "",
        f"`bench/graphql/pairs.py {len(measured)} --backend {backend}`: {len(measured)} rounds"
        f" of six {_WINDOW_S} s windows, 64 connections. *req/s*: each GraphQL window's"
        " over its REST twin's in the same round; *CPU*: the twin's CPU µs per request in"
        " the server's worker over the GraphQL window's (higher is better for both).",
        "",
        "| GraphQL read | REST twin | req/s: median (range) | CPU: median (range) |"
        " median req/s | median CPU µs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, twin in _PAIRS.items():
        by_rps = [row[name].rps / row[twin].rps for row in measured]
        by_cpu = [row[twin].cpu_us / row[name].cpu_us for row in measured]
        rps = statistics.median(row[name].rps for row in measured)
        twin_rps = statistics.median(row[twin].rps for row in measured)
        cpu = statistics.median(row[name].cpu_us for row in measured)
        twin_cpu = statistics.median(row[twin].cpu_us for row in measured)
        lines.append(
            f"| {name} | {twin} | {statistics.median(by_rps):.2f}"
            f" ({min(by_rps):.2f}-{max(by_rps):.2f}) | {statistics.median(by_cpu):.2f}"
            f" ({min(by_cpu):.2f}-{max(by_cpu):.2f}) | {rps:,.0f} / {twin_rps:,.0f} |"
            f" {cpu:.0f} / {twin_cpu:.0f} |"
        )
    names = list(measured[0])
    lines += ["", "Every window (req/s, CPU µs per request):", ""]
    lines += ["| round | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for number, row in enumerate(measured, 1):
        cells = (f"{row[n].rps:,.0f}, {row[n].cpu_us:.0f}" for n in names)
        lines.append(f"| {number} | " + " | ".join(cells) + " |")
    if flags:
        lines += ["", "Flagged windows:", "", *(f"- {flag}" for flag in flags)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("rounds", nargs="?", type=int, default=8)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    port = harness.free_port()
    with tempfile.TemporaryDirectory(prefix="jgw-pairs-") as tmp:
        bench = bench_run.Bench(["*"], bench_run.Timing(3, _WINDOW_S, 0), Path(tmp))
        with (
            bench_run.databases(Path(tmp), [args.backend]) as urls,
            harness.valkey_on_client_core(Path(tmp) / "valkey") as valkey_url,
        ):
            env: dict[str, str] = bench_run.coll.gateway_env(
                Path(tmp), args.backend, urls[args.backend], valkey_url
            )
            print(f"{args.backend}: seeding", file=sys.stderr)
            data = asyncio.run(bench_run.prepare(Settings.from_env(env)))
            env["GATEWAY_AUTO_MIGRATE"] = "false"
            env["GATEWAY_CACHE_LIST_TTL"] = "86400"
            origin = f"http://127.0.0.1:{port}"
            with (
                harness.running(
                    bench_run.coll.server_cmd(port), f"{origin}/readyz", env=env
                ) as server,
                valkey.Valkey.from_url(valkey_url) as client,
            ):
                (worker,) = harness.children(server.pid)  # granian's one worker process
                gw = bench_run.Gateway(args.backend, origin, data, client)
                scenarios = bench_run.GatewayScenarios(bench, gw)
                measured = _rounds(scenarios, args.rounds, worker)
    flags = [f"{r['scenario']} round {r['round']}: {r['flag']}" for r in bench.runs if "flag" in r]
    page = _report(measured, args.backend, flags)
    print(page)
    where = harness.machine()
    out = harness.RESULTS / f"graphql-pairs-{where['date']}-{where['hostname']}-{args.backend}.md"
    out.write_text(page)
    print(f"Written to bench/results/{out.name}")


if __name__ == "__main__":
    main()
