"""Liveness and readiness probes, outside the versioned API."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency

from resolvers.health import check_readiness
from resolvers.services import Services

__all__ = ["HealthController"]


class HealthController(Controller):
    include_in_schema = False

    @get("/healthz", cache_control=None)
    async def healthz(self) -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok"}

    @get("/readyz")
    async def readyz(self, services: NamedDependency[Services]) -> Response[dict[str, Any]]:
        """Database and Valkey both answer; 503 otherwise, naming what failed."""
        readiness = await check_readiness(services)
        body = {
            "status": "ok" if readiness.ready else "unavailable",
            "checks": {"database": readiness.database, "valkey": readiness.valkey},
        }
        return Response(body, status_code=200 if readiness.ready else 503)
