"""`gateway user` and `gateway key` as an operator runs them: real processes on SQLite and
Valkey, checked against the app serving the same data directory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from gateway.app import create_app
from gateway.runtime import open_services
from gateway.settings import Settings
from tests.conftest import USER_PASSWORD, Backend, make_settings
from tests.integration.test_cli import _free_port, serving

pytestmark = pytest.mark.slow

GATEWAY = [sys.executable, "-m", "gateway"]
ADMIN_PASSWORD = "admin-password-for-cli-tests"
CURRENT_KEY = "/api/v1/auth/keys/current"


def _env(data_dir: Path, cache_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_PASSWORD_PROFILE="test",
        GATEWAY_ADMIN_PASSWORD=ADMIN_PASSWORD,
        GATEWAY_LOG_LEVEL="warning",
    )
    if cache_url is not None:
        env["GATEWAY_VALKEY_URL"] = cache_url
    return env


class Cli:
    """Runs `python -m gateway ...` on one data directory."""

    def __init__(self, data_dir: Path, cache_url: str | None) -> None:
        self.data_dir = data_dir
        self.env = _env(data_dir, cache_url)

    def run(
        self, *args: str, stdin: str | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*GATEWAY, *args],
            env=self.env,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if ok:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        else:
            assert result.returncode != 0, (args, result.stdout, result.stderr)
        return result

    async def arun(
        self, *args: str, stdin: str | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`run` off the event loop, which the in-process app shares with the test."""
        return await asyncio.to_thread(lambda: self.run(*args, stdin=stdin, ok=ok))

    def settings(self, cache_url: str) -> Settings:
        database = Backend("sqlite", f"sqlite+aiosqlite:///{self.data_dir / 'gateway.db'}")
        return make_settings(database, cache_url, self.data_dir)


@pytest.fixture
def cli(tmp_path: Path, cache_url: str) -> Cli:
    """An initialised data directory on SQLite and the test's Valkey."""
    cli = Cli(tmp_path / "data", cache_url)
    cli.run("init")
    return cli


@asynccontextmanager
async def app_on(cli: Cli, cache_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app in process on the CLI's data directory and Valkey."""
    async with AsyncTestClient(create_app(cli.settings(cache_url))) as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _key_id(listing: str, name: str) -> str:
    for line in listing.splitlines():
        if repr(name) in line:
            return line.split()[0]
    raise AssertionError(f"no key {name!r} in:\n{listing}")


def test_user_add_list_set_disable(cli: Cli) -> None:
    added = cli.run(
        "user", "add", "carol",
        "--password", USER_PASSWORD,
        "--email", "carol@example.com",
        "--role", "integration",
        "--group", "Reporting",
        "--timezone", "America/New_York",
        "--valid-to", "2030-01-15T09:00:00",
    )  # fmt: skip
    assert "Created user 'carol'" in added.stdout
    assert USER_PASSWORD not in added.stdout + added.stderr
    assert "roles=integration groups=Reporting email=carol@example.com" in added.stdout
    assert "..2030-01-15T09:00:00+01:00" in added.stdout  # naive: the tenant's zone, Prague

    piped = cli.run("user", "add", "dave", "--password", stdin="piped-password-1\n")
    assert "piped-password-1" not in piped.stdout
    from_stdin = cli.run("user", "add", "erin", stdin="stdin-password-1\n")
    assert "Created user 'erin'" in from_stdin.stdout
    generated = cli.run("user", "add", "frank", "--generate-password")
    assert generated.stdout.count("password: ") == 1
    cli.run("user", "add", "svc.sync", "--no-password", "--role", "integration")

    listed = cli.run("user", "list").stdout.splitlines()
    assert [line.split()[1] for line in listed] == [
        "admin", "carol", "dave", "erin", "frank", "svc.sync",
    ]  # fmt: skip
    assert "roles=admin" in listed[0]

    changed = cli.run(
        "user", "set", "carol",
        "--role", "reporter", "--role", "integration",
        "--no-groups", "--email", "none", "--valid-to", "none",
    )  # fmt: skip
    assert changed.stdout.split()[1:] == [
        "carol",
        "active",
        "roles=integration,reporter",
        "groups=-",
    ]
    inactive = cli.run("user", "set", "carol", "--inactive")
    assert " inactive " in inactive.stdout
    assert " active " in cli.run("user", "set", "carol", "--active").stdout
    disabled = cli.run("user", "disable", "carol")
    assert "Disabled 'carol'" in disabled.stdout
    assert "carol                    inactive" in cli.run("user", "list").stdout


def test_user_commands_explain_what_is_wrong(cli: Cli) -> None:
    cli.run("user", "add", "carol", "--no-password")

    unknown = cli.run("user", "set", "nobody", "--inactive", ok=False)
    assert "no user with login 'nobody'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert "no user with login 'nobody'" in cli.run("user", "disable", "nobody", ok=False).stderr

    invalid = cli.run(
        "user", "add", "erin", "--no-password",
        "--email", "not-an-address", "--timezone", "Mars/Olympus", "--role", "wizard",
        ok=False,
    )  # fmt: skip
    assert invalid.returncode == 1
    for problem in (
        "email: not an e-mail",
        "timezone: not an IANA",
        "roles: unknown roles: wizard",
    ):
        assert problem in invalid.stderr, invalid.stderr
    assert (
        "password: 10 to 1024" in cli.run("user", "add", "erin", "--password", "x", ok=False).stderr
    )
    window = cli.run(
        "user", "set", "carol", "--valid-from", "2030-01-01", "--valid-to", "2029-01-01", ok=False
    )
    assert "valid_to: must be after valid_from" in window.stderr
    assert (
        "login: that login is already taken"
        in cli.run("user", "add", "carol", "--no-password", ok=False).stderr
    )
    assert (
        "exclude each other"
        in cli.run(
            "user", "add", "erin", "--password", USER_PASSWORD, "--no-password", ok=False
        ).stderr
    )
    assert "nothing to change" in cli.run("user", "set", "carol", ok=False).stderr
    assert "no password on standard input" in cli.run("user", "add", "erin", ok=False).stderr
    assert "erin" not in cli.run("user", "list").stdout

    key = cli.run("key", "create", "--user", "nobody", "--name", "ci", ok=False)
    assert "no user with login 'nobody'" in key.stderr
    past = cli.run(
        "key", "create", "--user", "carol", "--name", "ci", "--expires", "2020-01-01", ok=False
    )
    assert "expires_at: must be in the future" in past.stderr
    assert (
        "name: 1 to 100"
        in cli.run("key", "create", "--user", "carol", "--name", " ", ok=False).stderr
    )
    assert "no API key with id 42" in cli.run("key", "revoke", "42", ok=False).stderr


def test_an_uninitialised_database_is_named(tmp_path: Path, cache_url: str) -> None:
    result = Cli(tmp_path / "fresh", cache_url).run("user", "list", ok=False)
    assert "run `gateway init` first" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_cli_key_works_until_it_is_revoked(cli: Cli, cache_url: str) -> None:
    await cli.arun("user", "add", "carol", "--no-password", "--role", "integration")
    created = await cli.arun("key", "create", "--user", "carol", "--name", "crm sync")
    key = created.stdout.strip()
    assert key.startswith("jgw_")
    assert created.stdout.count("jgw_") == 1
    assert "shown once" in created.stderr
    other = (await cli.arun("key", "create", "--user", "carol", "--name", "etl")).stdout.strip()

    async with app_on(cli, cache_url) as client:
        for _ in range(2):  # the second answer may come from the cached key snapshot
            current = await client.get(CURRENT_KEY, headers=_bearer(key))
            assert current.status_code == 200, current.text
        assert current.json()["user"]["login"] == "carol"
        assert current.json()["key"]["name"] == "crm sync"

        listing = (await cli.arun("key", "list", "--user", "carol")).stdout
        assert key not in listing
        assert key[21:] not in listing  # the secret: after "jgw_", 16 hex digits and "_"
        key_id = _key_id(listing, "crm sync")
        assert " valid " in listing
        await cli.arun("key", "revoke", key_id)

        assert (await client.get(CURRENT_KEY, headers=_bearer(key))).status_code == 401
        assert (await client.get(CURRENT_KEY, headers=_bearer(other))).status_code == 200
    listing = (await cli.arun("key", "list")).stdout
    assert "revoked" in listing
    assert "admin" not in listing  # the admin has no keys yet

    async with open_services(cli.settings(cache_url), migrate=False) as services:
        keys = services.schema.system.api_keys
        async with services.engine.connect() as conn:
            created_by = set((await conn.scalars(select(keys.c.created_by))).all())
    assert created_by == {0}  # the operator of the machine, no user's id


@pytest.mark.parametrize(
    "change",
    [("user", "disable", "carol"), ("user", "set", "carol", "--no-roles")],
    ids=["disable", "roles-removed"],
)
async def test_a_user_change_refuses_its_keys_on_the_next_request(
    cli: Cli, cache_url: str, change: tuple[str, ...]
) -> None:
    await cli.arun("user", "add", "carol", "--password", USER_PASSWORD, "--role", "integration")
    key = (await cli.arun("key", "create", "--user", "carol", "--name", "ci")).stdout.strip()
    async with app_on(cli, cache_url) as client:
        for _ in range(2):
            assert (await client.get(CURRENT_KEY, headers=_bearer(key))).status_code == 200
        await cli.arun(*change)
        assert (await client.get(CURRENT_KEY, headers=_bearer(key))).status_code == 401
        login = await client.post(
            "/api/v1/auth/keys", json={"login": "carol", "password": USER_PASSWORD, "name": "x"}
        )
        assert login.status_code == 401


async def test_a_generated_password_logs_in(cli: Cli, cache_url: str) -> None:
    output = await cli.arun("user", "add", "frank", "--generate-password", "--role", "reporter")
    password = output.stdout.split("password: ")[1].split()[0]
    warned = await cli.arun("key", "create", "--user", "admin", "--name", "ops")
    assert "Warning" not in warned.stderr
    async with app_on(cli, cache_url) as client:
        login = await client.post(
            "/api/v1/auth/keys", json={"login": "frank", "password": password, "name": "x"}
        )
        assert login.status_code == 201, login.text
    no_api = await cli.arun("user", "add", "gina", "--no-password")
    assert "gina" in no_api.stdout
    unusable = await cli.arun("key", "create", "--user", "gina", "--name", "x")
    assert "lacks useApi" in unusable.stderr


def test_revoking_reaches_a_running_servers_embedded_valkey(tmp_path: Path) -> None:
    """With no Valkey configured, operator commands evict from the one `serve` embedded."""
    cli = Cli(tmp_path / "data", cache_url=None)
    port = _free_port()
    with serving(cli.env, port):
        cli.run("user", "add", "carol", "--no-password", "--role", "integration")
        key = cli.run("key", "create", "--user", "carol", "--name", "ci").stdout.strip()
        url = f"http://127.0.0.1:{port}{CURRENT_KEY}"
        for _ in range(2):
            assert httpx.get(url, headers=_bearer(key), timeout=5).status_code == 200
        cli.run("key", "revoke", _key_id(cli.run("key", "list").stdout, "ci"))
        assert httpx.get(url, headers=_bearer(key), timeout=5).status_code == 401

        second = cli.run("key", "create", "--user", "carol", "--name", "again").stdout.strip()
        for _ in range(2):
            assert httpx.get(url, headers=_bearer(second), timeout=5).status_code == 200
        cli.run("user", "disable", "carol")
        assert httpx.get(url, headers=_bearer(second), timeout=5).status_code == 401
    assert not (cli.data_dir / "embedded-valkey.url").exists()
