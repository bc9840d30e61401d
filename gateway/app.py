"""The app factory: `create_app(settings)` wires settings, resolvers and transports."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide

from gateway.logs import flush_logs
from gateway.runtime import open_services
from gateway.settings import Settings
from resolvers.metrics import GatewayMetrics
from resolvers.services import Services
from resolvers.storage import build_schema
from resolvers.tenant import Permission, Tenant, load_tenant
from rest.edge import GatewayApp
from rest.errors import EXCEPTION_HANDLERS
from rest.health import HealthController
from rest.hot_reads import HotReads
from rest.manage import ManageController
from rest.metrics import metrics_route
from rest.observability import Observer
from rest.openapi import docs, openapi_config
from rest.v1 import v1_router
from schema.http import create_graphql
from schema.limits import Limits

__all__ = ["create_app", "graphql_limits"]

_log = logging.getLogger("gateway")


_GC_THRESHOLDS = (50_000, 20, 10)
"""The collector's thresholds in a server process (Python's: 700, 10, 10). A request
allocates a few hundred containers that die young; collecting every 700 allocations
cost a cached GraphQL read 4-7 % of its time and put millisecond pauses in its tail
(`bench/results/gc-2026-11-28-vm.md`). Garbage without cycles is freed at once either
way, and a full collection still follows every 10 middle ones."""


def create_app(
    settings: Settings,
    *,
    tenant: Tenant | None = None,
    freeze_gc: bool = False,
    metrics_dir: Path | None = None,
    hot_reads: bool = True,
) -> Litestar:
    """Build the ASGI app; the tenant file is read and validated here, before serving.

    `freeze_gc` (for server processes, not tests that build many apps) moves everything
    built at start out of the garbage collector's reach once the app is up, and makes
    its young generation larger (`_GC_THRESHOLDS`).
    `metrics_dir`: where the workers of one `gateway serve --workers N` pool their metrics.
    `hot_reads=False` leaves every request to Litestar: none is answered at the edge
    (`rest.hot_reads`, `schema.http.GraphQLEdge`; tests compare the two).
    """
    tenant = tenant or load_tenant(settings.tenant_file)
    schema = build_schema(tenant)
    metrics = GatewayMetrics(metrics_dir)
    graphql = create_graphql(
        tenant,
        graphiql=settings.graphql.graphiql,
        trusted_proxies=frozenset(settings.security.trusted_proxies),
        limits=graphql_limits(settings),
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.metrics = metrics
        async with open_services(
            settings, tenant, schema, metrics=metrics, hold_keys=True
        ) as services:
            app.state.services = services
            if freeze_gc:
                # What exists now lives as long as the process: keep it out of the
                # collector's generations, which otherwise rescan it on every full pass.
                gc.collect()
                gc.freeze()
                gc.set_threshold(*_GC_THRESHOLDS)
            try:
                yield
            finally:
                metrics.close()
        _log.info("stopped: database pool and Valkey client closed")
        flush_logs()  # a worker process may end without running `logging.shutdown`

    return GatewayApp(
        observer=Observer(metrics, access_log=settings.observability.access_log),
        hot=(HotReads(tenant), graphql.edge) if hot_reads else (),
        route_handlers=[
            HealthController,
            metrics_route(settings.observability.metrics),
            ManageController,
            docs,
            v1_router(
                tenant,
                trusted_proxies=frozenset(settings.security.trusted_proxies),
                max_upload_bytes=settings.files.max_upload_bytes,
            ),
            graphql.controller,
        ],
        dependencies={"services": Provide(_provide_services, sync_to_thread=False)},
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi_config(f"Jetstack Gateway — {tenant.name}"),
        cors_config=(
            CORSConfig(
                allow_origins=list(settings.security.cors_origins),
                allow_headers=[
                    "Authorization",
                    "X-API-Key",
                    "Content-Type",
                    "If-None-Match",
                    "X-Request-ID",
                ],
                expose_headers=["ETag", "X-Cache", "Retry-After", "X-Request-ID"],
            )
            if settings.security.cors_origins
            else None
        ),
    )


def graphql_limits(settings: Settings) -> Limits:
    """The GraphQL limits and introspection permission the settings ask for."""
    graphql = settings.graphql
    return Limits(
        max_depth=graphql.max_depth,
        max_aliases=graphql.max_aliases,
        max_tokens=graphql.max_tokens,
        introspection=Permission(graphql.introspection_permission),
    )


def _provide_services(state: State) -> Services:
    services: Services = state.services
    return services
