"""The ASGI edge: what must happen before Litestar routes a request.

Litestar refuses unknown HTTP methods when routes are defined, and its middleware
runs after routing, so `SEARCH /api/v1/collections/{T}` is rewritten here into its
documented alias `POST /api/v1/collections/{T}/search`; the original method stays in
the scope as `jgw.method`.

The app also installs `ApiDocumentation`, which makes the OpenAPI document describe
the API as it answers (see `rest.openapi`), and, given an `observer`, runs every HTTP
request through it (request id, access log, metrics: see `rest.observability`).
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from rest.observability import Observer
from rest.openapi import ApiDocumentation

__all__ = ["GatewayApp"]

_COLLECTIONS = "/api/v1/collections/"


class GatewayApp(Litestar):
    def __init__(self, *args: Any, observer: Observer | None = None, **kwargs: Any) -> None:
        kwargs["plugins"] = [*(kwargs.get("plugins") or ()), ApiDocumentation()]
        super().__init__(*args, **kwargs)
        self._observer = observer

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
        if self._observer is not None and raw["type"] == "http":
            await self._observer(super().__call__, raw, receive, send)  # type: ignore[arg-type]
            return
        await super().__call__(raw, receive, send)  # type: ignore[arg-type]
