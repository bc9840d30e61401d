"""The `gateway` command line: serve, init, migrate, and the operator groups.

`user` and `key` act as the operator of the machine: an admin-equivalent principal
that goes through the same resolvers as the API, so the same validation, rules and
cache evictions apply (a key revoked here is refused on its next request).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import secrets
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import click
import valkey
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from gateway.embedded import start_embedded_valkey
from gateway.runtime import configure_logging, open_services
from gateway.settings import Settings, SettingsError
from resolvers import auth, cache_admin, users
from resolvers.errors import Conflict, GatewayError, Invalid, TenantFileError
from resolvers.metrics import MULTIPROC_DIR
from resolvers.migrate import DestructiveMigrationRefused, apply_plan, plan_migration
from resolvers.principal import Principal, system_principal
from resolvers.services import CACHE_ERRORS, Services
from resolvers.tenant import ADMIN_ROLE
from resolvers.users import ensure_admin

__all__ = ["main"]

_T = TypeVar("_T")

_EMBEDDED_VALKEY_FILE = "embedded-valkey.url"
"""Where `serve` leaves its embedded Valkey's URL, so that operator commands evict there."""
_NONE = "none"


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
    configure_logging(settings)
    _run(settings, lambda s: _initialise(s, settings), migrate=True)
    click.echo("Initialised.")


@main.command()
@click.option("--allow-destructive", is_flag=True, help="Also drop or change existing columns.")
@click.option("--dry-run", is_flag=True, help="Print the plan without applying it.")
def migrate(*, allow_destructive: bool, dry_run: bool) -> None:
    """Bring the database to the tenant file: print the plan, then apply it."""
    settings = _settings()
    configure_logging(settings)

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
    server = replace(
        settings.server,
        host=host or settings.server.host,
        port=port or settings.server.port,
        workers=workers or settings.server.workers,
    )
    settings = settings.with_server(server)
    configure_logging(settings)
    embedded = None
    try:
        if settings.valkey.url is None:
            # One Valkey for every worker, so that they share one cache.
            embedded = start_embedded_valkey(settings.data_dir)
            settings = replace(
                settings, valkey=replace(settings.valkey, url=embedded.connection_url)
            )
            os.environ["GATEWAY_VALKEY_URL"] = str(embedded.connection_url)
            _embedded_file(settings).write_text(str(embedded.connection_url))
        _run(settings, lambda s: _initialise(s, settings), migrate=settings.auto_migrate)
        os.environ["GATEWAY_AUTO_MIGRATE"] = "false"  # done once here, not in every worker
        if server.workers > 1:
            # Every worker writes its metrics here and /metrics sums them (prometheus_client's
            # multiprocess mode); a fresh directory per start, so no dead worker counts.
            metrics_dir = settings.data_dir / "metrics"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            os.environ[MULTIPROC_DIR] = str(metrics_dir)
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
            # SIGTERM: stop accepting, let in-flight requests finish, then kill what is left.
            workers_kill_timeout=math.ceil(server.shutdown_grace),
        ).serve()
    finally:
        if embedded is not None:
            _embedded_file(settings).unlink(missing_ok=True)
            embedded.stop()


# --- operator commands: users and keys ----------------------------------------------


def _embedded_file(settings: Settings) -> Path:
    return settings.data_dir / _EMBEDDED_VALKEY_FILE


def _running_embedded_valkey(settings: Settings) -> str | None:
    """The URL of the Valkey a running `gateway serve` embedded for this data directory."""
    try:
        url = _embedded_file(settings).read_text().strip()
    except OSError:
        return None
    try:
        with valkey.Valkey.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0) as client:
            client.ping()
    except (valkey.ValkeyError, OSError, ValueError):
        return None  # left behind by a server that is gone
    return url


def _operator(services: Services) -> Principal:
    """The machine's operator: the built-in admin role, and a user id no row can have."""
    return system_principal(services.tenant, login="(command line)", roles=(ADMIN_ROLE,))


def _explain(exc: GatewayError) -> str:
    if isinstance(exc, Invalid) and exc.errors:
        return "\n".join([exc.detail + ":", *(f"  {e.field}: {e.message}" for e in exc.errors)])
    if isinstance(exc, Conflict) and exc.field:
        return f"{exc.field}: {exc.detail}"
    return exc.detail


def _operate(work: Callable[[Services, Principal], Awaitable[_T]]) -> _T:
    """Run `work` as the operator on the configured database and Valkey."""
    settings = _settings()
    configure_logging(settings)
    if settings.valkey.url is None and (url := _running_embedded_valkey(settings)):
        settings = replace(settings, valkey=replace(settings.valkey, url=url))
    try:
        return _run(settings, lambda s: work(s, _operator(s)), migrate=False)
    except GatewayError as exc:
        raise click.ClickException(_explain(exc)) from exc
    except (OperationalError, ProgrammingError) as exc:
        first = str(exc.orig or exc).splitlines()[0]
        raise click.ClickException(
            f"the database is not ready ({first}); run `gateway init` first"
        ) from exc


async def _user_id(services: Services, login: str) -> int:
    table = services.schema.system.users
    async with services.engine.connect() as conn:
        user_id = await conn.scalar(select(table.c.id).where(table.c.login == login))
    if user_id is None:
        raise click.ClickException(f"no user with login {login!r}")
    return int(user_id)


def _when(value: dt.datetime | None, default: str = "-") -> str:
    return value.isoformat(timespec="seconds") if value is not None else default


def _describe(view: users.UserView) -> str:
    state = "active" if view.active else "inactive"
    line = (
        f"{view.id:>5}  {view.login:<24} {state:<8} roles={','.join(view.roles) or '-'} "
        f"groups={','.join(view.groups) or '-'}"
    )
    if view.email:
        line += f" email={view.email}"
    if view.valid_from or view.valid_to:
        line += f" valid={_when(view.valid_from, '')}..{_when(view.valid_to, '')}"
    return line


def _password_from_stdin_or_prompt() -> str:
    """Prompted (twice) on a terminal; otherwise the first line of standard input."""
    if sys.stdin.isatty():
        password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise click.UsageError("no password on standard input")
    return line


def _or_none(value: str | None) -> str | None:
    return None if value is None or value.lower() == _NONE else value


_ASK_HELP = "The password; given without a value, it is prompted for (or read from stdin)."
_CLEARABLE = f"; `{_NONE}` clears it"


@main.group()
def user() -> None:
    """Manage users (as the operator of this machine: with the admin's rights)."""


@user.command("list")
@click.option(
    "--limit", type=click.IntRange(1, users.MAX_PAGE), default=None, help="At most this many."
)
def user_list(limit: int | None) -> None:
    """List users with their roles and groups."""

    async def work(services: Services, operator: Principal) -> None:
        offset = 0
        while True:
            page_size = users.MAX_PAGE if limit is None else limit
            page = await users.list_users(services, operator, limit=page_size, offset=offset)
            for view in page:
                click.echo(_describe(view))
            if limit is not None or len(page) < page_size:
                return
            offset += page_size

    _operate(work)


@user.command("add")
@click.argument("login")
@click.option("--password", is_flag=False, flag_value="", default=None, help=_ASK_HELP)
@click.option("--generate-password", is_flag=True, help="Generate one and print it once.")
@click.option("--no-password", is_flag=True, help="None at all: the user works with keys only.")
@click.option("--email")
@click.option("--phone")
@click.option("--role", "roles", multiple=True, help="A role from the tenant file (repeatable).")
@click.option("--group", "groups", multiple=True, help="A group from the tenant file (repeatable).")
@click.option("--timezone", help="IANA name; default: the tenant's.")
@click.option("--valid-from", help="ISO 8601; naive means the tenant's time zone.")
@click.option("--valid-to", help="ISO 8601; naive means the tenant's time zone.")
def user_add(
    login: str,
    password: str | None,
    *,
    generate_password: bool,
    no_password: bool,
    email: str | None,
    phone: str | None,
    roles: tuple[str, ...],
    groups: tuple[str, ...],
    timezone: str | None,
    valid_from: str | None,
    valid_to: str | None,
) -> None:
    """Create the user LOGIN."""
    if (password is not None) + generate_password + no_password > 1:
        raise click.UsageError(
            "--password, --generate-password and --no-password exclude each other"
        )
    generated = secrets.token_urlsafe(18) if generate_password else None
    if not no_password:
        password = generated or password or _password_from_stdin_or_prompt()
    data: dict[str, object] = {"login": login, "roles": list(roles), "groups": list(groups)}
    optional = {
        "password": None if no_password else password,
        "email": email,
        "phone": phone,
        "timezone": timezone,
        "valid_from": valid_from,
        "valid_to": valid_to,
    }
    data.update({k: v for k, v in optional.items() if v is not None})

    async def work(services: Services, operator: Principal) -> users.UserView:
        return await users.create_user(services, operator, data)

    view = _operate(work)
    click.echo(f"Created user {view.login!r}:")
    click.echo(_describe(view))
    if generated:
        click.echo(f"  password: {generated}\n  (shown once)")


@user.command("set")
@click.argument("login")
@click.option("--password", is_flag=False, flag_value="", default=None, help=_ASK_HELP)
@click.option("--email", help="The e-mail address" + _CLEARABLE)
@click.option("--phone", help="The phone number" + _CLEARABLE)
@click.option("--timezone", help="IANA name" + _CLEARABLE)
@click.option("--role", "roles", multiple=True, help="Replace the roles with these (repeatable).")
@click.option("--no-roles", is_flag=True, help="Remove every role.")
@click.option(
    "--group", "groups", multiple=True, help="Replace the groups with these (repeatable)."
)
@click.option("--no-groups", is_flag=True, help="Remove every group.")
@click.option("--active/--inactive", default=None, help="Allow or refuse the user's keys.")
@click.option("--valid-from", help="ISO 8601 (naive: the tenant's time zone)" + _CLEARABLE)
@click.option("--valid-to", help="ISO 8601 (naive: the tenant's time zone)" + _CLEARABLE)
def user_set(
    login: str,
    password: str | None,
    *,
    email: str | None,
    phone: str | None,
    timezone: str | None,
    roles: tuple[str, ...],
    no_roles: bool,
    groups: tuple[str, ...],
    no_groups: bool,
    active: bool | None,
    valid_from: str | None,
    valid_to: str | None,
) -> None:
    """Change the user LOGIN: only what is given changes. Its keys see it on their next request."""
    if (roles and no_roles) or (groups and no_groups):
        raise click.UsageError("--role with --no-roles, or --group with --no-groups")
    data: dict[str, object] = {
        name: _or_none(value)
        for name, value in {
            "email": email,
            "phone": phone,
            "timezone": timezone,
            "valid_from": valid_from,
            "valid_to": valid_to,
        }.items()
        if value is not None
    }
    if roles or no_roles:
        data["roles"] = list(roles)
    if groups or no_groups:
        data["groups"] = list(groups)
    if active is not None:
        data["active"] = active
    if password is not None:
        data["password"] = password or _password_from_stdin_or_prompt()
    if not data:
        raise click.UsageError("nothing to change; see `gateway user set --help`")

    async def work(services: Services, operator: Principal) -> users.UserView:
        return await users.update_user(services, operator, await _user_id(services, login), data)

    click.echo(_describe(_operate(work)))


@user.command("disable")
@click.argument("login")
def user_disable(login: str) -> None:
    """Deactivate the user LOGIN: its keys are refused from their next request."""

    async def work(services: Services, operator: Principal) -> users.UserView:
        user_id = await _user_id(services, login)
        return await users.update_user(services, operator, user_id, {"active": False})

    view = _operate(work)
    click.echo(f"Disabled {view.login!r}; its keys are refused from their next request.")


@main.group()
def key() -> None:
    """Manage API keys (as the operator of this machine)."""


@key.command("create")
@click.option("--user", "login", required=True, help="The login the key acts as.")
@click.option("--name", required=True, help="What the key is for (1 to 100 characters).")
@click.option(
    "--expires", help="ISO 8601 (naive: the tenant's zone); default and limit: the user's valid_to."
)
def key_create(login: str, name: str, expires: str | None) -> None:
    """Create a key for a user; the key alone goes to stdout, shown this once."""

    async def work(
        services: Services, operator: Principal
    ) -> tuple[auth.IssuedKey, auth.KeyOwner, users.UserView]:
        user_id = await _user_id(services, login)
        issued, owner = await auth.issue_key(
            services, operator, user_id=user_id, name=name, expires_at=expires
        )
        return issued, owner, await users.get_user(services, operator, user_id)

    issued, owner, view = _operate(work)
    click.echo(
        f"Created key {issued.key.id} {issued.key.name!r} for {owner.login!r}, "
        f"expires {_when(issued.key.expires_at, 'never')}. It is shown once:",
        err=True,
    )
    click.echo(issued.secret)
    if "useApi" not in owner.permissions or not view.active:
        click.echo(
            f"Warning: {owner.login!r} is inactive or lacks useApi; the key is refused until "
            "that changes.",
            err=True,
        )


@key.command("list")
@click.option("--user", "login", default=None, help="Only this user's keys.")
def key_list(login: str | None) -> None:
    """List keys: metadata only, never a secret."""

    async def work(services: Services, operator: Principal) -> None:
        keys, table = services.schema.system.api_keys, services.schema.system.users
        query = (
            select(keys.c.id, table.c.login)
            .join(table, table.c.id == keys.c.user_id)
            .order_by(keys.c.id)
        )
        if login is not None:
            query = query.where(keys.c.user_id == await _user_id(services, login))
        async with services.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        now = services.clock()
        for row in rows:
            item = await auth.get_key(services, operator, row.id)
            if item.revoked_on is not None:
                state = f"revoked {_when(item.revoked_on)}"
            elif item.expires_at is not None and item.expires_at <= now:
                state = "expired"
            else:
                state = "valid"
            click.echo(
                f"{item.id:>5}  {row.login:<24} {item.name!r:<24} {state:<8} "
                f"created={_when(item.created_on)} last_used={_when(item.last_used_on)} "
                f"expires={_when(item.expires_at, 'never')}"
            )
        if not rows:
            click.echo("No keys.")

    _operate(work)


@key.command("revoke")
@click.argument("key_id", metavar="ID", type=click.IntRange(min=1))
def key_revoke(key_id: int) -> None:
    """Revoke the key ID: it is refused from its next request."""

    async def work(services: Services, operator: Principal) -> None:
        await auth.revoke_key(services, operator, key_id)

    _operate(work)
    click.echo(f"Revoked key {key_id}; it is refused from its next request.")


@main.group()
def cache() -> None:
    """Inspect and purge the response cache."""


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover - the loop always returns


@cache.command("stats")
def cache_stats() -> None:
    """Entries and memory per type; hits, misses and bypasses of every process."""

    async def work(services: Services, operator: Principal) -> cache_admin.CacheStats:
        return await cache_admin.cache_stats(services, operator)

    stats = _operate(work)
    if not stats.available:
        raise click.ClickException("the response cache (Valkey) is unreachable")
    ratio = "-" if stats.hit_ratio is None else f"{stats.hit_ratio:.1%}"
    click.echo(
        f"hits {stats.hits}  misses {stats.misses}  bypasses {stats.bypasses}  "
        f"hit ratio {ratio}  since {stats.since or '-'}"
    )
    click.echo(f"entries live at most {stats.list_ttl} s (GATEWAY_CACHE_LIST_TTL)")
    if not stats.types:
        click.echo("No cached entries.")
        return
    width = max(len(name) for name in stats.types)
    click.echo(f"{'type':<{width}}  {'entries':>8}  {'memory':>10}")
    for name, figures in stats.types.items():
        click.echo(f"{name:<{width}}  {figures.entries:>8}  {_size(figures.memory_bytes):>10}")
    click.echo(f"{'total':<{width}}  {stats.entries:>8}  {_size(stats.memory_bytes):>10}")
    if stats.truncated:
        click.echo(f"(counted the first {cache_admin.SCAN_LIMIT} keys only)")


@cache.command("purge")
@click.option("--type", "type_name", help="Only the entries of this type.")
@click.option("--user", "login", help="Only the entries of this user (a login).")
@click.option("--all", "everything", is_flag=True, help="Every entry (when no filter is given).")
def cache_purge(type_name: str | None, login: str | None, *, everything: bool) -> None:
    """Delete cached entries: of one type, one user, both, or --all."""
    if not (type_name or login or everything):
        raise click.UsageError("say what to purge: --type, --user, or --all")

    async def work(services: Services, operator: Principal) -> int:
        user_id = None if login is None else await _user_id(services, login)
        try:
            return await cache_admin.purge_cache(
                services, operator, type_name=type_name, user_id=user_id
            )
        except CACHE_ERRORS as exc:
            raise click.ClickException("the response cache (Valkey) is unreachable") from exc

    deleted = _operate(work)
    click.echo(f"Purged {deleted} cached entr{'y' if deleted == 1 else 'ies'}.")


@main.group("schema")
def schema_group() -> None:
    """The GraphQL schema of the configured tenant."""


@schema_group.command("export")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the SDL to this file (default: standard output).",
)
def schema_export(output: Path | None) -> None:
    """Write the GraphQL schema (SDL) of the tenant file; needs no database."""
    from resolvers.tenant import load_tenant  # noqa: PLC0415 - strawberry only for this
    from schema.build import build_schema  # noqa: PLC0415

    settings = _settings()
    try:
        tenant = load_tenant(settings.tenant_file)
    except TenantFileError as exc:
        raise click.ClickException("the tenant file is refused:\n" + str(exc)) from exc
    sdl = build_schema(tenant).as_str() + "\n"
    if output is None:
        click.echo(sdl, nl=False)
        return
    output.write_text(sdl, encoding="utf-8")
    click.echo(f"Wrote the GraphQL schema of {tenant.name!r} to {output}.", err=True)


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
