"""Request ids, access logs and `/metrics` (issue 9, item 5), against real SQLite and Valkey.

The access line names the route template, status, user, cache outcome and request id,
and nothing a client sent that could be a secret; `/metrics` counts requests by route
template and status, cache outcomes by type, pool connections and challenge deliveries,
and is open on loopback only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.logs import JsonFormatter
from gateway.settings import Settings
from tests.conftest import (
    Api,
    Backend,
    kill_subscriptions,
    make_settings,
    start_api,
    wait_for_lease,
)

COMPANIES = "/api/v1/collections/Company"
RESET = "/api/v1/auth/password-reset"


def _sqlite_settings(tmp_path: Path, cache_url: str, **env: str) -> Settings:
    base = make_settings(
        Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"), cache_url, tmp_path
    )
    if not env:
        return base
    return Settings.from_env(
        {
            "GATEWAY_DATA_DIR": str(base.data_dir),
            "GATEWAY_DATABASE_URL": base.database.url,
            "GATEWAY_VALKEY_URL": cache_url,
            "GATEWAY_TENANT_FILE": str(base.tenant_file),
            "GATEWAY_PASSWORD_PROFILE": "test",
            **env,
        }
    )


@pytest.fixture
async def sqlite_api(tmp_path: Path, cache_url: str) -> AsyncIterator[Api]:
    async for started in start_api(_sqlite_settings(tmp_path, cache_url)):
        yield started


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text).get((name, frozenset(labels.items())), 0.0)


async def _metrics(api: Api) -> str:
    response = await api.client.get("/metrics", headers=api.auth(api.admin_key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


# --- request ids ----------------------------------------------------------------------


async def test_a_request_id_is_generated_or_taken_from_the_client(sqlite_api: Api) -> None:
    generated = await sqlite_api.client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
    again = await sqlite_api.client.get("/healthz")
    assert again.headers["X-Request-ID"] != generated.headers["X-Request-ID"]

    given = await sqlite_api.client.get("/healthz", headers={"X-Request-ID": "lb-7f3a:42"})
    assert given.headers["X-Request-ID"] == "lb-7f3a:42"

    for insane in (b"x" * 129, b"a b", b"<script>", "ok\u00e9".encode()):
        replaced = await sqlite_api.client.get("/healthz", headers={b"X-Request-ID": insane})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-ID"]), insane

    problem = await sqlite_api.client.get("/no/such/route", headers={"X-Request-ID": "abc"})
    assert problem.status_code == 404
    assert problem.headers["X-Request-ID"] == "abc"


# --- access log -----------------------------------------------------------------------


async def test_one_access_line_per_request_without_secrets(
    sqlite_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = sqlite_api
    user_id = await api.create_user("logged.user", roles=["integration"])
    key = await api.login("logged.user")
    created = await api.client.post(COMPANIES, json={"name": "Acme"}, headers=api.auth(key))
    assert created.status_code == 201, created.text
    record_id = created.json()["data"]["id"]

    caplog.set_level(logging.INFO, logger="gateway.access")
    caplog.clear()
    miss = await api.client.get(
        f"{COMPANIES}/{record_id}", headers={**api.auth(key), "X-Request-ID": "req-1"}
    )
    hit = await api.client.get(f"{COMPANIES}/{record_id}", headers=api.auth(key))
    revalidated = await api.client.get(
        f"{COMPANIES}/{record_id}", headers={**api.auth(key), "If-None-Match": hit.headers["ETag"]}
    )
    bypass = await api.client.get(
        f"{COMPANIES}/{record_id}", headers={**api.auth(key), "Cache-Control": "no-cache"}
    )
    assert [r.status_code for r in (miss, hit, revalidated, bypass)] == [200, 200, 304, 200]
    in_query = await api.client.get(f"{COMPANIES}?api_key={key}")
    assert in_query.status_code == 400
    password = "a-long-password"
    login = await api.client.post(
        "/api/v1/auth/keys", json={"login": "logged.user", "password": password, "name": "n"}
    )
    assert login.status_code == 201
    issued = login.json()["key"]

    lines = [r for r in caplog.records if r.name == "gateway.access"]
    assert len(lines) == 6
    first = lines[0]
    assert first.request_id == "req-1"  # type: ignore[attr-defined]
    assert first.method == "GET"  # type: ignore[attr-defined]
    assert first.route == "/api/v1/collections/Company/{record_id}"  # type: ignore[attr-defined]
    assert first.status == 200  # type: ignore[attr-defined]
    assert first.user_id == user_id  # type: ignore[attr-defined]
    assert [r.cache for r in lines[:4]] == ["miss", "hit", "revalidated", "bypass"]  # type: ignore[attr-defined]
    assert lines[4].status == 400  # type: ignore[attr-defined]
    assert lines[5].route == "/api/v1/auth/keys"  # type: ignore[attr-defined]

    formatter = JsonFormatter()
    ours = [r for r in caplog.records if r.name.startswith("gateway")]
    text = "\n".join(formatter.format(r) for r in ours)
    parsed = json.loads(formatter.format(first))
    assert {"time", "level", "logger", "message", "request_id", "route", "duration_ms"} <= set(
        parsed
    )
    assert parsed["cache"] == "miss"
    assert isinstance(parsed["duration_ms"], float)
    for secret in (key, issued, password, str(record_id) + "?", api.admin_key):
        assert secret not in text


async def test_json_log_lines_are_one_object_each(tmp_path: Path) -> None:
    formatter = JsonFormatter()
    error = ValueError("boom\nsecond line")
    record = logging.LogRecord(
        "gateway", logging.ERROR, __file__, 1, "failed: %s", ("x",), (ValueError, error, None)
    )
    line = formatter.format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed: x"
    assert parsed["level"] == "error"
    assert "ValueError: boom" in parsed["exc"]


# --- /metrics -------------------------------------------------------------------------


async def test_metrics_count_requests_cache_outcomes_and_the_pool(sqlite_api: Api) -> None:
    api = sqlite_api
    created = await api.client.post(
        COMPANIES, json={"name": "Acme"}, headers=api.auth(api.admin_key)
    )
    path = f"{COMPANIES}/{created.json()['data']['id']}"
    for _ in range(3):
        assert (await api.client.get(path, headers=api.auth(api.admin_key))).status_code == 200
    await api.client.get("/api/v1/collections/Company/999999", headers=api.auth(api.admin_key))

    text = await _metrics(api)
    route = "/api/v1/collections/Company/{record_id}"
    assert _value(text, "jgw_http_requests_total", method="GET", route=route, status="200") == 3
    assert _value(text, "jgw_http_requests_total", method="GET", route=route, status="404") == 1
    assert (
        _value(
            text, "jgw_http_request_duration_seconds_count", method="GET", route=route, status="200"
        )
        == 3
    )
    assert _value(text, "jgw_cache_requests_total", type="Company", outcome="miss") >= 1
    assert _value(text, "jgw_cache_requests_total", type="Company", outcome="hit") == 2
    assert _value(text, "jgw_db_pool_connections", state="size") >= 1
    assert _value(text, "jgw_db_pool_connections", state="in_use") == 0
    assert "/999999" not in text  # routes are templates, never raw paths

    unknown = await api.client.get("/no/such/thing/12345")
    assert unknown.status_code == 404
    text = await _metrics(api)
    assert _value(text, "jgw_http_requests_total", method="GET", route="unmatched", status="404")
    assert "12345" not in text


async def test_metrics_count_key_leases_held_and_lost(sqlite_api: Api) -> None:
    leases = sqlite_api.app_services.key_leases
    assert leases is not None
    await wait_for_lease(leases)
    text = await _metrics(sqlite_api)
    assert _value(text, "jgw_key_leases_total", event="held") == 1
    assert _value(text, "jgw_key_leases_total", event="lost") == 0
    await kill_subscriptions(str(sqlite_api.settings.valkey.url))
    counted = (0.0, 0.0)
    for _ in range(100):  # the worker subscribes again: a lease lost, then a new one
        text = await _metrics(sqlite_api)
        counted = (
            _value(text, "jgw_key_leases_total", event="held"),
            _value(text, "jgw_key_leases_total", event="lost"),
        )
        if counted == (2, 1):
            break
        await asyncio.sleep(0.05)
    assert counted == (2, 1)


async def test_metrics_need_a_manage_cache_key_off_loopback(sqlite_api: Api) -> None:
    api = sqlite_api
    assert (await api.client.get("/metrics")).status_code == 401  # the test client is not local
    await api.create_user("no.cache", roles=["integration"])
    key = await api.login("no.cache")
    assert (await api.client.get("/metrics", headers=api.auth(key))).status_code == 403
    assert (await api.client.get("/metrics", headers=api.auth(api.admin_key))).status_code == 200


async def test_metrics_are_open_on_loopback_unless_forwarded(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as client:
        local = await client.get("/metrics")
        assert local.status_code == 200
        assert "jgw_http_requests_total" in local.text
        forwarded = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert forwarded.status_code == 401


@pytest.mark.parametrize(("mode", "status"), [("off", 404), ("key", 401), ("open", 200)])
async def test_metrics_access_modes(tmp_path: Path, cache_url: str, mode: str, status: int) -> None:
    settings = _sqlite_settings(tmp_path, cache_url, GATEWAY_METRICS=mode)
    async for api in start_api(settings):
        assert (await api.client.get("/metrics")).status_code == status


async def test_challenge_deliveries_and_failures_by_channel(tmp_path: Path, cache_url: str) -> None:
    closed = httpx.URL("http://127.0.0.1:9/sms")  # the discard port: nothing listens there
    settings = _sqlite_settings(tmp_path, cache_url, GATEWAY_SMS_WEBHOOK_URL=str(closed))
    async for api in start_api(settings):
        await api.create_user("reset.me", email="reset.me@example.com", phone="+420601123456")
        mailed = await api.client.post(
            RESET, json={"login": "reset.me"}, headers=api.auth(api.admin_key)
        )
        assert mailed.status_code == 200, mailed.text
        texted = await api.client.post(
            RESET,
            json={"email": "reset.me@example.com", "methods": ["sms_code"]},
            headers=api.auth(api.admin_key),
        )
        assert texted.status_code == 502, texted.text
        text = await _metrics(api)
        assert (
            _value(text, "jgw_challenge_deliveries_total", channel="email", outcome="delivered")
            == 1
        )
        assert _value(text, "jgw_challenge_deliveries_total", channel="sms", outcome="failed") == 1
