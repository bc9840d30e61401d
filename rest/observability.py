"""Request ids, access logs and metrics at the ASGI edge (`/metrics` is `rest.metrics`).

`Observer` wraps every HTTP request once, as raw ASGI (no Request object, no per-request
middleware stack): it takes the client's `X-Request-ID` when it is sane (1-128 of
`A-Z a-z 0-9 . _ : - / + = @`) or makes one, returns it on the response, and on the way
out records the request's metrics and writes one `gateway.access` line:

    request_id, method, route (the template, never the raw path or query), status,
    duration_ms, user_id (when a key was accepted), cache (hit/miss/bypass/revalidated)

Nothing else of the request is logged: no headers, no query string, no body, so keys,
passwords, codes and tokens never reach the log.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from resolvers.metrics import GatewayMetrics

__all__ = ["Observer", "current_request_id", "note_user"]

_access = logging.getLogger("gateway.access")
_SANE_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
_X_REQUEST_ID = b"x-request-id"
_X_CACHE = b"x-cache"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "SEARCH"})
_CACHE_STATUS = {b"HIT": "hit", b"MISS": "miss", b"BYPASS": "bypass"}
_PARAM_TYPE = re.compile(r"\{([^{}:]+):[^{}]*\}")
_MAX_ROUTES = 5000


@dataclass(slots=True)
class _Note:
    """What the edge learns about a request while it is answered."""

    request_id: str
    user_id: int | None = None


_PROCESS_ID = secrets.token_hex(8)
_SEQUENCE = itertools.count(1)


def _new_request_id() -> bytes:
    """A random prefix per process and a sequence number: unique across processes (64
    random bits) without a system call per request."""
    return f"{_PROCESS_ID}{next(_SEQUENCE):016x}".encode()


_NOTE: ContextVar[_Note | None] = ContextVar("jgw_request", default=None)


def note_user(user_id: int) -> None:
    """Name the authenticated user of the current request in its access line."""
    note = _NOTE.get()
    if note is not None:
        note.user_id = user_id


def current_request_id() -> str | None:
    note = _NOTE.get()
    return None if note is None else note.request_id


class Observer:
    """The edge's per-request bookkeeping; `access_log=False` keeps only the metrics."""

    def __init__(self, metrics: GatewayMetrics, *, access_log: bool) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self._routes: dict[str, str] = {}

    async def __call__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == _X_REQUEST_ID:
                request_id = value if _SANE_ID.fullmatch(value) else None
                break
        if request_id is None:
            request_id = _new_request_id()
        note = _Note(request_id.decode())
        token = _NOTE.set(note)
        status = 500
        cache: bytes | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, cache
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or ())
                for name, value in headers:
                    if name == _X_CACHE:
                        cache = value
                headers.append((_X_REQUEST_ID, request_id))
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            _NOTE.reset(token)
            self._record(scope, note, status, cache, time.perf_counter() - started)

    def _record(
        self, scope: Scope, note: _Note, status: int, cache: bytes | None, seconds: float
    ) -> None:
        raw: dict[str, Any] = scope  # type: ignore[assignment]  # read as plain ASGI
        method = raw.get("jgw.method") or raw["method"]
        if method not in _METHODS:
            method = "OTHER"
        route = self._route(raw.get("path_template"))
        self.metrics.request(method, route, status, seconds)
        outcome = None
        if cache is not None:
            outcome = "revalidated" if status == 304 else _CACHE_STATUS.get(cache.upper())
            if outcome is not None:
                self.metrics.cache(route, outcome)
        if self.access_log and _access.isEnabledFor(logging.INFO):
            duration_ms = round(seconds * 1000, 2)
            # Made directly: `Logger.info` would first walk the stack for the caller's line.
            record = _access.makeRecord(
                _access.name,
                logging.INFO,
                __file__,
                0,
                "%s %s %s %.2f ms",
                (method, route, status, duration_ms),
                None,
                extra={
                    "request_id": note.request_id,
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                    "user_id": note.user_id,
                    "cache": outcome,
                },
            )
            _access.handle(record)

    def _route(self, template: str | None) -> str:
        """One label per route: `{record_id:int}` (a path parameter's type) is dropped, as
        Litestar's own `path_template` does, whoever set the template (edge hot paths too)."""
        if template is None:
            return "unmatched"
        route = self._routes.get(template)
        if route is None:
            route = _PARAM_TYPE.sub(r"{\1}", template)
            if len(self._routes) < _MAX_ROUTES:
                self._routes[template] = route
        return route
