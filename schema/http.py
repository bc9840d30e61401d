"""`/graphql` on Litestar: authentication, the per-request context, and cache headers.

The same edge as REST's `/api/v1`: an API key from `Authorization: Bearer` or
`X-API-Key` (never the query string), checked by `resolvers.auth.authenticate` before any
operation runs, so a missing or bad key is REST's 401 problem+json. Responses are
private (`Vary: Authorization, X-API-Key`). A query over GET whose reads all came
through the response cache gets REST's treatment (`ETag` scoped to the caller, `304`
on `If-None-Match`, `Cache-Control: private, no-cache`); everything else is `no-store`.
`X-Cache` sums up the operation's reads: BYPASS if any bypassed, else MISS if any
missed, else HIT.

Batching is off: a JSON array of operations is a 400 problem, as are strawberry's other
refusals of a request (no query, a body that is not JSON). `GET /graphql/schema.graphql`
serves the schema's SDL to the users who may introspect it (`Limits.introspection`).
"""

from __future__ import annotations

import hashlib
from http import HTTPStatus
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from strawberry.litestar import make_graphql_controller
from strawberry.litestar.controller import GraphQLController

from resolvers.auth import authenticate
from resolvers.cache import Cached, etag_for
from resolvers.services import Services
from resolvers.tenant import Tenant
from rest.caching import cached_response, not_modified, wants_fresh
from rest.errors import problem
from rest.v1.security import (
    client_address,
    presented_key,
    private_responses,
    refuse_keys_in_query,
)
from schema.build import build_schema
from schema.context import GraphQLContext
from schema.limits import Limits

__all__ = ["GRAPHQL_PATH", "SDL_PATH", "create_graphql_controller"]

GRAPHQL_PATH = "/graphql"
SDL_PATH = "/schema.graphql"
"""Under `GRAPHQL_PATH`: `/graphql/schema.graphql`."""
_IDE_ACCEPT = ("text/html", "*/*")  # what strawberry's controller answers with GraphiQL
_SDL_TYPE = "text/plain"  # Litestar adds "; charset=utf-8"
_BATCH_REFUSED = (
    "Batched operations (a JSON array) are not accepted: send one operation per request."
)


def create_graphql_controller(
    tenant: Tenant,
    *,
    graphiql: bool,
    trusted_proxies: frozenset[str] = frozenset(),
    limits: Limits | None = None,
) -> type[Controller]:
    """The `/graphql` controller for `tenant`; `graphiql` serves the IDE to browsers.

    `limits` (default: `Limits()`) bounds every operation and names who may introspect.
    """
    limits = limits or Limits()
    schema = build_schema(tenant, limits=limits)
    sdl = schema.as_str().encode() + b"\n"
    sdl_etag = f'"{hashlib.sha256(sdl).hexdigest()[:32]}"'

    async def context_getter(
        request: Request[Any, Any, Any], services: NamedDependency[Services]
    ) -> GraphQLContext:
        principal = None
        if not (graphiql and _asks_for_ide(request)):
            principal = await authenticate(services, presented_key(request.scope["headers"]))
        return GraphQLContext(
            services=services,
            principal=principal,
            fresh=wants_fresh(request),
            client_address=client_address(request, trusted_proxies),
        )

    base = make_graphql_controller(
        schema,
        path=GRAPHQL_PATH,
        context_getter=context_getter,
        graphql_ide="graphiql" if graphiql else None,
        allow_queries_via_get=True,
    )

    async def execute_request(
        self: GraphQLController[Any, Any],
        request: Request[Any, Any, Any],
        context: Any,
        root_value: Any,
    ) -> Response[Any]:
        if await _is_batch(request):
            return problem(400, "Bad Request", _BATCH_REFUSED, code="batching_not_supported")
        response = await base.execute_request(self, request, context, root_value)
        status = response.status_code or 200
        if status >= 400 and isinstance(response.content, str):
            return _as_problem(status, response.content)
        return _with_cache_headers(request, context, response)

    @get(SDL_PATH, media_type=_SDL_TYPE)
    async def schema_sdl(
        self: Controller,  # noqa: ARG001 - a controller method
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
    ) -> Response[bytes]:
        """The schema as SDL, for those who may introspect it (401 without a key, 403
        without the permission)."""
        principal = await authenticate(services, presented_key(request.scope["headers"]))
        principal.require(limits.introspection)
        headers = {"ETag": sdl_etag, "Cache-Control": "private, no-cache"}
        if not_modified(request, sdl_etag):
            return Response(content=b"", status_code=304, headers=headers)
        return Response(content=sdl, media_type=_SDL_TYPE, headers=headers)

    controller: type[Controller] = type(
        "GraphQL",
        (base,),
        {
            "execute_request": execute_request,
            "schema_sdl": schema_sdl,
            "before_request": refuse_keys_in_query,
            "after_request": private_responses,
            "include_in_schema": False,  # /api/v1/openapi.json documents REST only
            "websocket_endpoint": None,  # no subscriptions: no WebSocket route
        },
    )
    return controller


async def _is_batch(request: Request[Any, Any, Any]) -> bool:
    """A POSTed JSON array: strawberry would answer a bare text 400; answer a problem.

    Litestar keeps the body it read, so strawberry reads the same bytes again.
    """
    if request.method != "POST" or "json" not in request.headers.get("content-type", ""):
        return False
    return (await request.body()).lstrip()[:1] == b"["


def _as_problem(status: int, detail: str) -> Response[dict[str, Any]]:
    """strawberry's own refusals of a request (text/plain) as the gateway's problems."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return problem(status, title, detail, code="bad_request")


def _asks_for_ide(request: Request[Any, Any, Any]) -> bool:
    """A browser opening `/graphql`: GraphiQL needs no key, its operations do."""
    if request.method != "GET" or "query" in request.query_params:
        return False
    accept = request.headers.get("accept", "")
    return any(kind in accept for kind in _IDE_ACCEPT)


def _with_cache_headers(
    request: Request[Any, Any, Any], context: object, response: Response[Any]
) -> Response[Any]:
    if not isinstance(context, GraphQLContext) or response.status_code != 200:
        return response
    status = context.cache_status()
    body = response.content
    if status is not None:
        response.headers["X-Cache"] = status
    cacheable = request.method == "GET" and not context.failed and isinstance(body, bytes)
    if cacheable and status is not None and context.principal is not None:
        cached = Cached(body=body, etag=etag_for(body, context.principal), status=status)
        return cached_response(request, cached)
    response.headers["Cache-Control"] = "no-store"
    return response
