"""The targets of issue 10 computed from one run of ``bench/run.py``, its Markdown and chart.

Everything here is pure (runs in, checks and text out) except ``chart``, which needs
matplotlib (the ``bench`` extra). Targets are ratios within one run, reported next to
their limit as met or missed, never asserted: these machines are noisy. A target whose
scenarios were not run is "not measured".

A run is a mapping with at least ``scenario``, ``backend``, ``rps``, ``p50_ms`` and
``p99_ms``; several runs of one scenario and backend (the bare route before and after)
count by their mean req/s and their worst p99.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness

__all__ = [
    "BACKENDS",
    "Check",
    "chart",
    "evaluate",
    "markdown",
    "p99_over_p50",
]

BACKENDS = ("sqlite", "postgresql")
RSS_GROWTH_MIB = 2.0
"""Allocator noise allowed between two identical runs before RSS counts as growing."""


@dataclass(frozen=True, slots=True)
class Check:
    """One target on one backend (``-``: none applies): `value` against `limit`.

    `at_least`: met when value >= limit (else value <= limit). `limit` None: shown for
    information only. `unit`: ``%`` (a fraction shown as a percentage), ``x`` (a
    ratio), ``ms``, ``MiB`` or ``""`` (a plain number).
    """

    target: str
    backend: str
    value: float | None
    limit: float | None
    at_least: bool
    unit: str
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None or self.limit is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        return {True: "met", False: "missed", None: "-"}[self.met]


def _shown(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.0%}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit in ("ms", "MiB"):
        return f"{value:.1f} {unit}"
    return f"{value:.2f}"


def _limit(check: Check) -> str:
    if check.limit is None:
        return "-"
    return f"{'≥' if check.at_least else '≤'} {_shown(check.limit, check.unit)}"


def p99_over_p50(run: Mapping[str, Any]) -> float | None:
    p50, p99 = run.get("p50_ms"), run.get("p99_ms")
    return float(p99) / float(p50) if p50 and p99 is not None else None


class _Runs:
    """Runs looked up by scenario and backend."""

    def __init__(self, runs: Iterable[Mapping[str, Any]]) -> None:
        self.runs = list(runs)

    def of(self, scenario: str, backend: str) -> list[Mapping[str, Any]]:
        return [r for r in self.runs if r["scenario"] == scenario and r["backend"] == backend]

    def rps(self, scenario: str, backend: str) -> float | None:
        return harness.mean_rps(self.of(scenario, backend))

    def p99(self, scenario: str, backend: str) -> float | None:
        values = [float(r["p99_ms"]) for r in self.of(scenario, backend) if r.get("p99_ms")]
        return max(values) if values else None

    def ratio(self, top: tuple[str, str], bottom: tuple[str, str]) -> float | None:
        a, b = self.rps(*top), self.rps(*bottom)
        return a / b if a is not None and b else None

    def backends(self) -> list[str]:
        present = {r["backend"] for r in self.runs}
        return [b for b in BACKENDS if b in present]


def _ge(target: str, backend: str, value: float | None, limit: float | None, unit: str) -> Check:
    return Check(target, backend, value, limit, at_least=True, unit=unit)


def _le(
    target: str, backend: str, value: float | None, limit: float, unit: str, *, note: str = ""
) -> Check:
    return Check(target, backend, value, limit, at_least=False, unit=unit, note=note)


def _gateway_targets(runs: _Runs, b: str) -> list[Check]:
    bare = ("bare", "-")
    checks = [
        _ge("cached list / bare route", b, runs.ratio(("rest list cached", b), bare), 0.40, "%"),
        _ge("cached get / bare route", b, runs.ratio(("rest get cached", b), bare), 0.40, "%"),
        _le("cached list p99", b, runs.p99("rest list cached", b), 100.0, "ms"),
        _le("cached get p99", b, runs.p99("rest get cached", b), 100.0, "ms"),
    ]
    # The target names PostgreSQL; SQLite's ratio is shown for information.
    core_limit = 0.80 if b == "postgresql" else None
    checks += [
        _ge(
            f"uncached {read} / hand-written Core {read}",
            b,
            runs.ratio((f"rest {read} uncached", b), (f"core {read}", b)),
            core_limit,
            "%",
        )
        for read in ("list", "get")
    ]
    checks += [
        _ge(
            f"304 {read} / cached {read}",
            b,
            runs.ratio((f"rest {read} 304", b), (f"rest {read} cached", b)),
            1.0,
            "x",
        )
        for read in ("list", "get")
    ]
    graphql_ratios = (
        ("GraphQL", "graphql", (("cached", 0.9), ("uncached", 0.45))),
        ("GraphQL over GET", "graphql-get", (("cached", 0.9),)),
    )
    checks += [
        _ge(
            f"{label} {mode} {read} / REST {mode} {read}",
            b,
            runs.ratio((f"{scenario} {read} {mode}", b), (f"rest {read} {mode}", b)),
            limit,
            "x",
        )
        for label, scenario, modes in graphql_ratios
        for mode, limit in modes
        for read in ("list", "get")
    ]
    graphql = [r for r in runs.runs if r["backend"] == b and r["scenario"].startswith("graphql")]
    spreads = [(s, r["scenario"]) for r in graphql if (s := p99_over_p50(r)) is not None]
    worst = max(spreads, default=None)
    checks.append(
        _le(
            "GraphQL p99 / p50 (worst window)",
            b,
            worst[0] if worst else None,
            5.0,
            "x",
            note=worst[1] if worst else "",
        )
    )
    return checks


def evaluate(
    runs: Iterable[Mapping[str, Any]],
    *,
    round_trips: Mapping[str, float | None] | None = None,
    memory: Mapping[str, Mapping[str, float | None]] | None = None,
) -> list[Check]:
    """Every target of issue 10 that applies to these runs.

    `round_trips`: per backend, Valkey round trips of one cached REST get (sequential,
    authentication included). `memory`: per backend, ``rss_after_run_mib``,
    ``rss_after_repeat_1_mib`` and ``rss_after_repeat_2_mib`` of the gateway's worker.
    """
    r = _Runs(runs)
    checks: list[Check] = []
    for b in r.backends():
        checks += _gateway_targets(r, b)
    anon, whoami = r.rps("trivial anon", "-"), r.rps("trivial whoami", "-")
    cost = 1 - whoami / anon if anon and whoami is not None else None
    checks.append(_le("authentication cost on the trivial route", "-", cost, 0.15, "%"))
    checks += [
        _le("Valkey round trips per cache hit (auth included)", b, value, 2.0, "")
        for b, value in (round_trips or {}).items()
    ]
    for b, rss in (memory or {}).items():
        after, first, second = (
            rss.get("rss_after_run_mib"),
            rss.get("rss_after_repeat_1_mib"),
            rss.get("rss_after_repeat_2_mib"),
        )
        peak = max((v for v in (after, first, second) if v is not None), default=None)
        growth = second - first if first is not None and second is not None else None
        checks += [
            _le("worker RSS after the run", b, peak, 250.0, "MiB"),
            _le("RSS growth between two identical runs", b, growth, RSS_GROWTH_MIB, "MiB"),
        ]
    return checks


def check_rows(checks: Sequence[Check]) -> list[str]:
    columns = ("target", "backend", "measured", "limit", "verdict")
    cells = [
        (
            c.target + (f" ({c.note})" if c.note else ""),
            c.backend,
            _shown(c.value, c.unit),
            _limit(c),
            f"**{c.verdict}**" if c.met is False else c.verdict,
        )
        for c in checks
    ]
    return harness.table(columns, cells, right=("measured", "limit"))


def run_rows(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: tuple[str, ...] = ("scenario", "backend", "req/s", "p50 (ms)", "p99 (ms)")
    columns += ("p99/p50", "non-2xx", "Valkey cmds/req", "load")
    cells = []
    for r in runs:
        spread = p99_over_p50(r)
        valkey = r.get("valkey_per_request") or {}
        cells.append(
            (
                r["scenario"],
                r["backend"],
                *harness.speed_cells(r),
                f"{spread:.1f}" if spread is not None else "-",
                r.get("non_2xx", 0),
                f"{valkey['commands']:.2f}" if "commands" in valkey else "-",
                f"{r['loadavg_1m']:.1f}" if "loadavg_1m" in r else "-",
            )
        )
    return harness.table(columns, cells, right=(*columns[2:], "load"))


def markdown(report: Mapping[str, Any]) -> str:
    """The results page: the runs, the targets, the memory and Valkey figures."""
    load = report["load"]
    before, after = report["loadavg_before_after"]
    lines = [
        f"# Benchmark, {report['date']}, host `{report['hostname']}`, commit "
        f"{report['commit']}, {report['cpus']} CPUs{' (quick)' if report['quick'] else ''}",
        "",
        f"`{report['command']}`: granian, one worker{load['pinning']}; {load['tool']},"
        f" {load['connections']} connections, {load['warmup_s']} s warm-up,"
        f" {load['duration_s']} s measured; every gateway request with the API key of the"
        " `bench` role (row scope and a hidden field). Load average (1, 5, 15 min) before"
        f" {_loads(before)}, after {_loads(after)}; *load* is the 1-minute load average after"
        " each window (the benchmark alone makes about 2 on 2 CPUs: more means other work"
        " competed). Scenarios are described in `bench/README.md`.",
        "",
        *run_rows(report["runs"]),
        "",
        "## Targets (issue 10; ratios within this run)",
        "",
        *check_rows([_check(c) for c in report["checks"]]),
    ]
    trips = report.get("valkey_round_trips") or {}
    if trips:
        lines += [
            "",
            "## Valkey per request, one request at a time",
            "",
            *harness.table(
                ("request", "backend", "round trips", "commands", "requests"),
                [
                    (name, b, f"{v['round_trips']:.2f}", f"{v['commands']:.2f}", v["requests"])
                    for b, per in trips.items()
                    for name, v in per.items()
                ],
                right=("round trips", "commands", "requests"),
            ),
        ]
    memory = report.get("memory") or {}
    if memory:
        lines += [
            "",
            "## Gateway worker RSS (MiB)",
            "",
            *harness.table(
                ("backend", "after the run", "after repeat 1", "after repeat 2"),
                [
                    (
                        b,
                        *(
                            _mib(m.get(k))
                            for k in (
                                "rss_after_run_mib",
                                "rss_after_repeat_1_mib",
                                "rss_after_repeat_2_mib",
                            )
                        ),
                    )
                    for b, m in memory.items()
                ],
                right=("after the run", "after repeat 1", "after repeat 2"),
            ),
            "",
            f"A repeat replays {', '.join(report['memory_repeat'])} for"
            f" {report['memory_repeat_s']} s each, on the same server, after every other window.",
        ]
    if report.get("worktree_changes"):
        lines += ["", f"Uncommitted product files: {', '.join(report['worktree_changes'])}."]
    return "\n".join(lines) + "\n"


def _check(stored: Mapping[str, Any]) -> Check:
    """A check as the results file stores it (with its verdict, recomputed here)."""
    names = {f.name for f in dataclasses.fields(Check)}
    return Check(**{k: v for k, v in stored.items() if k in names})


def _loads(values: Sequence[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def _mib(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def chart(report: Mapping[str, Any], out: Path) -> Path:
    """A PNG of req/s (bars) and p50/p99 (ms) per scenario and backend, log scales."""
    import matplotlib as mpl  # noqa: PLC0415 - the bench extra, only here

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    runs = _merged(report["runs"])
    labels = [f"{s} ({b})" if b != "-" else s for s, b, *_ in runs]
    colours = {"sqlite": "tab:blue", "postgresql": "tab:orange", "-": "tab:gray"}
    ys = range(len(runs))
    height = 0.3 * len(runs) + 1.5
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, height), sharey=True)
    left.barh(ys, [r[2] for r in runs], color=[colours.get(r[1], "tab:gray") for r in runs])
    left.set_xscale("log")
    left.set_xlabel("requests/s (log)")
    left.set_yticks(list(ys), labels, fontsize=8)
    left.invert_yaxis()
    for y, r in zip(ys, runs, strict=True):
        left.text(r[2], y, f" {r[2]:,.0f}", va="center", fontsize=7)
    right.scatter([r[3] for r in runs], ys, marker="|", s=80, label="p50", color="tab:green")
    right.scatter([r[4] for r in runs], ys, marker="x", s=20, label="p99", color="tab:red")
    for y, r in zip(ys, runs, strict=True):
        right.plot([r[3], r[4]], [y, y], color="lightgray", zorder=0)
    right.set_xscale("log")
    right.set_xlabel("latency ms (log): p50 | and p99 x")
    right.legend(loc="lower right", fontsize=8)
    for axis in (left, right):
        axis.grid(axis="x", which="both", alpha=0.3)
    fig.suptitle(
        f"Jetstack Gateway benchmark {report['date']} {report['hostname']} "
        f"({report['commit']}; blue SQLite, orange PostgreSQL, grey baselines)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _merged(runs: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, float, float, float]]:
    """One entry per scenario and backend, in first-seen order: mean req/s and p50,
    worst p99."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["backend"]), []).append(r)
    return [
        (
            s,
            b,
            statistics.fmean(float(r["rps"]) for r in group),
            statistics.fmean(float(r["p50_ms"]) for r in group),
            max(float(r["p99_ms"]) for r in group),
        )
        for (s, b), group in groups.items()
    ]
