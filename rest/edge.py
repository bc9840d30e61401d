"""The ASGI edge: what must happen before Litestar routes a request.

Litestar refuses unknown HTTP methods when routes are defined, and its middleware
runs after routing, so `SEARCH /api/v1/collections/{T}` is rewritten here into its
documented alias `POST /api/v1/collections/{T}/search`; the original method stays in
the scope as `jgw.method`.

The app also installs `ApiDocumentation`, which makes the OpenAPI document describe
the API as it answers (see `rest.openapi`), and, given an `observer`, runs every HTTP
request through it (request id, access log, metrics: see `rest.observability`). Given
`hot` paths, it offers each HTTP request to them before Litestar routes it: cached
collection reads (`rest.hot_reads`) and plain GraphQL reads (`schema.http`) are
answered there. A request they leave has its API key checked here too
(`rest.v1.security.check_presented_key`), before Litestar routes it, and is the
request `caller()` answers for while Litestar routes it (`rest.v1.security.routed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Litestar
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from rest.hot_reads import HotPath
from rest.observability import Observer
from rest.openapi import ApiDocumentation
from rest.v1.security import check_presented_key, routed

__all__ = ["GatewayApp"]

_COLLECTIONS = "/api/v1/collections/"


class GatewayApp(Litestar):
    def __init__(
        self,
        *args: Any,
        observer: Observer | None = None,
        hot: Sequence[HotPath] = (),
        **kwargs: Any,
    ) -> None:
        kwargs["plugins"] = [*(kwargs.get("plugins") or ()), ApiDocumentation()]
        super().__init__(*args, **kwargs)
        self._observer = observer
        self.hot = tuple(hot)

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        raw: dict[str, Any] = scope  # type: ignore[assignment]  # read as plain ASGI
        if raw["type"] == "http" and raw["method"] == "SEARCH":
            path = str(raw["path"]).rstrip("/")
            if path.startswith(_COLLECTIONS) and "/" not in path[len(_COLLECTIONS) :]:
                # A copy: the server's own scope stays as it was sent.
                raw = {
                    **raw,
                    "method": "POST",
                    "path": f"{path}/search",
                    "raw_path": f"{path}/search".encode(),
                    "jgw.method": "SEARCH",
                }
        if raw["type"] != "http":
            await super().__call__(raw, receive, send)  # type: ignore[arg-type]
            return
        app = self._checked_or_routed
        if self._observer is not None:
            await self._observer(app, raw, receive, send)  # type: ignore[arg-type]
            return
        await app(raw, receive, send)  # type: ignore[arg-type]

    async def _checked_or_routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request answered by a hot path at the edge, or routed by Litestar once its
        key (if it presents one) has been checked."""
        services = getattr(self.state, "services", None)  # none before start-up
        if services is not None:
            raw: dict[str, Any] = scope  # type: ignore[assignment]  # read as plain ASGI
            for hot in self.hot:
                left = await hot.answer(services, raw, receive, send)  # type: ignore[arg-type]
                if left is None:
                    return
                receive = left  # type: ignore[assignment]
            await check_presented_key(services, raw)
        await routed(super().__call__, scope, receive, send)
