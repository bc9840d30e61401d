"""Collection reads answered at the ASGI edge, before Litestar routes them.

`GET /api/v1/collections/{T}/{id}`, `.../{T}/by/{property}/{value}` and `.../{T}?...`
are the gateway's hottest requests, and most of them are cache hits. For those,
Litestar's routing, parameter parsing, dependency injection and response building cost
more than the read itself. `HotReads` answers them in plain ASGI with the very calls the routes of
`rest/v1/collections.py` make: `resolvers.auth.authenticate` with the presented key, then
`resolvers.reads.record_body`, `record_by_body` or `list_body` (with the same
`ListQuery`), then the same headers (`rest.caching`: ETag scoped to the caller, 304 on
`If-None-Match`, `X-Cache`, `Cache-Control: private, no-cache`; `Vary` as
`rest.v1.security.private_responses`).

It answers only what it can answer exactly as the routes would. Everything else is left
to Litestar, which answers it as before: another method or path, a missing key, a key
or anything key-like in the query string, an `Origin` (CORS), a
parameter out of the routes' declared bounds or given twice, a `read_access_logging`
type (each of its reads writes an audit row and must happen once), and any error at
all (a bad key, a refused or invalid request, a missing record) — Litestar then makes
the same call again and answers its problem. `tests/integration/test_hot_reads.py`
sends the same requests to an app with and without it and compares status, headers
and bodies.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import parse_qsl

from sqlalchemy import exc as sa_exc

from resolvers import collections as records
from resolvers import query_grammar, reads
from resolvers.auth import authenticate
from resolvers.cache import Cached
from resolvers.errors import GatewayError
from resolvers.outages import is_outage
from resolvers.services import Services
from resolvers.storage import MAX_ID
from resolvers.tenant import Tenant
from rest.caching import CACHE_CONTROL, asks_no_cache, etag_matches
from rest.observability import note_user
from rest.v1.security import KEY_PARAMETERS, VARY, presented_key

__all__ = ["HotPath", "HotReads", "Receive", "Send"]

_PREFIX = "/api/v1/collections/"
_CONTROL = {
    "_filter": "filter",
    "_order": "order",
    "_limit": "limit",
    "_offset": "offset",
    "_after": "after",
    "_fields": "fields",
    "_hide": "hide",
    "_count": "count",
    "_noCache": "no_cache",
}
"""The list's control parameters; any other name is an equality filter."""
_NO_CACHE = b"_noCache=1"
_GET_QUERIES = frozenset({b"", _NO_CACHE, b"_noCache=0"})
"""The query strings of a get the edge answers (the route's only parameter)."""
_MAX_CURSOR = 4096  # as the route declares `_after`
_MAX_PATH_PARAMETER = 500  # as the get-by route declares its property and value
_MAX_QUERY = 8192
"""Longer query strings are left to Litestar (they are rare and never hot)."""
_JSON = (b"content-type", b"application/json")
_VARY = (b"vary", VARY.encode())
_CACHE = (b"cache-control", CACHE_CONTROL.encode())

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class HotPath(Protocol):
    """A request form answered at the edge, before Litestar routes it."""

    async def answer(
        self, services: Services, scope: dict[str, Any], receive: Receive, send: Send
    ) -> Receive | None:
        """None once answered; otherwise the `receive` to route the request with: the
        same, or one that replays the body it read."""


class HotReads:
    """Answers cached-read-shaped GETs of `tenant`'s collections (see the module)."""

    def __init__(self, tenant: Tenant) -> None:
        self._templates = {
            t.name: (
                f"{_PREFIX}{t.name}",
                f"{_PREFIX}{t.name}/{{record_id}}",
                f"{_PREFIX}{t.name}/by/{{property_name}}/{{value}}",
            )
            for t in tenant.types.values()
            if t.api and not t.read_access_logging
        }
        self.answered = 0
        """Requests answered here (the rest went on to Litestar)."""

    async def answer(
        self, services: Services, scope: dict[str, Any], receive: Receive, send: Send
    ) -> Receive | None:
        """None once the request is answered, else `receive` (nothing read, nothing sent)."""
        return None if await self._answer(services, scope, send) else receive

    async def _answer(self, services: Services, scope: dict[str, Any], send: Send) -> bool:
        if scope["method"] != "GET":
            return False
        path: str = scope["path"]
        if not path.startswith(_PREFIX):
            return False
        type_name, _, tail = path[len(_PREFIX) :].partition("/")
        templates = self._templates.get(type_name)
        headers = scope["headers"]
        if templates is None or any(name == b"origin" for name, _ in headers):
            return False  # CORS headers are Litestar's to add
        key = presented_key(headers)
        if key is None:
            return False
        wanted = _wanted(tail, scope["query_string"])
        if wanted is None:
            return False
        fresh = wanted.fresh or asks_no_cache(headers)
        try:
            principal = await authenticate(services, key)
            if wanted.kind == "list":
                found = await reads.list_body(
                    services, principal, type_name, wanted.argument, fresh=fresh
                )
            elif wanted.kind == "get":
                found = await reads.record_body(
                    services, principal, type_name, wanted.argument, fresh=fresh
                )
            else:
                name, value = wanted.argument
                found = await reads.record_by_body(
                    services, principal, type_name, name, value, fresh=fresh
                )
        except GatewayError:
            return False  # Litestar asks again and answers the problem
        except (sa_exc.TimeoutError, sa_exc.DBAPIError, OSError) as exc:
            if not is_outage(exc):
                raise
            return False  # a database outage: Litestar asks again and answers 503
        template = templates[_TEMPLATE[wanted.kind]]
        note_user(principal.user_id)
        scope["path_template"] = template  # Litestar's own form: access log and metrics
        await _send(scope, send, found)
        self.answered += 1
        return True


class _Wanted(NamedTuple):
    kind: Literal["list", "get", "by"]
    argument: Any
    """The list's `ListQuery`, the get's id, or the get-by's (property, value)."""
    fresh: bool
    """`_noCache=1`."""


_TEMPLATE = {"list": 0, "get": 1, "by": 2}


def _wanted(tail: str, query: bytes) -> _Wanted | None:
    """What the path below `/collections/{T}` and the query string ask, as the routes
    would read them; None where a route must decide."""
    if not tail:
        parsed = _list_query(query)
        return None if parsed is None else _Wanted("list", *parsed)
    if query not in _GET_QUERIES:
        return None
    fresh = query == _NO_CACHE
    if tail.startswith("by/"):
        _, name, value = (*tail.split("/", 2), "")[:3]
        if not name or not value or "/" in value:
            return None
        if max(len(name), len(value)) > _MAX_PATH_PARAMETER:
            return None
        return _Wanted("by", (name, value), fresh)
    if not (tail.isascii() and tail.isdigit()) or len(tail) > 19 or not 0 < int(tail) <= MAX_ID:
        return None
    return _Wanted("get", int(tail), fresh)


@functools.lru_cache(maxsize=1024)
def _list_query(query: bytes) -> tuple[records.ListQuery, bool] | None:
    """The list route's `ListQuery` and `_noCache`, or None where the route must parse
    the request.

    Remembered by the query string: a `ListQuery` holds no user and no type (both apply
    when it is read), and integrations repeat the same few queries.
    """
    if len(query) > _MAX_QUERY:
        return None
    try:
        text = query.decode("ascii")
    except UnicodeDecodeError:
        return None
    if ";" in text:
        return None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return None
    control: dict[str, str] = {}
    equals: list[tuple[str, str]] = []
    for name, value in pairs:
        if name.lower() in KEY_PARAMETERS or value.startswith("jgw_") or name in control:
            return None  # a key in the URL (400) or a parameter given twice
        if name in _CONTROL:
            control[name] = value
        else:
            equals.append((name, value))
    limit = _bounded(control.get("_limit"), records.DEFAULT_LIMIT, 1, records.MAX_LIMIT)
    offset = _bounded(control.get("_offset"), 0, 0, records.MAX_OFFSET)
    count = _bounded(control.get("_count"), 0, 0, 1)
    no_cache = _bounded(control.get("_noCache"), 0, 0, 1)
    filter_text = control.get("_filter", "")
    after = control.get("_after", "")
    if (
        limit is None
        or offset is None
        or count is None
        or no_cache is None
        or len(filter_text) > query_grammar.MAX_TEXT
        or len(after) > _MAX_CURSOR
    ):
        return None
    try:
        listing = records.list_query(
            filter=filter_text,
            order=control.get("_order", ""),
            limit=limit,
            offset=offset,
            after=after or None,
            fields=control.get("_fields", ""),
            hide=control.get("_hide", ""),
            count=count,
            equals=equals,
        )
    except GatewayError:
        return None  # the route answers the problem (a bad filter, order or fields)
    return listing, bool(no_cache)


def _bounded(text: str | None, default: int, low: int, high: int) -> int | None:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        return None
    value = int(text)
    return value if low <= value <= high else None


async def _send(scope: dict[str, Any], send: Send, found: Cached) -> None:
    etag = found.etag.encode()
    headers = [(b"etag", etag), (b"x-cache", found.status.encode()), _CACHE, _VARY]
    for name, value in scope["headers"]:
        if name == b"if-none-match" and etag_matches(value.decode("latin-1"), found.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
    headers += [_JSON, (b"content-length", str(len(found.body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": found.body})
