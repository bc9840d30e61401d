"""The `gateway` command line: serve, init, migrate, and the operator groups."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import click
from sqlalchemy import select

from gateway.embedded import start_embedded_valkey
from gateway.runtime import open_services
from gateway.settings import ServerSettings, Settings, SettingsError
from resolvers.errors import TenantFileError
from resolvers.migrate import DestructiveMigrationRefused, apply_plan, plan_migration
from resolvers.services import Services
from resolvers.users import ensure_admin

__all__ = ["main"]

_T = TypeVar("_T")


def _settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _run(settings: Settings, work: Callable[[Services], Awaitable[_T]], *, migrate: bool) -> _T:
    """Open the services (migrating additively when asked), run `work`, close them."""

    async def runner() -> _T:
        async with open_services(settings, migrate=migrate) as services:
            return await work(services)

    try:
        return asyncio.run(runner())
    except TenantFileError as exc:
        raise click.ClickException("the tenant file is refused:\n" + str(exc)) from exc
    except DestructiveMigrationRefused as exc:
        raise click.ClickException(str(exc)) from exc


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Jetstack Gateway: a tenant's typed collections over REST and GraphQL."""


async def _initialise(services: Services, settings: Settings) -> None:
    result = await ensure_admin(
        services, login=settings.admin.login, password=settings.admin.password
    )
    if result.created:
        click.echo(f"Created the admin user {settings.admin.login!r}.")
        if result.generated_password:
            click.echo(
                f"  login:    {settings.admin.login}\n"
                f"  password: {result.generated_password}\n"
                "  (shown once; set GATEWAY_ADMIN_PASSWORD to choose it)"
            )


@main.command()
def init() -> None:
    """Create the schema (additive changes only) and the admin user."""
    settings = _settings()
    _configure_logging(settings)
    _run(settings, lambda s: _initialise(s, settings), migrate=True)
    click.echo("Initialised.")


@main.command()
@click.option("--allow-destructive", is_flag=True, help="Also drop or change existing columns.")
@click.option("--dry-run", is_flag=True, help="Print the plan without applying it.")
def migrate(*, allow_destructive: bool, dry_run: bool) -> None:
    """Bring the database to the tenant file: print the plan, then apply it."""
    settings = _settings()
    _configure_logging(settings)

    async def work(services: Services) -> None:
        plan = await plan_migration(services.engine, services.schema)
        click.echo(plan.describe())
        if dry_run or plan.empty:
            return
        await apply_plan(
            services.writer,
            services.schema,
            tenant_digest=services.tenant.digest,
            allow_destructive=allow_destructive,
        )
        click.echo(f"Applied {len(plan.steps)} step(s).")

    _run(settings, work, migrate=False)


@main.command()
@click.option("--host", default=None, help="Listen address (default: GATEWAY_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (default: GATEWAY_PORT or 8000).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: 1).")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the gateway; with no settings, on SQLite and an embedded Valkey in ./.gateway."""
    from granian import Granian  # noqa: PLC0415 - the server is only needed by `serve`
    from granian.constants import Interfaces, Loops  # noqa: PLC0415

    started = time.monotonic()
    settings = _settings()
    server = ServerSettings(
        host=host or settings.server.host,
        port=port or settings.server.port,
        workers=workers or settings.server.workers,
    )
    settings = settings.with_server(server)
    _configure_logging(settings)
    embedded = None
    try:
        if settings.valkey.url is None:
            # One Valkey for every worker, so that they share one cache.
            embedded = start_embedded_valkey(settings.data_dir)
            settings = replace(
                settings, valkey=replace(settings.valkey, url=embedded.connection_url)
            )
            os.environ["GATEWAY_VALKEY_URL"] = str(embedded.connection_url)
        _run(settings, lambda s: _initialise(s, settings), migrate=settings.auto_migrate)
        os.environ["GATEWAY_AUTO_MIGRATE"] = "false"  # done once here, not in every worker
        click.echo(
            f"Jetstack Gateway on http://{server.host}:{server.port} "
            f"({server.workers} worker(s), prepared in {time.monotonic() - started:.2f} s)"
        )
        Granian(
            "gateway.asgi:app_from_env",
            factory=True,
            address=server.host,
            port=server.port,
            workers=server.workers,
            interface=Interfaces.ASGI,
            loop=Loops.auto,
            log_access=False,
        ).serve()
    finally:
        if embedded is not None:
            embedded.stop()


@main.group()
def user() -> None:
    """Manage users."""


@user.command("list")
def user_list() -> None:
    """List users with their roles and groups."""
    settings = _settings()

    async def work(services: Services) -> None:
        system = services.schema.system
        async with services.engine.connect() as conn:
            users = (await conn.execute(select(system.users).order_by(system.users.c.id))).all()
            roles = (await conn.execute(select(system.user_roles))).all()
            groups = (await conn.execute(select(system.user_groups))).all()
        for row in users:
            mine = sorted(r.role for r in roles if r.user_id == row.id)
            theirs = sorted(g.group_name for g in groups if g.user_id == row.id)
            state = "active" if row.active else "inactive"
            click.echo(
                f"{row.id:>5}  {row.login:<24} {state:<8} roles={','.join(mine) or '-'} "
                f"groups={','.join(theirs) or '-'}"
            )

    _run(settings, work, migrate=False)


@main.group()
def key() -> None:
    """Manage API keys."""


@main.group()
def cache() -> None:
    """Inspect and purge the response cache."""


@main.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
def outbox(limit: int) -> None:
    """Print the newest messages the embedded default delivered to its outbox."""
    settings = _settings()

    async def work(services: Services) -> None:
        table = services.schema.system.outbox
        async with services.engine.connect() as conn:
            rows = (
                await conn.execute(select(table).order_by(table.c.id.desc()).limit(limit))
            ).all()
        if not rows:
            click.echo("The outbox is empty.")
        for row in reversed(rows):
            stamp = f"{row.created_on:%Y-%m-%d %H:%M:%S}Z"
            click.echo(f"--- #{row.id} {stamp} {row.channel} to {row.recipient}")
            if row.subject:
                click.echo(f"Subject: {row.subject}")
            click.echo(row.body)

    _run(settings, work, migrate=False)
