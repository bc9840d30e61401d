"""Opening and closing what resolvers need, for the app's lifespan and for the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from valkey.asyncio import Valkey
from valkey.asyncio.cluster import ValkeyCluster

from gateway.embedded import start_embedded_valkey
from gateway.logs import BufferedStreamHandler, JsonFormatter, TextFormatter, lean_records
from gateway.settings import Settings, ValkeySettings
from resolvers.batching import BatchedReads, ValkeyClient
from resolvers.blobs import local_file_storage
from resolvers.cache import ResponseCache
from resolvers.commands import CommandRegistry, load_commands
from resolvers.errors import TenantFileError
from resolvers.key_leases import KeyLeases
from resolvers.metrics import GatewayMetrics
from resolvers.migrate import apply_plan
from resolvers.notify import build_notifiers
from resolvers.passwords import Passwords
from resolvers.query_compile import check_scopes
from resolvers.ratelimit import LoginLimits
from resolvers.services import ChallengePolicy, Services, utc_now
from resolvers.storage import Schema, build_schema, create_engine, writer
from resolvers.tenant import Tenant, load_tenant

__all__ = ["configure_logging", "connect_valkey", "open_services"]

_log = logging.getLogger("gateway")


_QUIET = {
    "alembic": logging.WARNING,  # a line per comparison step at every start
    "httpx": logging.WARNING,  # request URLs at INFO: a webhook URL may carry a token
    "httpcore": logging.WARNING,
    "aiosqlite": logging.INFO,  # statements with their values at DEBUG: message texts
}


def configure_logging(settings: Settings) -> None:
    """Log to stderr at the configured level, as text or JSON lines (`GATEWAY_LOG_FORMAT`);
    libraries that would log secrets, quieter."""
    lean_records()
    handler = BufferedStreamHandler(sys.stderr)
    json_lines = settings.observability.log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    # `force`: Litestar configures the root logger when an app is built; ours wins.
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(max(level, logging.getLogger().level))


@asynccontextmanager
async def open_services(
    settings: Settings,
    tenant: Tenant | None = None,
    schema: Schema | None = None,
    *,
    migrate: bool | None = None,
    metrics: GatewayMetrics | None = None,
    commands: CommandRegistry | None = None,
    hold_keys: bool = False,
) -> AsyncIterator[Services]:
    """Open the engine and Valkey (embedded when no URL is set); close both on the way out.

    With `migrate` (default: the `auto_migrate` setting) additive schema changes are
    applied first; destructive ones stop the start with the plan in the message. The
    tenant's command modules are loaded (and checked) unless `commands` are given.
    With `hold_keys` (a server, not the CLI) key snapshots are kept in memory under a
    lease (`resolvers.key_leases`), except on a Valkey cluster.
    """
    tenant = tenant or load_tenant(settings.tenant_file)
    schema = schema or build_schema(tenant)
    if problems := check_scopes(tenant, schema, utc_now()):
        raise TenantFileError(problems)
    commands = load_commands(tenant) if commands is None else commands
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = None
    valkey_url = settings.valkey.url
    if valkey_url is None:
        embedded = await asyncio.to_thread(start_embedded_valkey, settings.data_dir)
        valkey_url = str(embedded.connection_url)
    engine = create_engine(
        settings.database.url,
        pool_size=settings.database.pool_size,
        pool_timeout=settings.database.pool_timeout,
        statement_timeout=settings.database.statement_timeout,
    )
    if metrics is not None:
        metrics.watch_pool(engine)
    writes = writer(engine, pool_timeout=settings.database.pool_timeout)
    valkey = connect_valkey(settings.valkey, valkey_url)
    try:
        if settings.auto_migrate if migrate is None else migrate:
            plan = await apply_plan(writes, schema, tenant_digest=tenant.digest)
            if not plan.empty:
                _log.info("schema migrated:\n%s", plan.describe())
        reads = BatchedReads(valkey)
        cache = ResponseCache(
            valkey,
            reads=reads,
            prefix=settings.valkey.key_prefix,
            tenant_digest=tenant.digest,
            clock=utc_now,
            list_ttl=settings.valkey.cache_list_ttl,
        )
        leases: KeyLeases[Any] | None = None
        if hold_keys and settings.valkey.key_leases and isinstance(valkey, Valkey):
            leases = KeyLeases(
                valkey,
                settings.valkey.key_prefix,
                epoch_key=cache.epoch(),
                observe=None if metrics is None else metrics.key_lease,
            )
        services = Services(
            tenant=tenant,
            schema=schema,
            engine=engine,
            writer=writes,
            # Typed as the single server's client: Litestar's signature models refuse a
            # union of two classes. The cluster client has every command used through it
            # (tests/integration/test_valkey_cluster.py runs them all on a cluster).
            valkey=cast("Valkey", valkey),
            reads=reads,
            passwords=Passwords(
                settings.password_profile, concurrency=settings.security.hash_concurrency
            ),
            login_limits=LoginLimits(
                max_failures=settings.security.login_max_failures,
                max_failures_per_address=settings.security.login_max_failures_per_address,
                window=dt.timedelta(seconds=settings.security.login_window),
            ),
            key_prefix=settings.valkey.key_prefix,
            notifiers=build_notifiers(
                smtp_url=settings.accounts.smtp_url,
                smtp_sender=settings.accounts.smtp_from,
                sms_webhook_url=settings.accounts.sms_webhook_url,
                engine=writes,
                outbox_table=schema.system.outbox,
                clock=utc_now,
                observe=None if metrics is None else metrics.delivery,
            ),
            challenges=_challenge_policy(settings),
            files=await local_file_storage(
                settings.files.directory or settings.data_dir / "files",
                settings.files.max_upload_bytes,
            ),
            commands=commands,
            cache=cache,
            key_leases=leases,
        )
        if leases is not None:
            leases.start()
        try:
            yield services
        finally:
            if leases is not None:
                await leases.aclose()
            await services.cache.aclose()
            await services.notifiers.aclose()
    finally:
        await valkey.aclose()
        if writes is not engine:
            await writes.dispose()
        await engine.dispose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def connect_valkey(settings: ValkeySettings, url: str) -> ValkeyClient:
    """A client for one server or, with `cluster`, for the cluster `url` is a node of.

    Over TLS (`valkeys://`) the certificate is verified against `ca_file` (or the system's
    CAs) and must name the host: valkey-py checks the chain by default, not the name.
    Connecting happens on the first command, so a Valkey down at start is a bypass.
    """
    tls: dict[str, Any] = {}  # valkey-py types these options as Any
    if url.startswith(("valkeys://", "rediss://")):
        tls["ssl_check_hostname"] = True
        if settings.ca_file is not None:
            tls["ssl_ca_certs"] = str(settings.ca_file)
    if settings.cluster:
        return ValkeyCluster.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, **tls)
    client: Valkey = Valkey.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, **tls)
    return client


def _challenge_policy(settings: Settings) -> ChallengePolicy:
    accounts = settings.accounts
    server = settings.server
    return ChallengePolicy(
        code_length=accounts.challenge_code_length,
        ttl=accounts.challenge_ttl,
        max_attempts=accounts.challenge_max_attempts,
        cooldown=accounts.challenge_cooldown,
        max_retries=accounts.challenge_max_retries,
        link_origins=accounts.challenge_link_origins,
        public_url=accounts.public_url or f"http://{server.host}:{server.port}",
        reset_revokes_keys=accounts.reset_revokes_keys,
    )
