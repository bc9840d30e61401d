"""The pure pieces of the benchmark command (`bench/harness.py`, `bench/report.py`):
reading wrk's report, request files, target ratios and verdicts. No benchmark runs here."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # appended: bench/'s module names never shadow others
harness = importlib.import_module("harness")
report = importlib.import_module("report")

WRK_OUT = """\
Running 10s test @ http://127.0.0.1:8000/api/v1/collections/Item
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.86ms    2.10ms  40.12ms   80.00%
    Req/Sec     4.01k   300.00     4.50k    70.00%
  Latency Distribution
     50%  {p50}
     75%    8.90ms
     90%   10.10ms
     99%  {p99}
  80123 requests in 10.00s, 95.00MB read
{extra}Requests/sec:   8012.30
Transfer/sec:      9.50MB
"""


def _wrk(p50: str = "7.61ms", p99: str = "12.70ms", extra: str = "") -> str:
    return WRK_OUT.format(p50=p50, p99=p99, extra=extra)


def test_wrk_report_gives_rate_count_and_percentiles_in_ms() -> None:
    result = harness.parse_wrk(_wrk())
    assert result.rps == 8012.30
    assert result.requests == 80123
    assert result.p50_ms == pytest.approx(7.61)
    assert result.p99_ms == pytest.approx(12.70)
    assert (result.errors, result.non_2xx) == (None, 0)


def test_wrk_latencies_in_us_and_in_seconds_with_wrk_trailing_space() -> None:
    result = harness.parse_wrk(_wrk(p50="830.00us", p99="1.37s "))
    assert result.p50_ms == pytest.approx(0.83)
    assert result.p99_ms == pytest.approx(1370.0)


def test_wrk_errors_and_non_2xx_count_are_kept() -> None:
    extra = (
        "  Socket errors: connect 0, read 0, write 0, timeout 12\n  Non-2xx or 3xx responses: 345\n"
    )
    result = harness.parse_wrk(_wrk(extra=extra))
    assert result.non_2xx == 345
    assert "timeout 12" in result.errors
    assert "Non-2xx or 3xx responses: 345" in result.errors


def test_wrk_report_without_percentiles_is_refused_unless_not_asked() -> None:
    out = "\n".join(line for line in _wrk().splitlines() if "%  " not in line)
    with pytest.raises(RuntimeError, match="cannot parse"):
        harness.parse_wrk(out)
    assert harness.parse_wrk(out, latency=False).p99_ms is None


def test_request_file_lines_round_trip(tmp_path: Path) -> None:
    requests = [
        harness.Request("GET", "/api/v1/collections/Item/7", (("If-None-Match", '"abc"'),)),
        harness.Request(
            "POST", "/graphql", (("Content-Type", "application/json"),), '{"query": "{ a }"}'
        ),
        harness.Request("GET", "/x?_filter=rank >= 5000 and state = 'open'"),
    ]
    path = harness.write_requests(tmp_path / "requests.txt", requests)
    assert harness.read_requests(path) == requests
    assert path.read_text().splitlines()[0] == (
        'GET\t/api/v1/collections/Item/7\t\tIf-None-Match: "abc"'
    )


def test_request_file_refuses_tabs_newlines_and_emptiness(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tab or a newline"):
        harness.write_requests(tmp_path / "r", [harness.Request("POST", "/", (), "a\nb")])
    with pytest.raises(ValueError, match="at least one"):
        harness.write_requests(tmp_path / "r", [])


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert harness.percentile(values, 0.50) == 50.0
    assert harness.percentile(values, 0.99) == 99.0
    assert harness.percentile([3.0], 0.99) == 3.0


def test_valkey_delta_leaves_out_the_info_between() -> None:
    before = {"total_commands_processed": 100, "total_reads_processed": 50}
    after = {"total_commands_processed": 301, "total_reads_processed": 151}
    assert harness.valkey_delta(before, after) == {
        "total_commands_processed": 200,
        "total_reads_processed": 100,
    }


def _run(
    scenario: str, backend: str, rps: float, p50: float = 5.0, p99: float = 10.0
) -> dict[str, Any]:
    return {"scenario": scenario, "backend": backend, "rps": rps, "p50_ms": p50, "p99_ms": p99}


RUNS = [
    _run("bare", "-", 20_000),
    _run("bare", "-", 30_000),  # the bare route counts by its mean: 25,000
    _run("trivial anon", "-", 10_000),
    _run("trivial whoami", "-", 9_000),
    _run("core list", "postgresql", 500),
    _run("core get", "postgresql", 2_000),
    _run("rest list uncached", "postgresql", 450),
    _run("rest get uncached", "postgresql", 1_000),
    _run("rest list cached", "postgresql", 12_000, p99=120.0),
    _run("rest get cached", "postgresql", 9_000),
    _run("rest list 304", "postgresql", 12_500),
    _run("rest get 304", "postgresql", 8_000),
    _run("graphql list cached", "postgresql", 11_000, p50=2.0, p99=12.0),
    _run("graphql get cached", "postgresql", 9_000),
    _run("graphql list uncached", "postgresql", 200),
]


def _checks(**kw: Any) -> dict[tuple[str, str], Any]:
    return {(c.target, c.backend): c for c in report.evaluate(RUNS, **kw)}


def test_targets_are_ratios_within_the_run_with_verdicts() -> None:
    checks = _checks()
    cached_list = checks["cached list / bare route", "postgresql"]
    assert cached_list.value == pytest.approx(12_000 / 25_000)
    assert cached_list.verdict == "met"
    assert checks["cached get / bare route", "postgresql"].verdict == "missed"  # 36 %
    assert checks["cached list p99", "postgresql"].verdict == "missed"  # 120 ms
    assert checks["cached get p99", "postgresql"].verdict == "met"
    assert checks["uncached list / hand-written Core list", "postgresql"].verdict == "met"
    assert checks["uncached get / hand-written Core get", "postgresql"].verdict == "missed"
    assert checks["304 list / cached list", "postgresql"].verdict == "met"
    assert checks["304 get / cached get", "postgresql"].verdict == "missed"
    graphql_list = checks["GraphQL cached list / REST cached list", "postgresql"]
    assert graphql_list.value == pytest.approx(11 / 12)
    assert graphql_list.verdict == "met"
    assert checks["GraphQL uncached list / REST uncached list", "postgresql"].verdict == "missed"
    spread = checks["GraphQL p99 / p50 (worst window)", "postgresql"]
    assert (spread.value, spread.note, spread.verdict) == (6.0, "graphql list cached", "missed")
    auth = checks["authentication cost on the trivial route", "-"]
    assert auth.value == pytest.approx(0.10)
    assert auth.verdict == "met"


def test_targets_whose_scenarios_did_not_run_are_not_measured() -> None:
    checks = _checks()
    assert checks["GraphQL uncached get / REST uncached get", "postgresql"].verdict == (
        "not measured"
    )
    assert not any(backend == "sqlite" for _, backend in checks)  # no SQLite runs at all


def test_round_trips_and_memory_targets() -> None:
    memory = {
        "postgresql": {
            "rss_after_run_mib": 180.0,
            "rss_after_repeat_1_mib": 190.0,
            "rss_after_repeat_2_mib": 195.0,
        }
    }
    checks = _checks(round_trips={"postgresql": 2.0}, memory=memory)
    trips = checks["Valkey round trips per cache hit (auth included)", "postgresql"]
    assert trips.verdict == "met"  # at most two
    rss = checks["worker RSS after the run", "postgresql"]
    assert (rss.value, rss.verdict) == (195.0, "met")
    growth = checks["RSS growth between two identical runs", "postgresql"]
    assert (growth.value, growth.verdict) == (5.0, "missed")


def test_sqlite_core_ratio_is_shown_without_a_target() -> None:
    runs = [_run("core list", "sqlite", 100), _run("rest list uncached", "sqlite", 50)]
    check = {c.target: c for c in report.evaluate(runs)}["uncached list / hand-written Core list"]
    assert (check.value, check.limit, check.verdict) == (0.5, None, "-")


def test_markdown_shows_runs_targets_and_load() -> None:
    checks = report.evaluate(RUNS)
    page = report.markdown(
        {
            "date": "2026-11-28",
            "hostname": "vm",
            "commit": "abc1234",
            "cpus": 2,
            "quick": False,
            "command": "bench/run.py",
            "loadavg_before_after": [[1.0, 2.0, 3.0], [2.5, 2.0, 3.0]],
            "load": {
                "tool": "wrk",
                "connections": 64,
                "warmup_s": 3,
                "duration_s": 10,
                "pinning": " pinned to CPU 0",
            },
            "runs": [r | {"loadavg_1m": 2.2} for r in RUNS],
            "checks": [dataclasses.asdict(c) | {"verdict": c.verdict} for c in checks],
        }
    )
    assert "| rest list cached | postgresql | 12000 | 5.00 | 120.00 | 24.0 | 0 | - | 2.2 |" in page
    assert "| cached list p99 | postgresql | 120.0 ms | ≤ 100.0 ms | **missed** |" in page
    assert "before 1.0/2.0/3.0, after 2.5/2.0/3.0" in page
