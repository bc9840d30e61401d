"""REST and GraphQL reads in process, counted in CPU instructions instead of timed.

Usage: ``.venv/bin/python bench/graphql/instructions.py [requests]`` (default 2000;
needs ``valgrind``)

Timings on a shared VM swing by a third from one minute to the next, more than most
changes to a hot path are worth. Instructions do not: this script runs
``alternate.py``'s paths (the same app, seeding and requests, 64 at a time) under
valgrind's callgrind, with counting off during the setup and the warm-up and on for
`requests` requests of each path, and prints the instructions per request of each
path and each GraphQL path's ratio to its REST twin. Instructions are not time (a
cache miss costs more than an add), but two runs of one commit agree to within 1-3 %
(REST's paths within 1 %), so a change worth 5 % shows in one run of each commit.
Run it in a ``git worktree``
of each commit to compare them. The Python process alone is counted: Valkey's work
and the kernel's are not.

Results: printed, and written to ``results/instructions-<date>-<host>-<commit>.md``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import alternate
import harness
import read_profile as rp

from gateway.settings import Settings

_INSIDE = "--inside"
_TOTALS = re.compile(rb"^totals: (\d+)$", re.MULTILINE)
_PAIRS = {
    "GraphQL list GET": "REST list",
    "GraphQL list POST": "REST list",
    "GraphQL GET $id cycle": "REST get cycle",
    "GraphQL POST $id cycle": "REST get cycle",
}


def _callgrind(*args: str) -> None:
    """`callgrind_control` on this process. Valgrind takes the command while the process
    runs Python code, so this spins instead of blocking in `wait`."""
    control = subprocess.Popen(
        ["callgrind_control", *args, str(os.getpid())], stdout=subprocess.DEVNULL
    )
    while control.poll() is None:
        sum(range(100))


async def session(settings: Settings, key: str, record_id: int, n: int, out: Path) -> None:
    app = rp.hit.bench_app.build(settings)
    compared = alternate.paths(app, key, record_id)
    # callgrind_control passes a dump's name through a shell: dumps are named by position.
    (out / "paths.json").write_text(json.dumps(list(compared)))
    async with app.lifespan():
        for i, (name, request) in enumerate(compared.items()):
            await alternate.warm(name, request)
            _callgrind("-z")
            _callgrind("-i", "on")
            await rp.per_request(request, n, concurrency=64)
            _callgrind("-i", "off")
            _callgrind("-d", f"path{i}")


def _inside(n: int, out: Path) -> None:
    with rp.hit.seeded("jgw-instructions-") as (settings, prep):
        logging.getLogger("gateway.access").setLevel(logging.WARNING)
        uvloop.run(session(settings, prep.key, prep.last_id, n, out))


def _counted(out: Path, n: int) -> dict[str, float]:
    """Instructions per request of each path, from callgrind's dumps in `out`."""
    names = json.loads((out / "paths.json").read_text())
    counted = {}
    for dump in sorted(out.glob("cg.*.*"), key=lambda p: int(p.suffix[1:])):
        text = dump.read_bytes()
        name = re.search(rb"^desc: Trigger: dump (.*)$", text, re.MULTILINE)
        totals = _TOTALS.search(text)
        if name and totals:
            # `per_request` runs its warm-up (`hit.WARM`) and then `n`, both counted.
            path = names[int(name.group(1).removeprefix(b"path"))]
            counted[path] = int(totals.group(1)) / (n + rp.hit.WARM)
    return counted


def main() -> None:
    if sys.argv[1:2] == [_INSIDE]:
        _inside(int(sys.argv[2]), Path(sys.argv[3]))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory(prefix="jgw-callgrind-") as tmp:
        out = Path(tmp)
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}/cg.%p",
                sys.executable,
                __file__,
                _INSIDE,
                str(n),
                str(out),
            ],
            check=True,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same hashing in every run
        )
        counted = _counted(out, n)
    where = harness.machine(commit=True)
    lines = [
        f"# Instructions per request in process, {where['date']}, host `{where['hostname']}`,"
        f" commit {where['commit']}",
        "",
        f"`bench/graphql/instructions.py {n}`: callgrind, {n} requests per path, 64 at a time,"
        " `PYTHONHASHSEED=0`. *vs REST*: the REST twin's instructions over this path's.",
        "",
        "| path | instructions / request | vs REST |",
        "|---|---:|---:|",
    ]
    for name, per in counted.items():
        twin = _PAIRS.get(name)
        ratio = f"{counted[twin] / per:.2f}" if twin in counted else "-"
        lines.append(f"| {name} | {per:,.0f} | {ratio} |")
    report = "\n".join(lines) + "\n"
    print(report)
    name = f"instructions-{where['date']}-{where['hostname']}-{where['commit']}.md"
    (harness.RESULTS / name).write_text(report)


if __name__ == "__main__":
    main()
