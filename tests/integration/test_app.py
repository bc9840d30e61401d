"""The app factory and its probes, in process, on both backends."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import Backend, make_settings


async def test_probes_report_ok(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "valkey": "ok"}


async def test_readyz_is_503_and_names_valkey_when_it_is_unreachable(
    backend: Backend, tmp_path: Path, cache_url: str
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings = make_settings(backend, cache_url, tmp_path)
    settings = replace(
        settings, valkey=replace(settings.valkey, url=f"valkey://127.0.0.1:{closed_port}")
    )
    async with AsyncTestClient(create_app(settings)) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["valkey"].startswith("unavailable")


async def test_unknown_routes_answer_problem_json(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        response = await client.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


async def test_openapi_is_served_under_the_versioned_prefix(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        document = (await client.get("/api/v1/openapi.json")).json()
        docs = await client.get("/api/v1/docs")
    assert document["openapi"].startswith("3.1")
    assert docs.status_code == 200
