"""`GET /metrics`: the Prometheus text format, for whom `GATEWAY_METRICS` allows.

`local` (the default): open to a loopback peer that forwards nobody, else a key with
`manageCache`; `key`: always that key; `open`: anyone; `off`: 404.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar import Request, Response, get

from resolvers.errors import Forbidden, NotFound
from resolvers.metrics import CONTENT_TYPE, GatewayMetrics
from resolvers.tenant import Permission
from rest.v1.security import caller

__all__ = ["metrics_route"]

_FORWARDED = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip"})


def metrics_route(access: str) -> Any:
    """`GET /metrics` for the `GATEWAY_METRICS` mode (`local`, `key`, `open`, `off`)."""

    @get("/metrics", include_in_schema=False)
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        if access == "off":
            raise NotFound("no such route")
        if access == "key" or (access == "local" and not _local(request)):
            principal = await caller()
            if not principal.has(Permission.MANAGE_CACHE):
                raise Forbidden("reading metrics requires the manageCache permission")
        gateway_metrics: GatewayMetrics = request.app.state.metrics
        return Response(
            gateway_metrics.exposition(),
            media_type=CONTENT_TYPE,
            headers={"Cache-Control": "no-store"},
        )

    return metrics


def _local(request: Request[Any, Any, Any]) -> bool:
    """A loopback peer that forwards nobody (a proxy on this host forwards the world)."""
    if any(name in _FORWARDED for name, _ in request.scope["headers"]):
        return False
    client = request.scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False
