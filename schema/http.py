"""`/graphql` on Litestar: authentication, the per-request context, and cache headers.

The same edge as REST's `/api/v1`: an API key from `Authorization: Bearer` or
`X-API-Key` (never the query string), checked by `resolvers.auth.authenticate` before any
operation runs, so a missing or bad key is REST's 401 problem+json. Responses are
private (`Vary: Authorization, X-API-Key`). A query over GET whose reads all came
through the response cache gets REST's treatment (`ETag` scoped to the caller, `304`
on `If-None-Match`, `Cache-Control: private, no-cache`); everything else is `no-store`.
`X-Cache` sums up the operation's reads: BYPASS if any bypassed, else MISS if any
missed, else HIT.

The handlers are the gateway's own rather than strawberry's Litestar view (which costs
several times a cached read in dependency injection and response building): a plain
read is answered by `schema.prepared` from the resolvers' bodies, anything else by
`schema.execute` (strawberry's extensions: limits, parse and validation caches, error
masking). The request forms are GraphQL over HTTP's: a JSON object
`{query, variables?, operationName?}` by POST, or the same as query parameters by GET
(queries only). Batching is off: a JSON array of operations is a 400 problem, as is any
other request that carries no operation. `GET /graphql/schema.graphql` serves the
schema's SDL to the users who may introspect it (`Limits.introspection`).
"""

from __future__ import annotations

import hashlib
from http import HTTPStatus
from typing import Any, NamedTuple

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from sqlalchemy import exc as sa_exc
from strawberry.exceptions import MissingQueryError
from strawberry.http import process_result
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from resolvers.cache import Cached, etag_for
from resolvers.errors import GatewayError
from resolvers.outages import is_outage
from resolvers.principal import Principal
from resolvers.services import Services
from resolvers.tenant import Tenant
from rest.caching import (
    asks_no_cache,
    cached_response,
    not_modified,
    send_cached,
    wants_fresh,
)
from rest.errors import problem
from rest.hot_reads import Receive, Send
from rest.observability import note_user
from rest.v1.security import (
    VARY,
    caller,
    check_presented_key,
    client_address,
    private_responses,
    refuse_keys_in_query,
)
from schema.build import build_schema
from schema.context import GraphQLContext, combined_status
from schema.limits import Limits, size_rules
from schema.prepared import Answer, Bound, PreparedReads

__all__ = ["GRAPHQL_PATH", "SDL_PATH", "GraphQLEdge", "GraphQLTransport", "create_graphql"]

GRAPHQL_PATH = "/graphql"
SDL_PATH = "/schema.graphql"
"""Under `GRAPHQL_PATH`: `/graphql/schema.graphql`."""
_VARY = VARY.encode()
_IDE_ACCEPT = ("text/html", "*/*")  # what a browser opening /graphql sends
_SDL_TYPE = "text/plain"  # Litestar adds "; charset=utf-8"
_JSON = "application/json"
_BATCH_REFUSED = (
    "Batched operations (a JSON array) are not accepted: send one operation per request."
)
_QUERIES = frozenset({OperationType.QUERY})
_ANY = frozenset({OperationType.QUERY, OperationType.MUTATION})
_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


class _BadRequest(Exception):
    """A request that carries no operation the gateway can run: a 400 problem."""

    def __init__(self, detail: str, code: str = "bad_request") -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class _Operation(msgspec.Struct, frozen=True):
    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None


class GraphQLTransport(NamedTuple):
    controller: type[Controller]
    """`/graphql` and `/graphql/schema.graphql` on Litestar."""
    edge: GraphQLEdge
    """Plain reads POSTed to `/graphql`, answered before Litestar routes them."""


def create_graphql(
    tenant: Tenant,
    *,
    graphiql: bool,
    trusted_proxies: frozenset[str] = frozenset(),
    limits: Limits | None = None,
) -> GraphQLTransport:
    """`/graphql` for `tenant`; `graphiql` serves the IDE to browsers.

    `limits` (default: `Limits()`) bounds every operation and names who may introspect.
    """
    limits = limits or Limits()
    introspection = limits.introspection
    schema = build_schema(tenant, limits=limits)
    prepared = PreparedReads(schema, tenant, size_rules(limits), max_tokens=limits.max_tokens)
    sdl = schema.as_str().encode() + b"\n"
    sdl_etag = f'"{hashlib.sha256(sdl).hexdigest()[:32]}"'
    ide = get_graphql_ide_html(graphql_ide="graphiql") if graphiql else None

    async def run(
        request: Request[Any, Any, Any],
        services: Services,
        principal: Principal,
        operation: _Operation,
    ) -> Response[Any]:
        context = GraphQLContext(
            services=services,
            principal=principal,
            fresh=wants_fresh(request),
            client_address=client_address(request, trusted_proxies),
        )
        answered = await prepared.answer(
            services,
            principal,
            operation.query,
            operation.operation_name,
            operation.variables,
            fresh=context.fresh,
        )
        etag = None
        if answered is not None:
            body = answered.body
            for cached in answered.reads:
                context.remember(cached)
            etag = answered.etag() if request.method == "GET" else None
        else:
            body = await _execute(request, context, operation)
        return _respond(request, context, body, etag)

    async def _execute(
        request: Request[Any, Any, Any], context: GraphQLContext, operation: _Operation
    ) -> bytes:
        try:
            result = await schema.execute(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                operation_name=operation.operation_name,
                allowed_operation_types=_QUERIES if request.method == "GET" else _ANY,
            )
        except (CannotGetOperationTypeError, InvalidOperationTypeError) as exc:
            raise _BadRequest(_reason(exc, request.method)) from exc
        except MissingQueryError as exc:
            raise _BadRequest("No GraphQL query found in the request") from exc
        return _ENCODER.encode(process_result(result))

    async def handle(
        request: Request[Any, Any, Any], services: Services, body: bytes | None
    ) -> Response[Any]:
        principal = await caller()
        try:
            return await run(request, services, principal, _operation(request, body))
        except _BadRequest as exc:
            return problem(400, HTTPStatus.BAD_REQUEST.phrase, exc.detail, code=exc.code)

    class GraphQL(Controller):
        path = GRAPHQL_PATH
        include_in_schema = False  # /api/v1/openapi.json documents REST only
        before_request = staticmethod(refuse_keys_in_query)
        after_request = staticmethod(private_responses)

        @post(status_code=200)
        async def graphql_post(
            self, request: Request[Any, Any, Any], services: NamedDependency[Services]
        ) -> Response[Any]:
            """One operation as a JSON object."""
            return await handle(request, services, await request.body())

        @get()
        async def graphql_get(
            self, request: Request[Any, Any, Any], services: NamedDependency[Services]
        ) -> Response[Any]:
            """One query in the query string, or GraphiQL for a browser."""
            if ide is not None and _asks_for_ide(request):
                return Response(content=ide, media_type="text/html")
            return await handle(request, services, None)

        @get(SDL_PATH, media_type=_SDL_TYPE)
        async def schema_sdl(self, request: Request[Any, Any, Any]) -> Response[bytes]:
            """The schema as SDL, for those who may introspect it (401 without a key, 403
            without the permission)."""
            principal = await caller()
            principal.require(introspection)
            headers = {"ETag": sdl_etag, "Cache-Control": "private, no-cache"}
            if not_modified(request, sdl_etag):
                return Response(content=b"", status_code=304, headers=headers)
            return Response(content=sdl, media_type=_SDL_TYPE, headers=headers)

    return GraphQLTransport(GraphQL, GraphQLEdge(prepared))


class GraphQLEdge:
    """A plain read sent as JSON or in a GET's query string, answered at the ASGI edge
    (`rest.hot_reads.HotPath`).

    What `graphql_post` and `graphql_get` would answer through `schema.prepared`, with
    their headers (a GET's answer has an ETag and may be a 304), minus Litestar: for a
    request with a key and no `Origin`, whose JSON body has at most `max_body` bytes (with
    a `Content-Length`), or whose query string holds `query` and perhaps `variables` and
    `operationName`, once each. Anything else, and anything `PreparedReads` leaves to
    execution or any error, goes on to Litestar with the body it read replayed.
    """

    def __init__(self, prepared: PreparedReads, *, max_body: int = 64 * 1024) -> None:
        self._prepared = prepared
        self._max_body = max_body
        self.answered = 0
        """Requests answered here (the rest went on to Litestar)."""

    async def answer(
        self, services: Services, scope: dict[str, Any], receive: Receive, send: Send
    ) -> Receive | None:
        if scope["path"] != GRAPHQL_PATH:
            return receive
        body = None
        if scope["method"] == "GET":
            bound = self._bound_get(scope)
        else:
            taken = await self._bound_post(scope, receive)
            if taken is None:
                return receive
            bound, body = taken
        if bound is None:
            return _left(receive, body)
        principal = await check_presented_key(services, scope)
        if not isinstance(principal, Principal):
            return _left(receive, body)  # no key, or refused: Litestar answers the problem
        try:
            answered = await self._prepared.answer_bound(
                services, principal, bound, fresh=asks_no_cache(scope["headers"])
            )
        except GatewayError:
            return _left(receive, body)
        except (sa_exc.TimeoutError, sa_exc.DBAPIError, OSError) as exc:
            if not is_outage(exc):
                raise
            return _left(receive, body)  # a database outage: the full path answers it
        if answered is None:
            return _left(receive, body)
        note_user(principal.user_id)
        scope["path_template"] = GRAPHQL_PATH  # what the access log and metrics name
        await _send(scope, send, answered)
        self.answered += 1
        return None

    def _bound_get(self, scope: dict[str, Any]) -> Bound | None:
        """The plain read a GET asks for in its query string, or None."""
        if any(name == b"origin" for name, _ in scope["headers"]):
            return None  # CORS headers are Litestar's to add
        return self._prepared.bind_query(scope["query_string"])

    async def _bound_post(
        self, scope: dict[str, Any], receive: Receive
    ) -> tuple[Bound | None, bytes] | None:
        """The plain read a POST asks for (None: not one) and the body read for it; None
        for a request of a form the edge does not read."""
        if scope["method"] != "POST":
            return None
        length = _plain_json_post(scope["headers"], self._max_body)
        if length is None:
            return None
        body = await _read(receive, length)
        if body is None:
            return None
        return self._prepared.bind_json(body), body


async def _send(scope: dict[str, Any], send: Send, answered: Answer) -> None:
    """The answer `_respond` gives: a GET's with an ETag (or a 304), a POST's not stored."""
    content, reads = answered.body, answered.reads
    status = reads[0].status if len(reads) == 1 else combined_status([c.status for c in reads])
    if scope["method"] == "GET" and status is not None:
        cached = Cached(body=content, etag=answered.etag(), status=status)
        await send_cached(scope["headers"], send, cached, _VARY)
        return
    headers = [
        (b"cache-control", b"no-store"),
        (b"content-type", _JSON.encode()),
        (b"content-length", str(len(content)).encode()),
        (b"vary", _VARY),
    ]
    if status is not None:
        headers.insert(1, (b"x-cache", status.encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _plain_json_post(headers: list[tuple[bytes, bytes]], max_body: int) -> int | None:
    """The declared length of a JSON body the edge may read, else None."""
    length = None
    json = False
    for name, value in headers:
        if name == b"content-length":
            length = int(value) if value.isdigit() and len(value) < 10 else None
        elif name == b"content-type":
            json = value.split(b";", 1)[0].strip().lower() == b"application/json"
        elif name == b"origin":
            return None  # CORS headers are Litestar's to add
    if not json or length is None or length > max_body:
        return None
    return length


async def _read(receive: Receive, length: int) -> bytes | None:
    """The whole body, if it is exactly `length` bytes (else None: Litestar decides).

    It stops at the declared length, without waiting for the message that says no more
    is coming: granian sends that one on its own (`b""`, `more_body: false`), and each
    `receive()` cost about 20 µs there (`bench/results/granian-receive-2026-12-08-vm.md`).
    The server frames the body by its Content-Length (bytes after it belong to the next
    request), so once that many have come, the body is complete.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # a disconnect: nothing to answer
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > length:
            return None
        chunks.append(chunk)
        if size == length:
            return b"".join(chunks)
        if not message.get("more_body", False):
            return None


def _left(receive: Receive, body: bytes | None) -> Receive:
    """The `receive` to route a request with: the server's, or, once the edge has read
    the body, one that gives it again."""
    return receive if body is None else _replaying(body, receive)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then whatever the server sends next but the
    empty end of the body, which `_read` left unread."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message = await receive()
        while message["type"] == "http.request" and not message.get("body"):
            message = await receive()
        return message

    return replay


def _operation(request: Request[Any, Any, Any], body: bytes | None) -> _Operation:
    """The operation of a POST body (JSON) or of a GET's query parameters."""
    if body is None:
        params = request.query_params
        variables: object = params.get("variables")
        if isinstance(variables, str):
            variables = _json(variables, "variables")
        document: dict[str, object] = {
            "query": params.get("query"),
            "variables": variables,
            "operationName": params.get("operationName"),
        }
    else:
        if "json" not in request.headers.get("content-type", ""):
            raise _BadRequest("Unsupported content type: send application/json")
        decoded = _json(body, "body")
        if isinstance(decoded, list):
            raise _BadRequest(_BATCH_REFUSED, code="batching_not_supported")
        if not isinstance(decoded, dict):
            raise _BadRequest("The body must be a JSON object with the operation's `query`")
        document = decoded
    query = document.get("query")
    variables = document.get("variables")
    name = document.get("operationName")
    if not isinstance(query, str) or not query:
        raise _BadRequest("No GraphQL query found in the request")
    if not isinstance(variables, dict | None):
        raise _BadRequest("The operation's `variables` must be an object or null")
    if not isinstance(name, str | None):
        raise _BadRequest("The operation's `operationName` must be a string or null")
    return _Operation(query, variables, name)


def _json(data: str | bytes, what: str) -> Any:
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError:
        raise _BadRequest(f"Unable to parse the {what} as JSON") from None


def _reason(exc: CannotGetOperationTypeError | InvalidOperationTypeError, method: str) -> str:
    if isinstance(exc, InvalidOperationTypeError):
        return exc.as_http_error_reason(method)
    return exc.as_http_error_reason()


def _asks_for_ide(request: Request[Any, Any, Any]) -> bool:
    """A browser opening `/graphql`: GraphiQL needs no key, its operations do."""
    if "query" in request.query_params:
        return False
    accept = request.headers.get("accept", "")
    return any(kind in accept for kind in _IDE_ACCEPT)


def _respond(
    request: Request[Any, Any, Any], context: GraphQLContext, body: bytes, etag: str | None
) -> Response[bytes]:
    """The answer to an operation; a GET's has an ETag (`etag`, or its body's)."""
    status = context.cache_status()
    cacheable = request.method == "GET" and not context.failed and context.principal is not None
    if cacheable and status is not None:
        assert context.principal is not None  # noqa: S101 - checked above
        etag = etag or etag_for(body, context.principal)
        cached = Cached(body=body, etag=etag, status=status)
        return cached_response(request, cached)
    headers = {"Cache-Control": "no-store"}
    if status is not None:
        headers["X-Cache"] = status
    return Response(content=body, media_type=_JSON, headers=headers)
