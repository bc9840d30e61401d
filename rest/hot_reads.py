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

The resolvers' errors (a missing, bad or revoked key, a refused or invalid request, a
missing record) are answered here too, with the problem Litestar's exception handler
would send (`rest.errors.encoded_problem`): asking Litestar instead would make every
resolver call again. The list's parameters are read as the route reads them
(`rest.v1.list_params`), and checked in the route's order: the key, then the parameters,
then the read.

It answers only what it can answer exactly as the routes would. Everything else is left
to Litestar, which answers it as before: another method or path, an unknown type, a key
or anything key-like in the query string, an `Origin` (CORS), a parameter out of the
routes' declared bounds or given twice, a `read_access_logging` type (each of its reads
writes an audit row and must happen once), and a database outage (Litestar asks again
and answers 503). `tests/integration/test_hot_reads.py` sends the same requests to an
app with and without it and compares status, headers and bodies.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import parse_qsl

from sqlalchemy import exc as sa_exc

from resolvers import collections as records
from resolvers import reads
from resolvers.cache import Cached
from resolvers.errors import GatewayError
from resolvers.outages import is_outage
from resolvers.services import Services
from resolvers.storage import MAX_ID
from resolvers.tenant import Tenant
from rest.caching import asks_no_cache, send_cached
from rest.errors import EncodedProblem, encoded_problem
from rest.v1.list_params import ListParams, read_pairs
from rest.v1.security import KEY_PARAMETERS, VARY, check_presented_key, principal_of

__all__ = ["HotPath", "HotReads", "Receive", "Send"]

_PREFIX = "/api/v1/collections/"
_NO_CACHE = b"_noCache=1"
_GET_QUERIES = frozenset({b"", _NO_CACHE, b"_noCache=0"})
"""The query strings of a get the edge answers (the route's only parameter)."""
_MAX_PATH_PARAMETER = 500  # as the get-by route declares its property and value
_MAX_QUERY = 8192
"""Longer query strings are left to Litestar (they are rare and never hot)."""
_VARY = VARY.encode()

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
        wanted = _wanted(tail, scope["query_string"])
        if wanted is None:
            return False
        found: Cached | EncodedProblem
        try:
            found = await _read(services, scope, type_name, wanted)
        except GatewayError as exc:
            found = encoded_problem(exc)  # the route's problem, without asking again
        except (sa_exc.TimeoutError, sa_exc.DBAPIError, OSError) as exc:
            if not is_outage(exc):
                raise
            return False  # a database outage: Litestar asks again and answers 503
        # Litestar's own form of the route: access log and metrics.
        scope["path_template"] = templates[_TEMPLATE[wanted.kind]]
        if isinstance(found, EncodedProblem):
            await _send_problem(send, found)
        else:
            await send_cached(headers, send, found, _VARY)
        self.answered += 1
        return True


async def _read(
    services: Services, scope: dict[str, Any], type_name: str, wanted: _Wanted
) -> Cached:
    """The route's calls in the route's order: Litestar resolves the caller before the
    handler reads the list's parameters, and both before the read. The key's verdict
    stays in the scope: a request left to Litestar after all is not checked twice."""
    await check_presented_key(services, scope)
    principal = await principal_of(scope, services)
    fresh = wanted.fresh or asks_no_cache(scope["headers"])
    if wanted.kind == "list":
        listing: _Listing = wanted.argument
        query = listing.params.list_query() if listing.query is None else listing.query
        return await reads.list_body(services, principal, type_name, query, fresh=fresh)
    if wanted.kind == "get":
        return await reads.record_body(services, principal, type_name, wanted.argument, fresh=fresh)
    name, value = wanted.argument
    return await reads.record_by_body(services, principal, type_name, name, value, fresh=fresh)


class _Wanted(NamedTuple):
    kind: Literal["list", "get", "by"]
    argument: Any
    """The list's `_Listing`, the get's id, or the get-by's (property, value)."""
    fresh: bool
    """`_noCache=1`."""


class _Listing(NamedTuple):
    params: ListParams
    query: records.ListQuery | None
    """None where the grammar refuses the parameters: `params.list_query()` raises its
    error once the key is checked."""


_TEMPLATE = {"list": 0, "get": 1, "by": 2}


def _wanted(tail: str, query: bytes) -> _Wanted | None:
    """What the path below `/collections/{T}` and the query string ask, as the routes
    would read them; None where a route must decide."""
    if not tail:
        listing = _listing(query)
        return None if listing is None else _Wanted("list", listing, bool(listing.params.no_cache))
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
def _listing(query: bytes) -> _Listing | None:
    """The list route's parameters and their `ListQuery`, or None where the route must
    read the request.

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
    if any(name.lower() in KEY_PARAMETERS or value.startswith("jgw_") for name, value in pairs):
        return None  # a key in the URL: the route refuses it (400)
    params = read_pairs(pairs)
    if params is None:
        return None
    try:
        return _Listing(params, params.list_query())
    except GatewayError:
        return _Listing(params, None)


async def _send_problem(send: Send, problem: EncodedProblem) -> None:
    start = {"type": "http.response.start", "status": problem.status, "headers": problem.headers}
    await send(start)
    await send({"type": "http.response.body", "body": problem.body})
